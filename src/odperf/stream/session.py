"""The parent's side of a stream: one worker per (model, device, batch size) serving every LoadGen run.

LoadGen runs in the worker; the parent asks for a run, waits for its summary and samples the worker's
memory meanwhile, as for timing (``WorkerSession``). Each run's share of the memory timeline gives its
peak and its slope after warm-up: memory that still grows through a sustained stream is a leak or a
cache that never settles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odperf.engine.client import WorkerSession
from odperf.stream.settings import StreamSettings
from odperf.stream.summary import StreamSummary

WARMUP_FRACTION = 0.2  # the first fifth of a run (LoadGen loading its samples, the queue filling) is warm-up
SLOPE_MIN_SPAN_S = 1.0  # a slope over less than a second of samples says nothing


@dataclass
class StreamRun:
    """One LoadGen run as the parent saw it: LoadGen's summary, the worker's own figures, memory."""

    settings: StreamSettings
    summary: StreamSummary
    log_dir: str
    wall_s: float  # LoadGen's test, start to end, in the worker
    batches: int  # model calls
    model_s: float  # seconds inside the model's calls (the rest of the wall time: host work, waiting)
    peak_memory_mb: float | None = None
    memory_timeline: list[list[float]] = field(default_factory=list)  # [[t_s from the run's start, MB]]
    memory_slope_mb_per_min: float | None = None  # after warm-up
    memory_probe: str | None = None
    gpu_state: dict[str, Any] | None = None  # what an NVIDIA GPU was doing during this run (measure.gpu_state)

    def latency(self, name: str) -> float | None:
        return self.summary.latency_s.get(name)


def memory_slope(timeline: list[list[float]]) -> float | None:
    """MB per minute of a least-squares line through the timeline after its first WARMUP_FRACTION."""
    if len(timeline) < 3:
        return None
    t = np.asarray([p[0] for p in timeline], dtype=np.float64)
    mb = np.asarray([p[1] for p in timeline], dtype=np.float64)
    keep = t >= t[0] + WARMUP_FRACTION * (t[-1] - t[0])
    t, mb = t[keep], mb[keep]
    if len(t) < 3 or t[-1] - t[0] < SLOPE_MIN_SPAN_S:
        return None
    return float(np.polyfit(t, mb, 1)[0] * 60.0)


STREAM_HANDLER = "odperf.stream.runner:stream_command"  # imported by name in the worker (a layer below)


class StreamSession(WorkerSession):
    """A WorkerSession that also runs LoadGen tests in its worker (``stream``)."""

    def stream(self, settings: StreamSettings, log_dir: str | Path) -> StreamRun:
        """One LoadGen run; raises WorkerFailed (oom, crash, timeout) with the figures so far."""
        self._step = f"LoadGen {settings.scenario} run" + (
            f" at {settings.target_rate:.3g} images/s" if settings.target_rate else "")
        t_start = time.monotonic()
        reply = self._call({"cmd": "stream", "handler": STREAM_HANDLER, "settings": settings.to_dict(),
                            "log_dir": str(log_dir)},
                           "streamed", self._stream_timeout(settings))
        t_end = time.monotonic()
        self._add_cost("streams", t_start)
        run = StreamRun(settings=settings, summary=StreamSummary.from_dict(reply["summary"]),
                        log_dir=str(log_dir), wall_s=float(reply["wall_s"]), batches=int(reply["batches"]),
                        model_s=float(reply["model_s"]))
        if self.sampler is not None:
            stats = self.sampler.stats()
            t0 = time.monotonic() - stats.duration_s  # the sampler's zero on this clock
            lo, hi = t_start - t0, t_end - t0
            window = [[round(t - lo, 4), mb] for t, mb in stats.timeline if lo <= t <= hi]
            run.memory_timeline, run.memory_probe = window, stats.probe
            run.peak_memory_mb = max((mb for _, mb in window), default=None)
            run.memory_slope_mb_per_min = memory_slope(window)
            run.gpu_state = self.sampler.gpu_state_between(t_start, t_end, "LoadGen run")
        return run

    def image_times(self, images: int) -> list[float]:
        """Worker-timed seconds of ``images`` camera images, one at a time (the timing benchmark's figure)."""
        return [self.run_image(self.prepare(i % self.request.images)) for i in range(images)]

    def _stream_timeout(self, settings: StreamSettings) -> float:
        """LoadGen's longest run plus the step timeout: a run that overruns both has hung."""
        return (settings.budget.max_duration_s or 0.0) + self.request.timeout_s
