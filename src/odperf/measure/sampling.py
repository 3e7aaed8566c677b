"""How many camera images a case times: until the mean time per image is known tightly enough.

As pytest-benchmark's and asv's rounds do, a case stops sampling when its statistics are tight, not after
a count fixed in advance: at least ``floor`` images, at most ``ceiling``, and in between it stops as soon as
the 95% confidence interval of the mean time per image (Student's t over the images so far) is within
``target`` of the mean (0.03: +/-3%). A fixed count (``--odperf-images N``) is the plan with
floor = ceiling = N. What happened is kept in the record (``SamplingPlan.outcome``): the plan, the
interval reached and why sampling stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from odperf.errors import WorkloadError

CONFIDENCE = 0.95
DEFAULT_FLOOR = 3  # the fewest images a t-interval over a case's times can honestly be built from
DEFAULT_TARGET = 0.03


def relative_ci(times: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the ``confidence`` interval of the mean, relative to the mean (None below 2 times)."""
    n = len(times)
    if n < 2:
        return None
    from scipy import stats

    mean = math.fsum(times) / n
    if mean <= 0:
        return None
    sd = math.sqrt(math.fsum((t - mean) ** 2 for t in times) / (n - 1))
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) / mean)


@dataclass(frozen=True)
class SamplingPlan:
    """Images per case: ``floor`` to ``ceiling``, stopping once the mean is within ``target`` (relative)."""

    floor: int
    ceiling: int
    target: float | None = DEFAULT_TARGET  # None: always the ceiling (a fixed count)
    reason: str | None = None  # why a run that chooses its images fixed this case's (said in the record)

    def __post_init__(self) -> None:
        for name in ("floor", "ceiling"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkloadError(f"images per case: {name} must be a positive integer, got {value!r}")
        if self.floor > self.ceiling:
            raise WorkloadError(f"images per case: the floor ({self.floor}) is above the ceiling ({self.ceiling}); "
                                "give --odperf-min-images at most --odperf-max-images")
        if self.target is not None and not (0 < self.target < 1):
            raise WorkloadError(f"--odperf-target-ci must be a fraction of the mean between 0 and 1 (0.03: "
                                f"+/-3%), got {self.target!r}")

    @classmethod
    def fixed(cls, images: int) -> "SamplingPlan":
        return cls(floor=images, ceiling=images, target=None)

    @property
    def is_fixed(self) -> bool:
        return self.target is None or self.floor == self.ceiling

    def enough(self, times: Sequence[float]) -> bool:
        """Whether sampling stops after ``times`` (the images timed so far)."""
        n = len(times)
        if n >= self.ceiling:
            return True
        if n < self.floor or self.target is None:
            return False
        ci = relative_ci(times)
        return ci is not None and ci <= self.target

    def outcome(self, times: Sequence[float]) -> dict[str, Any]:
        """For the record: the plan, the interval the times reached, and why sampling stopped."""
        ci = relative_ci(times)
        if self.is_fixed:
            why = self.reason or "fixed"
        elif len(times) >= self.ceiling and not (ci is not None and ci <= (self.target or 0)):
            why = "ceiling"
        else:
            why = "target" if len(times) >= self.floor else "stopped early"
        return {"floor": self.floor, "ceiling": self.ceiling, "target_rel_ci": self.target,
                "confidence": CONFIDENCE, "rel_ci": ci, "images": len(times), "stopped_by": why}

    def describe(self) -> str:
        if self.is_fixed:
            return f"{self.ceiling} image(s) timed per case"
        return (f"{self.floor}-{self.ceiling} images timed per case, until the mean is within "
                f"+/-{self.target:.0%} ({CONFIDENCE:.0%} CI)")


class StopSampling(BaseException):
    """Raised from a benchmark round's setup once the statistics are tight. A BaseException on purpose:
    pytest-benchmark counts any Exception from its loop as the benchmark's error and saves nothing of it,
    while the rounds it already timed are exactly the figures wanted."""


def plan_images(images: int | None, floor: int | None, ceiling: int | None, target: float | None,
                default_ceiling: int) -> SamplingPlan:
    """The plan from the options: ``images`` fixes the count (and excludes the others), else the run chooses."""
    if images is not None:
        given = [name for name, v in (("--odperf-min-images", floor), ("--odperf-max-images", ceiling),
                                      ("--odperf-target-ci", target)) if v is not None]
        if given:
            raise WorkloadError(f"--odperf-images={images} fixes the images per case: drop {', '.join(given)}, "
                                "or drop --odperf-images to let the run choose")
        return SamplingPlan.fixed(images)
    top = ceiling if ceiling is not None else max(default_ceiling, floor or 0)
    low = floor if floor is not None else min(DEFAULT_FLOOR, top) if isinstance(top, int) else DEFAULT_FLOOR
    return SamplingPlan(floor=low, ceiling=top, target=DEFAULT_TARGET if target is None else target)
