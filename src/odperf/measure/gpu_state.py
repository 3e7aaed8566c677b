"""What an NVIDIA GPU was doing while a case ran: clocks, power, temperature and why clocks were held.

The same code on the same card can run far slower from one process to the next; a record that says the SM
clock sat at 1.1 GHz under a power cap, or that the card idled between images, tells a reader whether
two figures may be compared at all. The memory sampler's thread reads ``GpuStateReader`` every few of its
ticks (``MemorySampler(state=...)``): SM and memory clocks, power draw, temperature, NVML's clock-event
("throttle") reasons and its utilisation (the share of its last sample period in which a kernel ran: a
card at full clocks that is busy a third of the time waits on its host, whatever its CUDA events span); what the card was set to (application clocks, maximum clocks, persistence mode,
power limit) and the CPU cores near it are read once. ``summarise`` turns the samples into the record's ``gpu_state``: min, median
and max of each figure and, per reason seen, the share of samples it was active in.

NVML renamed ``nvmlDeviceGetCurrentClocksThrottleReasons`` to ``...ClocksEventReasons`` (driver 535,
nvidia-ml-py 12.535); the reader takes the newer call where the binding and the driver have it, else the
older one. odperf only reads these settings: it never changes clocks, power limits or persistence mode.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

REASON_PREFIXES = ("nvmlClocksEventReason", "nvmlClocksThrottleReason")
REASON_CALLS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
FIGURES = ("sm_clock_mhz", "memory_clock_mhz", "power_w", "temperature_c", "utilization_pct")
DEFAULT_STATE_PERIOD_MS = 100.0
"""Six NVML calls per read (power can take a millisecond on some drivers): ten times slower than the
memory's 10 ms still sees any state that lasts a tenth of a second, and costs the sampler a tenth."""


@dataclass
class GpuSample:
    """One read of the GPU's state; a figure NVML does not give on this card is None."""

    sm_clock_mhz: float | None
    memory_clock_mhz: float | None
    power_w: float | None
    temperature_c: float | None
    reasons: int | None  # NVML's bit mask of clock-event reasons active now
    utilization_pct: float | None = None  # % of NVML's last sample period with a kernel running


def reason_names(nvml: Any) -> dict[int, str]:
    """Bit -> snake_case name, from the constants the binding itself defines (``GpuIdle`` -> ``gpu_idle``);
    masks (``All``) and ``None`` are not bits. A newer driver's bit the binding does not name is decoded
    by ``decode`` as ``bit_0x...``."""
    names: dict[int, str] = {}
    for prefix in REASON_PREFIXES:
        for attr in sorted(dir(nvml)):
            value = getattr(nvml, attr, None)
            if not attr.startswith(prefix) or not isinstance(value, int) or value <= 0 or value & (value - 1):
                continue
            names.setdefault(value, re.sub(r"(?<!^)(?=[A-Z])", "_", attr[len(prefix):]).lower())
    return names


def decode(mask: int, names: dict[int, str]) -> list[str]:
    """The names of the bits set in ``mask``, lowest bit first."""
    out, bit = [], 1
    while bit <= mask:
        if mask & bit:
            out.append(names.get(bit, f"bit_{bit:#x}"))
        bit <<= 1
    return out


