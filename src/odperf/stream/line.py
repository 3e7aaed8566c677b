"""The paper's line as a stream: a rate of camera images and a per-image deadline; the peak rate and capacity.

A car passes every ``car_interval_s`` seconds and its cameras take 95 images (odperf.workload.PAPER_CAR):
the line offers 95 / interval images per second. The device holds the line when, with images arriving at
that rate (Poisson, LoadGen's Server scenario), the 99th percentile of the per-image latency is within the
deadline. The peak is the highest Server rate whose percentile stays within the deadline, found by
bisection over the rate (each step one short LoadGen Server run); from it, capacity: how many cameras and
lines one device serves, how many devices a line needs.

Both verdicts are also bounded by the device's throughput, the rate its time per image implies (images
back to back in the same worker). Above it the queue grows without end, but a run of a few queries ends
before the queue pushes the percentile past a deadline of several seconds: such a run looked held at 2.8
times what the model could do. A rate above the throughput is therefore never held, however its short
run looked; the record keeps both readings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from odperf.workload import PAPER_CAR, Car

LINE_PERCENTILE = 0.99
PEAK_BRACKET = (0.25, 1.0)  # the search's bracket, in multiples of the throughput (the rate the time per image implies)


@dataclass(frozen=True)
class Line:
    """A production line: a car every ``car_interval_s`` s, ``car`` images each, each due within ``deadline_s``."""

    car_interval_s: float
    deadline_s: float
    car: Car = PAPER_CAR
    percentile: float = LINE_PERCENTILE

    @property
    def rate(self) -> float:
        """Camera images per second the line offers."""
        return self.car.images / self.car_interval_s

    @property
    def camera_rate(self) -> float:
        """Images per second one camera takes."""
        return self.rate / self.car.cameras

    def to_dict(self) -> dict[str, Any]:
        return {"car_interval_s": self.car_interval_s, "deadline_s": self.deadline_s, "rate": self.rate,
                "camera_rate": self.camera_rate, "cameras": self.car.cameras, "images_per_car": self.car.images,
                "percentile": self.percentile}


@dataclass
class PeakPoint:
    """One Server run of the search: the offered rate and what it did."""

    rate: float
    held: bool
    latency_s: dict[str, float]
    achieved_rate: float | None
    result: str  # LoadGen's VALID / INVALID
    scheduled_rate: float | None = None  # LoadGen's Poisson schedule as issued


@dataclass
class Peak:
    """The highest rate held within the deadline (None: not even the lowest rate tried), and every step."""

    rate: float | None
    implied_rate: float  # 1 / time per image at the same batch size, measured in the same worker
    points: list[PeakPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Capacity:
    """What one device's peak rate means for the line."""

    peak_rate: float
    cameras_per_device: int  # whole cameras whose images one device keeps up with
    lines_per_device: float
    devices_per_line: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capacity(peak_rate: float, line: Line) -> Capacity:
    return Capacity(
        peak_rate=peak_rate,
        cameras_per_device=int(math.floor(peak_rate / line.camera_rate + 1e-9)),
        lines_per_device=peak_rate / line.rate,
        devices_per_line=int(math.ceil(line.rate / peak_rate - 1e-9)) if peak_rate > 0 else 0,
    )


def holds(latency_s: dict[str, float], deadline_s: float, percentile: float = LINE_PERCENTILE,
          rate: float | None = None, throughput: float | None = None) -> bool | None:
    """Whether the run's latency at ``percentile`` is within the deadline (None: LoadGen gave no such figure)
    and, given an offered ``rate`` and the device's ``throughput``, whether the rate is within it."""
    value = latency_s.get(percentile_key(percentile))
    if value is None:
        return None
    return value <= deadline_s and (rate is None or throughput is None or rate <= throughput)


def percentile_key(percentile: float) -> str:
    """The summary's name of a percentile: 0.99 -> "p99", 0.999 -> "p99.9"."""
    return "p" + f"{percentile * 100:.2f}".rstrip("0").rstrip(".")


def find_peak(run_at: Callable[[float], Any], implied_rate: float, deadline_s: float, steps: int,
              percentile: float = LINE_PERCENTILE) -> Peak:
    """Bisection (geometric) over the Server rate within PEAK_BRACKET x ``implied_rate`` (the throughput:
    no rate above it is held, see the module's docstring): ``run_at(rate)`` runs LoadGen's Server scenario
    and returns its StreamRun; a rate that held raises the bracket's floor, one that failed lowers its top.
    The peak is the highest rate that held."""
    lo, hi = (f * implied_rate for f in PEAK_BRACKET)
    peak = Peak(rate=None, implied_rate=implied_rate)
    for _ in range(max(1, steps)):
        rate = math.sqrt(lo * hi)
        run = run_at(rate)
        ok = bool(holds(run.summary.latency_s, deadline_s, percentile, rate, implied_rate))
        peak.points.append(PeakPoint(rate=rate, held=ok, latency_s=dict(run.summary.latency_s),
                                     achieved_rate=run.summary.achieved_rate, result=run.summary.result,
                                     scheduled_rate=run.summary.scheduled_rate))
        if ok:
            lo = rate
            peak.rate = max(rate, peak.rate or 0.0)
        else:
            hi = rate
    return peak
