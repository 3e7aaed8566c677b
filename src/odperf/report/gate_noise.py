"""How far one process's figures move from the next: the noise the gate on two saved runs tests against.

A saved run is one pytest process per side. Its rounds are not independent samples of the code's speed:
the level of a whole process moves (load, thermal state, where the allocator put things), so pooling the
rounds of two runs finds "significant" changes where nothing changed. What a single run per side can be
compared against is the known spread between processes of the same code on the same machine: the standard
deviation of the log of a figure (median time per image, the model's own memory) over repeated runs,
measured by ``odperf gate --calibrate`` (``measure``) and kept in a noise file with where, when and how it
was measured. One is shipped (``fixtures/gate-noise.json``, measured on the reference machine); ``odperf
gate --noise FILE`` gives one measured on the machine the runs come from, ``--time-noise`` /
``--memory-noise`` override its figures.

The test of one figure (``judge``): the log ratio current/baseline against a Student t with the noise's
degrees of freedom, its scale the two sides' spreads added in quadrature. A side's spread is at least the
noise file's, and at least what the run itself shows: for time, the sampling error of its median from
its rounds; for memory, the spread of the runtime's own memory before the model loaded across the run's
worker processes (each measurement is one), a floor in MB measured by the run itself.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from odperf.errors import ResultsError
from odperf.report.rows import Row, rows_of
from odperf.results import SavedRun

FORMAT = 1
SHIPPED_NAME = "gate-noise.json"
MIN_RUNS = 3  # a spread from fewer processes says nothing
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)  # sd of a median of n normal samples: 1.2533 sd / sqrt(n)
# a figure passes only when a growth of DEFAULT_DETECT is ruled out at this confidence: a +25% regression is
# not passed because its baseline happened to run slow
DEFAULT_DETECT = 0.25
DETECT_CONFIDENCE = 0.95

# verdicts of the test against the noise
REGRESSION = "regression"
UNDECIDED = "undecided: run `odperf ab`"
WITHIN = "within the threshold"  # and DEFAULT_DETECT ruled out


@dataclass(frozen=True)
class Spread:
    """The between-process spread of one figure of one case: sd of its log, and the runs it came from."""

    model: str
    batch_size: int
    time_log_sd: float | None
    memory_log_sd: float | None
    runs: int


@dataclass(frozen=True)
class GateNoise:
    """A noise file: per (model, batch) spreads for one device profile and memory probe, with provenance."""

    profile: str
    probe: str | None
    cases: tuple[Spread, ...]
    source: str  # how it was measured (the command), or what overrode it
    measured: str  # ISO date
    machine: str

    def spread(self, model: str, batch: int, what: str) -> tuple[float, int] | None:
        """(log sd, degrees of freedom) of ``what`` ("time" or "memory") for a case: its own where measured,
        else the spreads of every measured case pooled; None where nothing was measured."""
        def sd(s: Spread) -> float | None:
            return getattr(s, f"{what}_log_sd")

        own = [s for s in self.cases if (s.model, s.batch_size) == (model, batch) and sd(s) is not None]
        if own:
            return float(sd(own[0])), own[0].runs - 1
        known = [s for s in self.cases if sd(s) is not None]
        if not known:
            return None
        dof = sum(s.runs - 1 for s in known)
        pooled = math.sqrt(sum((s.runs - 1) * sd(s) ** 2 for s in known) / dof)
        return pooled, dof

    def describe(self) -> str:
        return f"noise of profile {self.profile}, measured {self.measured} on {self.machine} ({self.source})"

    def overridden(self, time_log_sd: float | None, memory_log_sd: float | None, profile: str | None = None,
                   runs: int = 1000) -> GateNoise:
        """Every case's spread replaced where given (an option): many degrees of freedom, a figure taken as
        known, for the runs gated (``profile``, any memory probe)."""
        if time_log_sd is None and memory_log_sd is None:
            return self
        for name, value in (("time-noise", time_log_sd), ("memory-noise", memory_log_sd)):
            if value is not None and not 0 < value < 1:
                raise ResultsError(f"--{name} is a log standard deviation between 0 and 1 (0.05 = 5%), got {value}")
        cases = self.cases or (Spread("*", 0, None, None, runs),)
        new = tuple(Spread(s.model, s.batch_size, time_log_sd if time_log_sd is not None else s.time_log_sd,
                           memory_log_sd if memory_log_sd is not None else s.memory_log_sd,
                           runs if time_log_sd is not None and memory_log_sd is not None else s.runs) for s in cases)
        given = ", ".join(f"{n} {v:g}" for n, v in (("--time-noise", time_log_sd), ("--memory-noise", memory_log_sd))
                          if v is not None)
        return GateNoise(profile or self.profile, None if memory_log_sd is not None else self.probe, new,
                         f"{self.source}; {given} given", self.measured, self.machine)

    def to_json(self) -> dict:
        return {"odperf_gate_noise": FORMAT, **{k: v for k, v in asdict(self).items() if k != "cases"},
                "cases": [asdict(s) for s in self.cases]}


def load(path: str | Path, what: str = "--noise") -> GateNoise:
    """A noise file; one clear error when it is missing or not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fix = "reinstall odperf, or give --noise FILE" if what != "--noise" else "write one with `odperf gate --calibrate N`"
        raise ResultsError(f"{what} {p}: no such file ({fix})") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{what} {p}: not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("odperf_gate_noise") != FORMAT:
        raise ResultsError(f"{what} {p}: not an odperf gate noise file of format {FORMAT} "
                           f"(write one with `odperf gate --calibrate N`)")
    try:
        cases = tuple(Spread(**c) for c in doc["cases"])
        return GateNoise(doc["profile"], doc.get("probe"), cases, doc["source"], doc["measured"], doc["machine"])
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"{what} {p}: a field is missing or unknown ({exc})") from None