class GpuStateReader:
    """Reads one physical GPU's state through NVML (for a MIG instance: its parent's, which it shares)."""

    name = "nvml_state"

    def __init__(self, nvml: Any, handle: Any, *, mig: bool = False) -> None:
        self.nvml, self.handle, self.mig = nvml, handle, mig
        self.names = reason_names(nvml)
        self._calls = [c for c in REASON_CALLS if callable(getattr(nvml, c, None))]
        self.reasons_call: str | None = self._calls[0] if self._calls else None

    def read(self) -> GpuSample:
        nvml, h = self.nvml, self.handle
        power = self._ask(nvml.nvmlDeviceGetPowerUsage, h)
        return GpuSample(
            sm_clock_mhz=self._ask(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM),
            memory_clock_mhz=self._ask(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_MEM),
            power_w=None if power is None else power / 1000.0,  # NVML reports milliwatts
            temperature_c=self._ask(nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU),
            reasons=self._reasons(),
            utilization_pct=self._ask(lambda handle: nvml.nvmlDeviceGetUtilizationRates(handle).gpu, h),
        )

    def _reasons(self) -> int | None:
        """The newer call while the driver answers it; where the driver lacks it, the older one from then on."""
        while self._calls:
            try:
                return int(getattr(self.nvml, self._calls[0])(self.handle))
            except self.nvml.NVMLError as exc:
                if getattr(exc, "value", None) != getattr(self.nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", None):
                    return None  # not supported on this card, or momentarily unavailable
                self._calls.pop(0)
                self.reasons_call = self._calls[0] if self._calls else None
        return None

    def _ask(self, fn: Any, *args: Any) -> float | None:
        try:
            return float(fn(*args))
        except self.nvml.NVMLError:  # NotSupported on this card, or the GPU is momentarily unavailable
            return None

    def settings(self) -> dict[str, Any]:
        """What the card is set to, read once: application and maximum clocks, persistence, power limit."""
        nvml, h = self.nvml, self.handle
        limit = self._ask(nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        persistence = self._ask(nvml.nvmlDeviceGetPersistenceMode, h)
        out: dict[str, Any] = {
            "applications_sm_clock_mhz": self._ask(nvml.nvmlDeviceGetApplicationsClock, h, nvml.NVML_CLOCK_SM),
            "applications_memory_clock_mhz": self._ask(nvml.nvmlDeviceGetApplicationsClock, h, nvml.NVML_CLOCK_MEM),
            "max_sm_clock_mhz": self._ask(nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_SM),
            "max_memory_clock_mhz": self._ask(nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_MEM),
            "power_limit_w": None if limit is None else limit / 1000.0,
            "persistence_mode": None if persistence is None else
            ("enabled" if int(persistence) == nvml.NVML_FEATURE_ENABLED else "disabled"),
            "local_cpus": core_list(local_cores(nvml, h)),
        }
        if self.mig:
            out["of"] = "the MIG instance's parent GPU (shared with its other instances)"
        return out


def local_cores(nvml: Any, handle: Any, cpu_count: int | None = None) -> set[int] | None:
    """The CPU cores NVML calls near the GPU (its NUMA node's: ``nvmlDeviceGetCpuAffinity``), or None where
    NVML does not say. A host thread far from its GPU pays for every copy and launch across the socket link."""
    import os

    cpus = cpu_count or os.cpu_count() or 1
    words = (cpus + 63) // 64  # NVML's cpuSet: 64-bit words (unsigned long on Linux)
    try:
        mask = nvml.nvmlDeviceGetCpuAffinity(handle, words)
    except nvml.NVMLError:
        return None
    cores = {64 * k + bit for k, word in enumerate(mask) for bit in range(64) if int(word) >> bit & 1}
    return cores or None


def core_list(cores: set[int] | None) -> str | None:
    """``{0, 1, 2, 3, 8}`` -> ``"0-3,8"`` (the kernel's cpulist form), None stays None."""
    if not cores:
        return None
    runs: list[list[int]] = []
    for c in sorted(cores):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


IDLE_REASON = "gpu_idle"  # the card waiting for work: clocks down for want of it, not held


def held(shares: dict[str, float] | None) -> dict[str, float]:
    """Of a record's clock-event reasons (name -> share of samples), those that held the clocks below their
    maximum while work ran: a power or thermal cap, a slowdown, a clock setting; idle aside."""
    return {name: share for name, share in (shares or {}).items() if name != IDLE_REASON and share > 0}


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """min, median and max of the figures NVML gave (None where it gave none)."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"min": min(got), "median": float(statistics.median(got)), "max": max(got)}


def summarise(samples: Sequence[GpuSample], reader: GpuStateReader, *, window: str, period_ms: float,
              settings: dict[str, Any] | None) -> dict[str, Any]:
    """The record's ``gpu_state``: each figure's spread over ``samples``, every reason seen with the share
    of samples it was active in, the settings read once, and what the samples covered."""
    counted = [s.reasons for s in samples if s.reasons is not None]
    seen: dict[str, float] = {}
    for mask in counted:
        for name in decode(mask, reader.names):
            seen[name] = seen.get(name, 0.0) + 1.0
    return {
        "window": window,
        "samples": len(samples),
        "period_ms": period_ms,
        **{f: spread([getattr(s, f) for s in samples]) for f in FIGURES},
        "clock_event_reasons": {k: round(v / len(counted), 4) for k, v in sorted(seen.items())} if counted else None,
        "reasons_call": reader.reasons_call,
        "settings": settings or {},
    }
