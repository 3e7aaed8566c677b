"""Memory probes: each reads one figure, in bytes, that the sampler records over time.

Probes that look at another process (the worker) by its PID run in the parent, so that sampling costs the
timed worker nothing: host RSS (psutil), NVML per-process and per-device used memory, and Jetson shared
memory (through jetson-stats where it is installed and its service answers, else /proc/meminfo). A
runtime's allocator can only be asked from inside the process that owns it, so the worker asks its
backend (``Backend.allocator_stats``); the allocator keeps its own peak, which needs no sampling.

Scopes: a ``process`` probe counts only the worker; ``device`` and ``system`` probes count everything on
the device (or board) and the sampler reports them relative to their value before the worker started.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

MB = 1_000_000


class Probe(Protocol):
    name: str
    scope: str  # "process", "device" or "system"

    def read(self) -> float | None:
        """Bytes now, or None when the figure is momentarily unavailable."""


def import_nvml() -> Any | None:
    """NVML initialised, or None where there is no NVIDIA driver (this is not an error). The module is
    ``pynvml`` from nvidia-ml-py, NVIDIA's maintained bindings (not the deprecated ``pynvml`` package)."""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
        return None
    return nvml


@dataclass
class RssProbe:
    """Resident set size of a process: the memory figure for CPU runs (RSS tracks real allocations).

    On Linux it re-reads the already open ``/proc/<pid>/statm`` (a few microseconds, so that sampling at
    10 ms stays far below 1% of a core); elsewhere it asks psutil.
    """

    pid: int
    name: str = "host_rss"
    scope: str = "process"

    def __post_init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            self._fd: int | None = os.open(f"/proc/{self.pid}/statm", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> float | None:
        if self._fd is not None:
            try:
                return float(int(os.pread(self._fd, 128, 0).split()[1]) * self._page)
            except (OSError, IndexError, ValueError):
                return None  # the process is gone
        try:
            return float(psutil.Process(self.pid).memory_info().rss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


@dataclass
class NvmlProcessProbe:
    """GPU memory NVML attributes to one PID (what nvidia-smi lists per process; the paper's figure).

    ``index`` is the GPU's NVML index; ``handle`` (from ``visible_gpus``) names the device directly, as
    for a MIG instance. Inside a container NVML lists the host's PIDs, never the worker's: ``missed()``
    then says so, and the sampler takes the device's figure instead of this probe's zeros.
    """

    nvml: Any
    index: int
    pid: int
    name: str = "nvml_process"
    scope: str = "process"
    handle: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._handle = self.handle if self.handle is not None else self.nvml.nvmlDeviceGetHandleByIndex(self.index)
        self.listed = False  # NVML listed the worker's PID at least once
        self.counted = False  # ... with a memory figure (some drivers list PIDs without one)

    def read(self) -> float | None:
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception:
            return None
        mine = [p for p in procs if p.pid == self.pid]
        used = [p.usedGpuMemory for p in mine if p.usedGpuMemory is not None]
        self.listed = self.listed or bool(mine)
        self.counted = self.counted or bool(used)
        # Before the worker creates its CUDA context it holds no GPU memory: that is a real 0, not unknown.
        return float(sum(used)) if used else 0.0

    def missed(self) -> str | None:
        """Why this probe's figures do not show the worker, or None once NVML counted the worker's memory."""
        if self.counted:
            return None
        if self.listed:
            return "NVML lists the worker without a memory figure"
        return "worker not listed by NVML, e.g. a container's PID namespace"


@dataclass
class NvmlDeviceProbe:
    """Used memory of the whole GPU (or MIG instance): the fallback where per-process figures are hidden."""

    nvml: Any
    index: int
    name: str = "nvml_device"
    scope: str = "device"
    handle: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._handle = self.handle if self.handle is not None else self.nvml.nvmlDeviceGetHandleByIndex(self.index)

    def read(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        except Exception:
            return None


@dataclass
class JtopProbe:
    """Memory in use on a Jetson board as jetson-stats reports it (jtop's RAM "used": total less free,
    buffers and cache), the figure Jetson users watch. jtop's service refreshes it every ``interval`` s,
    so samples between refreshes repeat the last figure. ``jetson`` is a started ``jtop.jtop``."""

    jetson: Any = field(repr=False)
    name: str = "jetson_jtop"
    scope: str = "system"

    def read(self) -> float | None:
        try:
            return float(self.jetson.memory["RAM"]["used"]) * 1024  # jtop reports kB
        except Exception:  # the service went away, or has not sent its first figures yet
            return None

    def close(self) -> None:
        jetson, self.jetson = self.jetson, None
        if jetson is not None:
            jetson.close()

    def __del__(self) -> None:
        self.close()


@dataclass
class JetsonSharedProbe:
    """Memory in use on a Jetson board (MemTotal - MemAvailable): its GPU allocates from host memory. The
    fallback where jetson-stats is not installed or its service does not answer."""

    meminfo: Path = Path("/proc/meminfo")
    name: str = "jetson_shared"
    scope: str = "system"

    def read(self) -> float | None:
        try:
            fields = dict(
                line.split(":", 1) for line in self.meminfo.read_text().splitlines() if ":" in line
            )
            total = int(fields["MemTotal"].split()[0])
            available = int(fields["MemAvailable"].split()[0])
        except (OSError, KeyError, ValueError):
            return None
        return float((total - available) * 1024)


def jetson_probe() -> Probe:
    """The board's memory through jetson-stats (jtop) where it is installed and its service answers, else
    through /proc/meminfo."""
    try:
        from jtop import JtopException, jtop
    except ImportError:
        return JetsonSharedProbe()
    jetson = jtop()
    try:
        jetson.start()  # connects to the jtop service; JtopException when it is not running
    except (JtopException, OSError):
        return JetsonSharedProbe()
    return JtopProbe(jetson)


HEADLINE_ORDER = ("nvml_process", "jetson_jtop", "jetson_shared", "nvml_device", "host_rss")
"""Which probe gives a run's headline memory figure, best first: the worker's own GPU memory as the paper
measured it, then the board's shared memory on Jetson (jtop's figure, else meminfo's), then the whole
GPU, then host RSS (CPU runs). A process probe that never saw its worker while the device's memory rose
gives way to the device probe (``MemorySampler`` says so in the headline's name)."""

