"""A thread that samples memory probes on a fixed period and summarises what it saw.

The paper sampled nvidia-smi every 10 ms; this does the same with any set of probes (``measure.probes``)
and keeps the evidence a reader needs to trust the figure: how many samples, the period really achieved
(mean and p99: a sampler that falls behind misses short peaks), what the sampler itself cost, and a
downsampled timeline for plots. Deadlines are absolute (start + k * period), so a slow read does not
shift every later sample. On an NVIDIA GPU the same thread also reads the card's clocks, power,
temperature and clock-event reasons (``measure.gpu_state``) every few ticks, summarised over the timed
images where the caller marks them (``mark_timed``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from odperf.measure.gpu_state import DEFAULT_STATE_PERIOD_MS, GpuSample, GpuStateReader, summarise
from odperf.measure.probes import HEADLINE_ORDER, MB, Probe

TIMELINE_POINTS = 200


@dataclass
class ProbeStats:
    """One probe's figures over a run, MB (10**6 bytes); relative to its start value for device/system."""

    name: str
    scope: str
    peak_mb: float | None
    mean_mb: float | None
    baseline_mb: float | None
    samples: int


@dataclass
class MemoryStats:
    """What a sampling run found. ``probe`` names the probe behind the headline ``peak_mb``, with the
    reason in parentheses where it stands in for a better one (``"nvml_device (worker not listed ...)"``)."""

    probe: str | None
    peak_mb: float | None
    mean_mb: float | None
    samples: int
    requested_period_ms: float
    period_mean_ms: float | None
    period_p99_ms: float | None
    duration_s: float
    sampler_cpu_fraction: float | None  # sampler thread CPU time / wall time (1.0 = one core)
    probes: dict[str, ProbeStats] = field(default_factory=dict)
    timeline: list[list[float]] = field(default_factory=list)  # [[t_s, mb], ...] of the headline probe
    runtime_mb: float | None = None  # the headline probe at the marked moment: runtime up, model not loaded
    gpu_state: dict[str, Any] | None = None  # clocks, power, temperature, reasons (measure.gpu_state.summarise)

    def peak_of(self, name: str) -> float | None:
        stats = self.probes.get(name)
        return None if stats is None else stats.peak_mb