def shipped() -> GateNoise:
    """The noise measured on the reference machine, shipped with odperf."""
    from odperf.util.package_data import shipped as folder

    return load(folder("fixtures") / SHIPPED_NAME, "the shipped noise file")


def measure(runs: Sequence[SavedRun], source: str) -> GateNoise:
    """The between-process spread of each case's median time and own memory over saved runs of one code."""
    if len(runs) < MIN_RUNS:
        raise ResultsError(f"a noise needs at least {MIN_RUNS} runs of the same code, got {len(runs)}")
    profiles = {r.profile for r in runs}
    if len(profiles) != 1:
        raise ResultsError(f"a noise is measured on runs of one device profile, got {sorted(profiles)}")
    by_case: dict[tuple[str, int], list[Row]] = {}
    for run in runs:
        for row in rows_of(run):
            if row.ok and row.profile == run.profile:
                by_case.setdefault((row.model, row.batch_size), []).append(row)
    cases = []
    for (model, batch), rows in sorted(by_case.items()):
        times = [r.median_s for r in rows if r.median_s]
        memories = [r.model_mb for r in rows if r.model_mb and r.model_mb > 0]
        cases.append(Spread(model, batch, _log_sd(times), _log_sd(memories), min(len(times), len(memories) or len(times))))
    probes = {r.probe for rows in by_case.values() for r in rows}
    machine = runs[0].machine_info.get("node")
    return GateNoise(runs[0].profile, next(iter(probes)) if len(probes) == 1 else None, tuple(cases), source,
                     datetime.now(timezone.utc).date().isoformat(), machine or platform.node())


def _log_sd(values: Sequence[float]) -> float | None:
    return float(np.std(np.log(values), ddof=1)) if len(values) >= MIN_RUNS else None


def median_log_sd(rounds: Sequence[float]) -> float:
    """The sampling error of a run's median time, in logs, from its rounds (0 with fewer than 2)."""
    if len(rounds) < 2:
        return 0.0
    return MEDIAN_EFFICIENCY * float(np.std(np.log(rounds), ddof=1)) / math.sqrt(len(rounds))


def runtime_floor_mb(run: SavedRun) -> tuple[float, int] | None:
    """The run's own noise floor of memory: the sd of the runtime's memory before the model loaded over its
    worker processes (one per measurement), in MB, and how many; None with fewer than MIN_RUNS figures."""
    values = [rec.runtime_memory_mb for rec in run.records
              if rec.outcome == "ok" and rec.runtime_memory_mb is not None and rec.device_profile == run.profile]
    return (float(np.std(values, ddof=1)), len(values)) if len(values) >= MIN_RUNS else None


