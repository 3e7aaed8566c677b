"""Where a run's wall time goes, measured by the run itself: what it measured, and what it spent around it.

Each case adds what its worker session timed (``Measurement``: the worker's clocks and the parent's steps,
``WorkerSession.costs``) and the wall time the harness spent on the case; the session adds its own wall time.
Every category is a stretch of the parent's own timeline, so they add up to the wall time:

- timed inference: the worker-timed camera images (the figures the run exists for);
- deployment: spawn to a loaded model, as the parent waited for it (the sampler's start runs meanwhile);
- warm-up: the warm-up images, part of the deployment figure but listed apart;
- dataset: opening the camera images and preparing each one before its round (untimed);
- protocol: the parent's clock minus the worker's, per image, and the start's own messages;
- streams: LoadGen runs (the streaming pass);
- sampler: stopping the memory sampler;
- scoring: COCO mAP of the detections;
- idle: ending a finished worker (its kill and reaping: its runtime's teardown is not waited for);
- bookkeeping: the rest of each case (pytest, pytest-benchmark, odperf's records and checks) and of the
  session (collection, checks before the first case, writing the JSON), and, for a whole ``odperf bench``,
  starting each pass's Python and pytest.

The overhead ratio is wall time / what the run measured (timed inference, deployment with its warm-up, and
LoadGen's runs, which time images too): 1.0 if the run did nothing but measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

STEPS = ("timed inference", "deployment", "warm-up", "dataset", "protocol", "streams", "sampler", "scoring",
         "idle", "bookkeeping")
WHOLE_JOB = "whole job"  # the last of ``job_breakdowns``: every pass together
MEASURED = ("timed inference", "deployment", "warm-up", "streams")  # what the run measures: the ratio's denominator


@dataclass
class TimeBreakdown:
    """Seconds per category (``STEPS``) over some cases, the wall time they spanned, and the cases."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    wall_s: float = 0.0
    cases: int = 0
    _measurements: dict[int, Any] = field(default_factory=dict, repr=False)

    def note(self, m: Any) -> None:
        """A worker session's figures (an ``engine.measurement.Measurement``, whatever its outcome); one
        noted again (a stream case's session, one record per scenario) counts once, as it is at the end."""
        self._measurements[id(m)] = m

    def close(self, wall_s: float) -> "TimeBreakdown":
        """The session's wall time: what no measurement accounts for is bookkeeping."""
        for m in self._measurements.values():
            self._add(m)
        self.cases += len(self._measurements)
        self._measurements.clear()
        self.wall_s = wall_s
        self.seconds["bookkeeping"] = max(wall_s - sum(v for k, v in self.seconds.items() if k != "bookkeeping"), 0.0)
        return self

    def _add(self, m: Any) -> None:
        costs = dict(getattr(m, "costs", None) or {})
        worker = sum(m.worker_times_s)
        parent = sum(m.parent_times_s[: len(m.worker_times_s)])
        start = costs.get("start", 0.0)
        d = m.deploy
        warm = d.warmup_s if d else 0.0
        dataset = d.dataset_s if d else 0.0
        parts = {
            "timed inference": worker,
            "deployment": (d.total_s - warm) if d else start,
            "warm-up": warm,
            "dataset": dataset + costs.get("prepare", 0.0),
            "protocol": max(parent - worker, 0.0) + (max(start - d.total_s - dataset, 0.0) if d else 0.0)
                        + costs.get("finish", 0.0),
            "streams": costs.get("streams", 0.0),
            "sampler": costs.get("sampler", 0.0),
            "scoring": costs.get("scoring", 0.0),
            "idle": costs.get("exit", 0.0),
        }
        for k, v in parts.items():
            self.seconds[k] += v

    @property
    def measured_s(self) -> float:
        return sum(self.seconds[k] for k in MEASURED)

    @property
    def overhead_ratio(self) -> float | None:
        """Wall time / what was measured (``MEASURED``): 1.0 if the run did nothing but measure."""
        return self.wall_s / self.measured_s if self.measured_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall_s, 3), "cases": self.cases,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "overhead_ratio": round(self.overhead_ratio, 4) if self.overhead_ratio else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TimeBreakdown":
        seconds = dict.fromkeys(STEPS, 0.0)
        seconds.update({k: float(v) for k, v in (data.get("seconds") or {}).items() if k in seconds})
        return cls(seconds=seconds, wall_s=float(data.get("wall_s") or 0.0), cases=int(data.get("cases") or 0))

    @classmethod
    def total(cls, parts: Iterable["TimeBreakdown"], wall_s: float | None = None) -> "TimeBreakdown":
        """Several passes as one; ``wall_s`` (the whole job's) makes the difference bookkeeping too."""
        out = cls()
        for p in parts:
            for k in STEPS:
                out.seconds[k] += p.seconds[k]
            out.wall_s += p.wall_s
            out.cases += p.cases
        if wall_s is not None and wall_s > out.wall_s:
            out.seconds["bookkeeping"] += wall_s - out.wall_s
            out.wall_s = wall_s
        return out

    def lines(self, title: str) -> list[str]:
        """The breakdown as a few lines: each category's seconds and share, then the overhead ratio."""
        wall = self.wall_s or 1.0
        shown = [f"{k} {v:.1f} s ({v / wall:.0%})" for k, v in self.seconds.items() if v >= 0.05]
        ratio = self.overhead_ratio
        return [
            f"{title}: {self.wall_s:.1f} s wall over {self.cases} case(s): " + ", ".join(shown),
            f"{title}: overhead ratio {ratio:.2f} (wall / (timed inference + deployment + streams))" if ratio
            else f"{title}: overhead ratio n/a (nothing timed or deployed)",
        ]


def job_breakdowns(passes: list[tuple[str, dict[str, Any] | None, float]],
                   wall_s: float) -> list[tuple[str, TimeBreakdown]]:
    """A whole job's breakdown: each pass's (name, the breakdown its saved run holds, ``SavedRun.time_breakdown``,
    or None where it saved none; its wall time as the job saw it), then ("whole job", the total over
    ``wall_s``); a pass's wall beyond its own session's (starting Python and pytest) is bookkeeping, and so
    is the job's beyond its passes' (rendering the report)."""
    parts = []
    for name, saved, pass_wall in passes:
        b = TimeBreakdown.from_dict(saved) if saved else TimeBreakdown()
        parts.append((name, TimeBreakdown.total([b], pass_wall)))
    return parts + [(WHOLE_JOB, TimeBreakdown.total((b for _, b in parts), wall_s))]


def job_lines(parts: list[tuple[str, TimeBreakdown]]) -> list[str]:
    """``job_breakdowns`` as lines: each pass's, then the whole job's."""
    return [line for name, b in parts for line in b.lines(name if name == WHOLE_JOB else f"pass {name}")]