class MemorySampler:
    """Samples ``probes`` every ``period_ms`` in a daemon thread between ``start()`` and ``stop()``; with
    ``state``, also the GPU's state every ``state_period_ms`` (rounded to whole ticks, at least one)."""

    def __init__(self, probes: Sequence[Probe], period_ms: float = 10.0, *, state: GpuStateReader | None = None,
                 state_period_ms: float = DEFAULT_STATE_PERIOD_MS) -> None:
        if period_ms <= 0:
            raise ValueError(f"sample period must be positive, got {period_ms} ms")
        self.probes = list(probes)
        self.period_ms = float(period_ms)
        self.state = state
        self.state_every = max(1, round(state_period_ms / self.period_ms))
        self._states: list[tuple[float, GpuSample]] = []
        self._settings: dict[str, Any] | None = None
        self._timed: list[float | None] = [None, None]  # start and end of the timed images (time.monotonic)
        self._times: list[float] = []
        self._values: list[list[float | None]] = []
        self._baselines: list[float | None] = [None] * len(self.probes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_s = 0.0
        self._t0 = 0.0
        self._t1: float | None = None
        self._mark: float | None = None

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "MemorySampler":
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._baselines = [p.read() if p.scope != "process" else None for p in self.probes]
        if self.state is not None:
            self._settings = self.state.settings()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="odperf-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = self.period_ms / 1000.0
        cpu0 = time.thread_time()
        self._t0 = time.monotonic()  # deadlines count from the thread's first sample
        k = 0
        while not self._stop.is_set():
            now = time.monotonic()
            values = [p.read() for p in self.probes]
            if self.state is not None and k % self.state_every == 0:
                self._states.append((now, self.state.read()))
            self._times.append(now)
            self._values.append(values)
            k += 1
            deadline = self._t0 + k * period
            now = time.monotonic()
            if deadline < now:  # fell behind: skip missed slots rather than bursting to catch up
                k = int((now - self._t0) / period) + 1
                deadline = self._t0 + k * period
            time.sleep(deadline - now)  # cheaper per wake-up than Event.wait; stop() waits one period at most
        self._cpu_s = time.thread_time() - cpu0

    def mark_runtime(self, t: float) -> None:
        """The worker's runtime was up at ``t`` (time.monotonic) and its model not yet loaded: the headline
        probe's last sample by then is the runtime's own memory, which the model's figure is taken above."""
        self._mark = t

    def mark_timed(self, start: float | None = None, end: float | None = None) -> None:
        """The timed images began at ``start`` / ended at ``end`` (time.monotonic): the GPU's state is
        summarised over that window, not over loading and warm-up (the whole run where none is marked)."""
        if start is not None and self._timed[0] is None:
            self._timed[0] = start
        if end is not None:
            self._timed[1] = end

    def gpu_state(self) -> dict[str, Any] | None:
        """The GPU's state over the timed window (or the whole run), or None without a state reader."""
        start, end = self._timed
        return self.gpu_state_between(start, end, "timed images")

    def gpu_state_between(self, start: float | None, end: float | None, what: str) -> dict[str, Any] | None:
        """The GPU's state over ``start``-``end`` (time.monotonic; ``what`` names that stretch: a stream's
        LoadGen run), or over the whole run where no window is given or no sample fell inside it."""
        if self.state is None:
            return None
        taken = list(self._states)  # one snapshot: the sampler's thread may append meanwhile
        states = [s for _, s in taken]
        window = "whole worker run"
        if start is not None:
            inside = [s for t, s in taken if t >= start and (end is None or t <= end)]
            if inside:
                states, window = inside, what
            else:
                window = f"whole worker run (no sample fell inside the {what})"
        return summarise(states, self.state, window=window, period_ms=self.period_ms * self.state_every,
                         settings=self._settings)

    def stop(self) -> MemoryStats:
        if self._thread is not None and self._t1 is None:
            self._stop.set()
            self._thread.join()
            self._t1 = time.monotonic()
        return self.stats()

    def stats(self) -> MemoryStats:
        """Summary of the samples so far (safe to call after a failed run: figures so far)."""
        rows = self._values[: len(self._times)]  # one snapshot: the thread may append while this runs
        times = np.asarray(self._times[: len(rows)], dtype=np.float64)
        n = len(times)
        end = self._t1 if self._t1 is not None else time.monotonic()
        duration = max(end - self._t0, 0.0) if self._thread is not None else 0.0
        gaps_ms = np.diff(times) * 1000.0 if n > 1 else np.zeros(0)
        per_probe: dict[str, ProbeStats] = {}
        series: dict[str, np.ndarray] = {}
        for j, probe in enumerate(self.probes):
            raw = np.array([row[j] if row[j] is not None else np.nan for row in rows], dtype=np.float64)
            base = self._baselines[j]
            mb = (raw - (base or 0.0)) / MB
            series[probe.name] = mb
            valid = mb[~np.isnan(mb)]
            per_probe[probe.name] = ProbeStats(
                name=probe.name,
                scope=probe.scope,
                peak_mb=float(valid.max()) if len(valid) else None,
                mean_mb=float(valid.mean()) if len(valid) else None,
                baseline_mb=None if base is None else base / MB,
                samples=int(len(valid)),
            )
        headline = next(
            (name for name in HEADLINE_ORDER if name in per_probe and per_probe[name].samples), None
        )
        if headline is None:
            headline = next((p.name for p in self.probes if per_probe[p.name].samples), None)
        label = headline
        if headline is not None:
            headline, label = self._stand_in_for(headline, per_probe)
        head = per_probe.get(headline) if headline else None
        timeline = _downsample(times - self._t0, series[headline]) if headline else []
        return MemoryStats(
            probe=label,
            peak_mb=head.peak_mb if head else None,
            mean_mb=head.mean_mb if head else None,
            samples=n,
            requested_period_ms=self.period_ms,
            period_mean_ms=float(gaps_ms.mean()) if len(gaps_ms) else None,
            period_p99_ms=float(np.percentile(gaps_ms, 99)) if len(gaps_ms) else None,
            duration_s=duration,
            sampler_cpu_fraction=(self._cpu_s / duration) if self._t1 is not None and duration > 0 else None,
            probes=per_probe,
            timeline=timeline,
            runtime_mb=self._value_at_mark(times, series[headline]) if headline else None,
            gpu_state=self.gpu_state(),
        )

    def _value_at_mark(self, times: np.ndarray, mb: np.ndarray) -> float | None:
        if self._mark is None:
            return None
        before = np.flatnonzero((times <= self._mark) & ~np.isnan(mb))
        return float(mb[before[-1]]) if before.size else None

    def _stand_in_for(self, headline: str, per_probe: dict[str, ProbeStats]) -> tuple[str, str]:
        """(probe, label) of the headline: a device probe in place of a process probe that never saw its
        worker while the device's used memory rose above its value before the worker started.

        Inside a container NVML lists the host's PIDs, so the worker's own figure reads 0 throughout
        while its memory shows on the device: the device's rise (relative, as device probes always are)
        is then the best figure there is, and the label says why it was taken.
        """
        probe = next((p for p in self.probes if p.name == headline), None)
        missed = getattr(probe, "missed", None)
        reason = missed() if callable(missed) else None
        if reason is None or headline not in HEADLINE_ORDER:
            return headline, headline
        for name in HEADLINE_ORDER[HEADLINE_ORDER.index(headline) + 1:]:
            stats = per_probe.get(name)
            if (stats is not None and stats.scope == "device" and stats.baseline_mb is not None
                    and stats.peak_mb is not None and stats.peak_mb > 0):
                return name, f"{name} ({reason})"
        return headline, headline


def _downsample(t: np.ndarray, mb: np.ndarray, points: int = TIMELINE_POINTS) -> list[list[float]]:
    """At most ``points`` [t, mb] pairs; each keeps the maximum of its chunk, so no peak is smoothed away."""
    keep = ~np.isnan(mb)
    t, mb = t[keep], mb[keep]
    if len(t) <= points:
        return [[round(float(a), 4), round(float(b), 3)] for a, b in zip(t, mb)]
    out = []
    for chunk in np.array_split(np.arange(len(t)), points):
        i = chunk[int(np.argmax(mb[chunk]))]
        out.append([round(float(t[i]), 4), round(float(mb[i]), 3)])
    return out
