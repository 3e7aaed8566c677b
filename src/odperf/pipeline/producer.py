"""Camera producers: each line's cameras publish their images at the line's rate, stamped with capture time.

The schedule is fixed before the run (``schedule``): per line, cars one interval apart; within a car, each
camera's shots evenly spaced (``fixed``) or at Poisson arrivals of the same mean rate (the car's images at
uniformly random times within its interval, which is a Poisson process given their number). The images are
encoded once, before the run (a camera's encoder is not the pipeline under test); a producer thread per
line sleeps until each capture time, stamps it, and publishes. A publish the broker refuses after its
retries is recorded as lost with its reason: nothing is dropped silently.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from odperf.pipeline.broker import Broker, BrokerUnavailable
from odperf.pipeline.settings import PipelineSettings


@dataclass
class Shot:
    """One camera image of the run: who took it, when it is due to be taken (s from the run's start)."""

    seq: int
    line: int
    car: int
    camera: int
    shot: int
    at_s: float
    camera_index: int  # which of the run's distinct camera images it carries


@dataclass
class Published:
    """A shot as it went out: capture (wall clock), the broker's acknowledgement of it, or why it failed."""

    shot: Shot
    t_capture: float
    t_published: float | None = None
    entry_id: str | None = None
    error: str | None = None


def schedule(settings: PipelineSettings) -> list[list[Shot]]:
    """Per line, its shots in capture order."""
    rng = np.random.default_rng(settings.seed)
    lines, seq = [], 0
    for line in range(settings.lines):
        cams, shots = [], []
        for car in range(settings.cars):
            start = car * settings.car_interval_s
            n = settings.line_cameras(line) * settings.shots
            if settings.arrivals == "fixed":
                offsets = np.arange(settings.shots) * settings.car_interval_s / settings.shots
                times = np.repeat(offsets, settings.line_cameras(line))  # every camera fires together
            else:
                # a Poisson process given its n arrivals within the interval: n sorted uniform times
                times = np.sort(rng.uniform(0.0, settings.car_interval_s, n))
            for k, t in enumerate(times):
                cams.append((start + float(t), car, k % settings.line_cameras(line), k // settings.line_cameras(line)))
        for at_s, car, camera, shot in sorted(cams):
            shots.append(Shot(seq=-1, line=line, car=car, camera=camera, shot=shot, at_s=at_s, camera_index=0))
        lines.append(shots)
    for shot in sorted((s for ss in lines for s in ss), key=lambda s: (s.at_s, s.line)):
        shot.seq, shot.camera_index = seq, seq % settings.images
        seq += 1
    return lines


class Producers:
    """One thread per line publishing its shots on time; ``published`` holds every shot, sent or failed."""

    def __init__(self, broker_factory: Callable[[], Broker], stream: str, encoded: list[bytes],
                 lines: list[list[Shot]]) -> None:
        self.broker_factory = broker_factory
        self.stream = stream
        self.encoded = encoded
        self.lines = lines
        self.published: list[Published] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.t0 = 0.0

    def start(self, t0: float) -> None:
        """Start publishing; ``t0`` (wall clock) is the run's time zero."""
        self.t0 = t0
        for shots in self.lines:
            thread = threading.Thread(target=self._line, args=(shots,), daemon=True, name="odperf-camera-line")
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _line(self, shots: list[Shot]) -> None:
        broker = self.broker_factory()  # a connection per line, as each line's cameras have their own
        try:
            for shot in shots:
                delay = self.t0 + shot.at_s - time.time()
                if delay > 0:
                    time.sleep(delay)
                sent = Published(shot=shot, t_capture=time.time())
                try:
                    sent.entry_id = broker.publish(self.stream, {
                        "seq": shot.seq, "line": shot.line, "car": shot.car, "camera": shot.camera,
                        "camera_index": shot.camera_index, "t_capture": repr(sent.t_capture),
                        "data": self.encoded[shot.camera_index]})
                    sent.t_published = time.time()
                except BrokerUnavailable as exc:
                    sent.error = f"publish failed: {str(exc).splitlines()[0]}"
                with self._lock:
                    self.published.append(sent)
        finally:
            broker.close()
