"""The CI regression gate: a current run against a baseline run of the same device profile.

It fails (one readable reason per failure) on:
- time: time per image grew by more than ``time_threshold`` (default 0.10 = +10 %) on any of the chosen
  metrics (default: median, which one slow round on a shared CI machine does not move; add mean to gate
  on it too);
- memory: peak memory grew by more than ``memory_threshold`` (default 0.10), or the current run lost the
  figure the baseline had;
- map: a model's mAP fell more than ``map_tolerance`` (default 0.01, absolute COCO AP) below the baseline,
  or below its floor from a floors file, or disappeared;
- outcome: a new oom, crash or timeout;
- missing: a (model, batch) in the baseline is absent or skipped in the current run, or has lost its timing.
A missing, empty, corrupt or foreign file is an error (exit 2), never a pass: pytest-benchmark writes no
JSON at all under xdist.

mAP floors come from an expectations file (``fixtures/expectations.toml``'s format: rules with
``map_floor``, see ``odperf.expectations``), looked up for the current run's profile, model and batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from odperf.errors import OdperfError, ResultsError
from odperf.expectations import Expectations, ModelTags
from odperf.report.rows import Row, rows_of
from odperf.results import SavedRun

DEFAULT_TIME_THRESHOLD = 0.10
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_MAP_TOLERANCE = 0.01
DEFAULT_TIME_METRICS = ("median",)
FAILED_OUTCOMES = ("oom", "crash", "timeout")


@dataclass
class GateConfig:
    time_threshold: float = DEFAULT_TIME_THRESHOLD
    memory_threshold: float = DEFAULT_MEMORY_THRESHOLD
    map_tolerance: float = DEFAULT_MAP_TOLERANCE
    time_metrics: tuple[str, ...] = DEFAULT_TIME_METRICS
    floors: Expectations | None = None  # rules with map_floor
    allow_profile_change: bool = False

    def __post_init__(self) -> None:
        for name in ("time_threshold", "memory_threshold", "map_tolerance"):
            if getattr(self, name) < 0:
                raise ResultsError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        bad = [m for m in self.time_metrics if m not in ("mean", "median")]
        if bad or not self.time_metrics:
            raise ResultsError(f"time metrics must be mean and/or median, got {list(self.time_metrics)}")


@dataclass(frozen=True)
class Failure:
    kind: str  # time | memory | map | outcome | missing
    model: str
    batch_size: int | None
    message: str

    def __str__(self) -> str:
        where = self.model + (f" batch {self.batch_size}" if self.batch_size is not None else "")
        return f"FAIL {self.kind}: {where}: {self.message}"


@dataclass
class GateResult:
    baseline: SavedRun
    current: SavedRun
    config: GateConfig
    checked: int
    failures: list[Failure]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        c = self.config
        rules = (f"time {'/'.join(c.time_metrics)} <= +{c.time_threshold:.0%}, memory <= +{c.memory_threshold:.0%}, "
                 f"mAP >= baseline - {c.map_tolerance:g}" + (f" and the floors of {c.floors.source}" if c.floors else ""))
        head = f"{self.current.label} against {self.baseline.label}: {self.checked} measurements checked ({rules})"
        if self.passed:
            return f"odperf gate: pass: {head}"
        return f"odperf gate: FAIL ({len(self.failures)} failures): {head}"


def run_gate(baseline: SavedRun, current: SavedRun, config: GateConfig | None = None) -> GateResult:
    cfg = config or GateConfig()
    if baseline.profile != current.profile and not cfg.allow_profile_change:
        raise ResultsError(
            f"baseline {baseline.path} is device profile {baseline.profile!r} but current {current.path} is "
            f"{current.profile!r}: the gate compares runs of one device (use `odperf compare` across hardware, "
            f"or --allow-profile-change)"
        )
    base = {(r.model, r.batch_size): r for r in rows_of(baseline)}
    cur = {(r.model, r.batch_size): r for r in rows_of(current)}
    failures: list[Failure] = []
    notes: list[str] = []
    for key in sorted(set(base) | set(cur)):
        b, c = base.get(key), cur.get(key)
        failures += _check_pair(key, b, c, cfg, notes)
    failures += _check_accuracy(list(base.values()), list(cur.values()), cfg, current)
    return GateResult(baseline, current, cfg, len(set(base) | set(cur)), failures, notes)


def _check_pair(key: tuple[str, int], b: Row | None, c: Row | None, cfg: GateConfig, notes: list[str]) -> list[Failure]:
    model, batch = key
    fail = lambda kind, msg: [Failure(kind, model, batch, msg)]  # noqa: E731
    if c is None:
        return fail("missing", f"in the baseline ({b.outcome}) but not in the current run")
    if c.outcome in FAILED_OUTCOMES and (b is None or b.outcome not in FAILED_OUTCOMES):
        was = f"was {b.outcome} in the baseline" if b else "not in the baseline"
        return fail("outcome", f"new {c.outcome} ({was})")
    if b is None:
        notes.append(f"new in current: {model} batch {batch} ({c.outcome})")
        return []
    if b.outcome in FAILED_OUTCOMES and c.outcome == "ok":
        notes.append(f"fixed: {model} batch {batch} was {b.outcome}, now runs")
        return []
    if b.outcome != "ok":
        return []
    if c.outcome != "ok":
        return fail("missing", f"ran ok in the baseline but is {c.outcome} in the current run")
    out: list[Failure] = []
    for metric in cfg.time_metrics:
        bt, ct = getattr(b, f"{metric}_s"), getattr(c, f"{metric}_s")
        if bt is None:
            continue
        if ct is None:
            out += fail("missing", f"the current run has no {metric} time (baseline {bt:.4g} s per image)")
        elif ct > bt * (1 + cfg.time_threshold):
            out += fail("time", f"{metric} time per image {bt:.4g} s -> {ct:.4g} s "
                                f"({ct / bt - 1:+.1%}, threshold +{cfg.time_threshold:.0%})")
    if b.peak_mb is not None:
        if c.peak_mb is None:
            out += fail("memory", f"the current run has no peak memory figure (baseline {b.peak_mb:.0f} MB)")
        elif b.probe != c.probe:
            notes.append(f"{model} batch {batch}: memory probe changed {b.probe} -> {c.probe}; memory not compared")
        elif c.peak_mb > b.peak_mb * (1 + cfg.memory_threshold):
            out += fail("memory", f"peak memory {b.peak_mb:.0f} MB -> {c.peak_mb:.0f} MB "
                                  f"({c.peak_mb / b.peak_mb - 1:+.1%}, threshold +{cfg.memory_threshold:.0%}, "
                                  f"probe {c.probe})")
    return out


def _model_map(rows: list[Row]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        if r.map is not None:
            out.setdefault(r.model, r.map)
    return out


def _tags(model: str, run: SavedRun) -> ModelTags:
    """What an expectations rule can select this model by: the record's own fields, plus its family from the
    model registry when the registry knows it."""
    rec = next(r for r in run.records if r.model == model)
    family = None
    try:
        from odperf.zoo.registry import get

        family = get(model).family
    except (ImportError, OdperfError, KeyError, AttributeError):
        pass
    return ModelTags(name=model, meta_arch=rec.meta_arch, family=family, map_group=rec.map_group)


def _floor(model: str, rows: list[Row], current: SavedRun, floors: Expectations) -> float | None:
    tags = _tags(model, current)
    found = [floors.lookup(current.profile, tags, r.batch_size).map_floor for r in rows if r.model == model]
    found = [f for f in found if f is not None]
    return max(found) if found else None


def _check_accuracy(base: list[Row], cur: list[Row], cfg: GateConfig, current: SavedRun) -> list[Failure]:
    """mAP is a property of a model, not of a batch size: one verdict per model."""
    bm, cm = _model_map(base), _model_map(cur)
    out: list[Failure] = []
    for model in sorted({r.model for r in cur}):
        now = cm.get(model)
        if now is None:
            if model in bm:
                out.append(Failure("map", model, None, f"no mAP in the current run (baseline {bm[model]:.3f})"))
            continue
        if model in bm and now < bm[model] - cfg.map_tolerance:
            out.append(Failure("map", model, None, f"mAP {bm[model]:.3f} -> {now:.3f} "
                                                   f"({now - bm[model]:+.3f}, tolerance {cfg.map_tolerance:g})"))
        floor = _floor(model, cur, current, cfg.floors) if cfg.floors else None
        if floor is not None and now < floor:
            out.append(Failure("map", model, None, f"mAP {now:.3f} is below its floor {floor:.3f} "
                                                   f"({cfg.floors.source})"))
    return out
