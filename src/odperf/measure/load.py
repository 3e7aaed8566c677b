"""How busy the rest of the machine was while a case was timed: the kernel's CPU counters around each image.

A figure taken while other work ran is not the figure of an idle machine, and on a machine with few cores it
can be far off (a runtime whose threads spin at barriers waits for a descheduled thread each operator). The
kernel counts every process's CPU time: the machine's busy time (``/proc/stat``, through psutil) minus the
worker's own and this process's own (``/proc/<pid>/stat``) is what everything else used. It is read right
around each timed image, outside its timed region, and summed over the images: the record's ``load`` says,
in cores, what the worker, the harness and the others used meanwhile, and whether that counts as load.

On a virtual machine the others include the hypervisor's ``steal``: time this machine's cores were ready to
run but the host ran another guest, a tenant no process list here can show. It is given apart as well.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

LOADED_SHARE = 0.10  # others using more than this share of the machine's cores: the figure is flagged


def _machine_s() -> tuple[float, float | None]:
    """CPU seconds the whole machine has been busy (every core; idle and iowait excluded), and of them the
    seconds stolen by the hypervisor (None where the kernel does not count steal: not Linux)."""
    t = psutil.cpu_times()
    total = sum(t)
    for name in ("idle", "iowait", "guest", "guest_nice"):  # guest time is already counted in user/nice
        total -= getattr(t, name, 0.0)
    return total, getattr(t, "steal", None)


def _own_s(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        t = process.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


@dataclass
class Load:
    """CPU use during a region, in cores (CPU seconds per second of wall time)."""

    cores: int
    wall_s: float
    worker_cores: float
    harness_cores: float
    others_cores: float  # everything else, the hypervisor's steal included
    steal_cores: float | None = None  # of the others: cores the hypervisor gave another guest (None: not counted)

    @property
    def others_share(self) -> float:
        return self.others_cores / self.cores if self.cores else 0.0

    @property
    def loaded(self) -> bool:
        return self.others_share > LOADED_SHARE

    def to_record(self) -> dict[str, Any]:
        out = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out.update(others_share=round(self.others_share, 4), loaded=self.loaded, threshold_share=LOADED_SHARE)
        return out


class LoadMeter:
    """Sums the CPU time of the worker, this process and everything else over the regions it is told of."""

    def __init__(self, worker_pid: int | None) -> None:
        self.cores = psutil.cpu_count() or os.cpu_count() or 1
        self._worker = _process(worker_pid)
        self._harness = psutil.Process()
        self._sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # wall, busy, worker, harness, steal
        self._open: tuple[float, ...] | None = None
        self._steal = True  # the kernel counts it (until a read says otherwise)

    def _read(self) -> tuple[float, ...]:
        busy, steal = _machine_s()
        if steal is None:
            self._steal = False
        return time.monotonic(), busy, _own_s(self._worker), _own_s(self._harness), steal or 0.0

    def begin(self) -> None:
        self._open = self._read()

    def end(self) -> None:
        if self._open is None:
            return
        now = self._read()
        for k in range(len(self._sums)):
            self._sums[k] += now[k] - self._open[k]
        self._open = None

    def result(self) -> Load | None:
        wall, busy, worker, harness, steal = self._sums
        if wall <= 0:
            return None
        others = max(busy - worker - harness, 0.0)  # counters tick at 10 ms: a short region can dip below 0
        return Load(cores=self.cores, wall_s=wall, worker_cores=worker / wall, harness_cores=harness / wall,
                    others_cores=others / wall, steal_cores=max(steal, 0.0) / wall if self._steal else None)


def _process(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def describe(load: dict[str, Any]) -> str:
    """One phrase for a record's load: what the rest of the machine used while it was timed."""
    return (f"others used {load['others_cores']:.2f} of {load['cores']} cores "
            f"({load['others_share']:.0%}) while it was timed")


def process_age_s() -> float:
    """Wall seconds since this process started (the kernel's start time): a run's wall time, imports included."""
    return max(time.time() - psutil.Process().create_time(), 0.0)