@dataclass(frozen=True)
class Judged:
    """One figure tested against the noise."""

    ratio: float
    sd: float  # of the log ratio
    dof: int
    p: float  # one-sided: current larger
    upper: float  # the ratio's one-sided DETECT_CONFIDENCE upper bound
    verdict: str
    spreads: tuple[float, float] = field(default=(0.0, 0.0))  # each side's log sd
    detect: float = DEFAULT_DETECT
    threshold: float = 0.0

    def text(self) -> str:
        if self.dof <= 0:
            return (f"ratio {self.ratio:.3f}, no between-process noise known for it (give --noise from `odperf gate "
                    f"--calibrate N` on this machine): {self.verdict}")
        rule = ""
        if self.verdict == WITHIN:
            rule = f", +{self.detect:.0%} ruled out"
        elif self.verdict == UNDECIDED:
            rule = f", +{self.detect:.0%} not ruled out" if self.ratio <= 1 + self.threshold else ", not significant"
        return (f"ratio {self.ratio:.3f} (upper {DETECT_CONFIDENCE:.0%} bound {self.upper:.3f}), between-process "
                f"noise {self.spreads[0]:.1%} and {self.spreads[1]:.1%} (log sd, {self.dof} degrees of freedom), "
                f"p={self.p:.3g}{rule}: {self.verdict}")

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION


def judge(was: float, now: float, spreads: tuple[float, float], dof: int, threshold: float,
          alpha: float, detect: float = DEFAULT_DETECT) -> Judged:
    """Regression: grown beyond ``threshold`` and significant at ``alpha`` against the two sides' spreads.
    Within: not beyond the threshold, and a growth of ``detect`` ruled out at DETECT_CONFIDENCE (so a
    regression of that size is not passed because the baseline happened to run slow). Otherwise undecided:
    one run per side cannot tell. ``dof`` 0 (no noise known): undecided whatever the ratio. A threshold
    above ``detect`` is the growth ruled out instead."""
    from scipy.stats import t as student

    detect = max(detect, threshold)
    ratio = now / was
    sd = math.hypot(*spreads)
    if dof <= 0:
        return Judged(ratio, sd, 0, 1.0, math.inf, UNDECIDED, spreads, detect, threshold)
    p = float(student.sf(math.log(ratio) / sd, dof)) if sd > 0 else (0.0 if ratio > 1 else 1.0)
    upper = ratio * math.exp(float(student.ppf(DETECT_CONFIDENCE, dof)) * sd)
    if ratio > 1 + threshold:
        verdict = REGRESSION if p < alpha else UNDECIDED
    else:
        verdict = WITHIN if upper <= 1 + detect else UNDECIDED
    return Judged(ratio, sd, dof, p, upper, verdict, spreads, detect, threshold)


def _known(noise: GateNoise | None, profile: str, model: str, batch: int, what: str,
           probe: str | None = None) -> tuple[float, int]:
    """The noise's (log sd, dof) for a case, (0, 0) where it measured another profile or probe, or nothing."""
    if noise is None or noise.profile != profile or (what == "memory" and noise.probe not in (None, probe)):
        return 0.0, 0
    return noise.spread(model, batch, what) or (0.0, 0)


def time_change(noise: GateNoise | None, key: tuple[str, str, int], b: Row, c: Row, threshold: float,
                alpha: float, detect: float = DEFAULT_DETECT) -> Judged:
    """The median time of two single runs: each side at least the noise's spread, at least its own median's
    sampling error from its rounds."""
    profile, model, batch = key
    s, dof = _known(noise, profile, model, batch, "time")
    spreads = (max(s, median_log_sd(b.rounds)), max(s, median_log_sd(c.rounds)))
    return judge(float(b.median_s), float(c.median_s), spreads, dof, threshold, alpha, detect)


def memory_change(noise: GateNoise | None, key: tuple[str, str, int], probe: str | None, was: float, now: float,
                  floors: tuple[tuple[float, int] | None, tuple[float, int] | None], threshold: float,
                  alpha: float, detect: float = DEFAULT_DETECT) -> Judged:
    """The model's own memory of two single runs: each side at least the noise's spread, at least its run's
    own floor (the model's own memory is a peak minus the runtime's figure: two readings of the floor's
    spread, relative to the figure)."""
    profile, model, batch = key
    s, dof = _known(noise, profile, model, batch, "memory", probe)
    sides = []
    for floor, value in zip(floors, (was, now)):
        own = math.sqrt(2) * floor[0] / value if floor and value > 0 else 0.0
        sides.append(max(s, own))
        if floor and own > s:
            dof = max(dof, floor[1] - 1) if dof else floor[1] - 1
    return judge(was, now, (sides[0], sides[1]), dof, threshold, alpha, detect)
