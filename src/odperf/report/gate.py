"""The CI regression gate: a current run against a baseline run of the same device profile.

It fails (one readable reason per failure) on:
- time: the median time per image grew by more than ``time_threshold`` (default +10 %) AND significantly:
  over the pairs where given one ratio per interleaved pair (``odperf ab``, ``significance``), else against
  the noise between processes (``gate_noise``: a saved run is one process, whose rounds are not
  independent samples). Two single runs that cannot tell are ``undecided: run `odperf ab``` (exit 3):
  grown beyond the threshold but not significantly, or within it but with ``detect`` (+25 %) not ruled
  out. ``mean`` may be gated too, as a plain ratio;
- memory: the model's own memory (peak minus the runtime's before the model loaded; the whole peak where a
  run lacks it, saying so) grew beyond ``memory_threshold`` (default +10 %), tested as time is, or the
  current run lost the figure. The single-run tests share ``noise_alpha`` (Bonferroni over the figures);
- map: a model's mAP fell below the baseline (exactly, when both runs used the same runtime and version:
  the embedded models score deterministically; by more than ``map_tolerance``, default 0.01 absolute COCO
  AP, across versions), or below its floor from a floors file, or disappeared;
- outcome: a new oom, crash or timeout; with ``strict`` (for a change that must not change what is measured,
  e.g. odperf's own), any change of outcome, and any change of mAP, up or down;
- missing: a (model, batch) in the baseline is absent from the current run, or has lost its timing;
- nothing: the gate compared none of the figures it was asked to (no time of a chosen metric, no peak
  memory, no mAP against a floors file), each with the reason: a gate that compared nothing never passes.
mAP comes from the accuracy records (benchmarks/test_accuracy.py) and from timed runs scored with
--odperf-accuracy; times and memory from the timing records only. A missing, empty, corrupt, foreign or
newer-schema file is an error (exit 2), never a pass: pytest-benchmark writes no JSON at all under xdist.

mAP floors come from an expectations file (``fixtures/expectations.toml``'s format: rules with
``map_floor``, see ``odperf.suite.expectations``), looked up for the current run's profile, model and batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from odperf.errors import OdperfError, ResultsError
from odperf.suite.expectations import Expectations, ModelTags
from odperf.report import gate_noise as gn
from odperf.report import significance as sig
from odperf.report.rows import Row, model_maps, rows_of
from odperf.results import FAILED_OUTCOMES, SavedRun

DEFAULT_TIME_THRESHOLD = 0.10
DEFAULT_MEMORY_THRESHOLD = 0.10
DEFAULT_MAP_TOLERANCE = 0.01
# significance level of a figure measured once per run (the model's own memory, deployment), tested over
# interleaved pairs: it spreads more than a median of rounds, so it must be stronger to count
DEFAULT_SLOT_ALPHA = 0.01
DEFAULT_TIME_METRICS = ("median",)
DEFAULT_NOISE_ALPHA = 0.05  # per gate, over every figure tested against the between-process noise
EXIT_UNDECIDED = 3


@dataclass
class GateConfig:
    time_threshold: float = DEFAULT_TIME_THRESHOLD
    memory_threshold: float = DEFAULT_MEMORY_THRESHOLD
    map_tolerance: float = DEFAULT_MAP_TOLERANCE
    time_metrics: tuple[str, ...] = DEFAULT_TIME_METRICS
    floors: Expectations | None = None  # rules with map_floor
    alpha: float = sig.DEFAULT_ALPHA  # significance level of the time test
    strict: bool = False  # any changed outcome or mAP fails, improvements included
    allow_profile_change: bool = False
    # (profile, model, batch) -> one candidate/baseline ratio of medians per interleaved pair of runs (odperf ab):
    # tested instead of the pooled rounds, whose independence pairs do not assume
    pair_ratios: dict[tuple[str, str, int], list[float]] | None = None
    # the same for the model's own memory (one figure per run): its growth must pass the threshold and be
    # significant at ``memory_alpha``; a peak sampled every 10 ms moves by several percent from run to run
    memory_pair_ratios: dict[tuple[str, str, int], list[float]] | None = None
    memory_alpha: float = DEFAULT_SLOT_ALPHA
    # two saved runs, one process each: the between-process noise (None: the shipped one) and the chance
    # that the gate cries wolf, shared by every figure it tests against that noise
    noise: gn.GateNoise | None = None
    noise_alpha: float = DEFAULT_NOISE_ALPHA
    noise_alpha_each: float = DEFAULT_NOISE_ALPHA  # set by run_gate: noise_alpha / figures tested
    detect: float = gn.DEFAULT_DETECT  # a figure passes only when a growth this large is ruled out

    def __post_init__(self) -> None:
        for name in ("time_threshold", "memory_threshold", "map_tolerance"):
            if getattr(self, name) < 0:
                raise ResultsError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        bad = [m for m in self.time_metrics if m not in ("mean", "median")]
        if bad or not self.time_metrics:
            raise ResultsError(f"time metrics must be mean and/or median, got {list(self.time_metrics)}")


@dataclass(frozen=True)
class Failure:
    kind: str  # time | memory | map | outcome | missing | nothing
    model: str | None
    batch_size: int | None
    message: str

    def __str__(self) -> str:
        if self.model is None:
            return f"FAIL {self.kind}: {self.message}"
        where = self.model + (f" batch {self.batch_size}" if self.batch_size is not None else "")
        return f"FAIL {self.kind}: {where}: {self.message}"


@dataclass
class Compared:
    """How many figures the gate actually compared: a gate that compared nothing must not pass."""

    times: dict[str, int] = field(default_factory=dict)  # per time metric
    memory: int = 0
    maps: int = 0  # models whose mAP was compared with the baseline's
    floors: int = 0  # models whose mAP was checked against a floor

    def text(self) -> str:
        parts = [f"{n} {m} times" for m, n in self.times.items()]
        parts += [f"{self.memory} peak memories", f"{self.maps} mAPs against the baseline"]
        return ", ".join(parts) + (f", {self.floors} mAPs against floors" if self.floors else "")


@dataclass
class GateResult:
    baseline: SavedRun
    current: SavedRun
    config: GateConfig
    checked: int  # (profile, model, batch) rows looked at
    failures: list[Failure]
    notes: list[str]
    compared: Compared = field(default_factory=Compared)
    times: list[str] = field(default_factory=list)  # one line per tested comparison: ratio, interval, verdict
    undecided: list[str] = field(default_factory=list)  # figures the noise between processes leaves open

    @property
    def passed(self) -> bool:
        """No failure and nothing undecided: an undecided figure never passes silently."""
        return not self.failures and not self.undecided

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else EXIT_UNDECIDED if self.undecided else 0

    def _tested(self) -> str:
        c = self.config
        if c.pair_ratios is not None:
            return f"over the pairs, p < {c.alpha:g}, memory p < {c.memory_alpha:g}"
        return (f"against the noise between processes, p < {c.noise_alpha:g} per gate; a pass rules out "
                f"+{c.detect:.0%}")

    def summary(self) -> str:
        c = self.config
        rules = (f"time {'/'.join(c.time_metrics)} and the model's own memory fail beyond +{c.time_threshold:.0%} "
                 f"and +{c.memory_threshold:.0%} when significant ({self._tested()}), mAP >= baseline (exact on one runtime version, "
                 f"else - {c.map_tolerance:g})" + (f" and the floors of {c.floors.source}" if c.floors else "")
                 + (", outcomes and mAP unchanged" if c.strict else ""))
        head = (f"{self.current.label} against {self.baseline.label}: {self.checked} measurements checked, "
                f"compared {self.compared.text()} ({rules})")
        if self.passed:
            return f"odperf gate: pass: {head}"
        if not self.failures:
            return (f"odperf gate: UNDECIDED ({len(self.undecided)} figures within the noise between processes, "
                    f"which one run per side cannot tell from a regression: run `odperf ab`): {head}")
        more = f", {len(self.undecided)} undecided" if self.undecided else ""
        return f"odperf gate: FAIL ({len(self.failures)} failures{more}): {head}"


Key = tuple[str, str, int]  # (device profile, model, batch size)


def run_gate(baseline: SavedRun, current: SavedRun, config: GateConfig | None = None) -> GateResult:
    cfg = config or GateConfig()
    if baseline.profile != current.profile and not cfg.allow_profile_change:
        raise ResultsError(
            f"baseline {baseline.path} is device profile {baseline.profile!r} but current {current.path} is "
            f"{current.profile!r}: the gate compares runs of one device (use `odperf compare` across hardware, "
            f"or --allow-profile-change)"
        )
    # With --allow-profile-change the baseline's own profile stands for the current one.
    rename = {baseline.profile: current.profile}
    renamed = [replace(r, profile=rename.get(r.profile, r.profile)) for r in rows_of(baseline)]
    base = {(r.profile, r.model, r.batch_size): r for r in renamed}
    cur = {(r.profile, r.model, r.batch_size): r for r in rows_of(current)}
    failures: list[Failure] = []
    notes: list[str] = []
    times: list[str] = []
    undecided: list[str] = []
    compared = Compared(times={m: 0 for m in cfg.time_metrics})
    both = sum(1 for k in base if base[k].ok and cur.get(k) is not None and cur[k].ok)
    tests = both * (("median" in cfg.time_metrics) + 1)  # median time and memory of each case run ok in both
    noise = cfg.noise if cfg.noise is not None else gn.shipped()
    cfg = replace(cfg, noise=noise, noise_alpha_each=cfg.noise_alpha / max(tests, 1))
    floors = (gn.runtime_floor_mb(baseline), gn.runtime_floor_mb(current))
    for key in sorted(set(base) | set(cur)):
        failures += _check_pair(key, base.get(key), cur.get(key), cfg, notes, compared, current.profile, times,
                                (undecided, floors))
    accuracy = _check_accuracy(list(base.values()), list(cur.values()), cfg, baseline, current, compared)
    failures += _nothing_compared(base, cur, cfg, compared) + accuracy  # after: it asks what mAPs were compared
    return GateResult(baseline, current, cfg, len(set(base) | set(cur)), failures, notes, compared, times,
                      undecided)


def _timed(row: Row | None) -> Row | None:
    """A row's timing side: rows that were only scored for accuracy have none."""
    return row if row is not None and row.timed else None


def _check_pair(key: Key, b: Row | None, c: Row | None, cfg: GateConfig, notes: list[str],
                compared: Compared, main_profile: str, times: list[str],
                single: tuple[list[str], tuple] = ([], (None, None))) -> list[Failure]:
    profile, model, batch = key
    model = model if profile == main_profile else f"{model} on {profile}"  # another device of the run
    fail = lambda kind, msg: [Failure(kind, model, batch, msg)]  # noqa: E731
    b, c = _timed(b), _timed(c)
    if b is None and c is None:
        return []  # scored only, in both runs: the mAP check covers it
    if c is None:
        return fail("missing", f"timed in the baseline ({b.outcome}) but not in the current run")
    if c.outcome in FAILED_OUTCOMES and (b is None or b.outcome not in FAILED_OUTCOMES):
        was = f"was {b.outcome} in the baseline" if b else "not in the baseline"
        return fail("outcome", f"new {c.outcome} ({was})")
    if b is None:
        notes.append(f"new in current: {model} batch {batch} ({c.outcome})")
        return []
    if cfg.strict and b.outcome != c.outcome:
        return fail("outcome", f"outcome changed: {b.outcome} -> {c.outcome} (strict)")
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
            notes.append(f"{model} batch {batch}: the baseline has no {metric} time; not compared")
            continue
        if ct is None:
            out += fail("missing", f"the current run has no {metric} time (baseline {bt:.4g} s per image)")
            continue
        compared.times[metric] += 1
        change = f"{metric} time per image {bt:.4g} s -> {ct:.4g} s ({ct / bt - 1:+.1%}, threshold " \
                 f"+{cfg.time_threshold:.0%})"
        pairs = (cfg.pair_ratios or {}).get(key)
        if metric == "median" and pairs:
            verdict = sig.compare_pairs(pairs, cfg.time_threshold, cfg.alpha)
            times.append(f"time: {model} batch {batch}: {verdict.text()}")
            if verdict.regression:
                out += fail("time", f"{change}: significant, {verdict.text()}")
            elif verdict.verdict == sig.UNDECIDED and ct > bt * (1 + cfg.time_threshold):
                out += fail("time", f"{change}: {verdict.text()}; run more pairs (--pairs)")
            continue
        if metric == "median":  # one process per side: against the noise between processes
            judged = gn.time_change(cfg.noise, key, b, c, cfg.time_threshold, cfg.noise_alpha_each, cfg.detect)
            line = f"{model} batch {batch}: {change}: {judged.text()}"
            times.append(f"time: {line}")
            if judged.regression:
                out += fail("time", f"{change}: significant, {judged.text()}")
            elif judged.verdict == gn.UNDECIDED:
                single[0].append(f"UNDECIDED time: {line}")
            continue
        if ct > bt * (1 + cfg.time_threshold):
            out += fail("time", change)
    pairs = (cfg.memory_pair_ratios or {}).get(key)
    return out + _check_memory(model, batch, b, c, cfg, notes, compared, pairs, times, single)


def _check_memory(model: str, batch: int, b: Row, c: Row, cfg: GateConfig, notes: list[str],
                  compared: Compared, pairs: list[float] | None = None,
                  times: list[str] | None = None,
                  single: tuple[list[str], tuple] = ([], (None, None))) -> list[Failure]:
    """The model's own memory where both runs have it, else the whole peak (runtime included); with
    ``pairs`` (one ratio of the model's own memory per interleaved pair) the growth must be significant."""
    own = b.model_mb is not None and c.model_mb is not None
    was, now = (b.model_mb, c.model_mb) if own else (b.peak_mb, c.peak_mb)
    what = "model's own memory" if own else "peak memory"
    if was is None:
        notes.append(f"{model} batch {batch}: the baseline has no peak memory; not compared")
    elif now is None:
        return [Failure("memory", model, batch, f"the current run has no peak memory figure (baseline {was:.0f} MB)")]
    elif b.probe != c.probe:
        notes.append(f"{model} batch {batch}: memory probe changed {b.probe} -> {c.probe}; memory not compared")
    else:
        compared.memory += 1
        total = (f", peak {b.peak_mb:.0f} -> {c.peak_mb:.0f} MB" if b.peak_mb and c.peak_mb else "") if own \
            else ", runtime included: a run lacks the model's own figure"
        change = (f"{what} {was:.0f} MB -> {now:.0f} MB ({now / was - 1:+.1%}, threshold "
                  f"+{cfg.memory_threshold:.0%}, probe {c.probe}{total})")
        if own and pairs:
            verdict = sig.compare_pairs(pairs, cfg.memory_threshold, cfg.memory_alpha)
            if times is not None:
                times.append(f"memory: {model} batch {batch}: model's own memory, {verdict.text()}")
            if verdict.regression:
                return [Failure("memory", model, batch, f"{change}: significant, {verdict.text()}")]
            if verdict.verdict == sig.UNDECIDED and verdict.ratio > 1 + cfg.memory_threshold:
                return [Failure("memory", model, batch, f"{change}: {verdict.text()}; run more pairs (--pairs)")]
        else:  # one process per side: against the noise between processes and the runs' own floor
            judged = gn.memory_change(cfg.noise, (b.profile, b.model, batch), c.probe, was, now, single[1],
                                      cfg.memory_threshold, cfg.noise_alpha_each, cfg.detect)
            line = f"{model} batch {batch}: {change}: {judged.text()}"
            if times is not None:
                times.append(f"memory: {line}")
            if judged.regression:
                return [Failure("memory", model, batch, f"{change}: significant, {judged.text()}")]
            if judged.verdict == gn.UNDECIDED:
                single[0].append(f"UNDECIDED memory: {line}")
    return []


def _rows_text(keys: list[Key], limit: int = 4) -> str:
    shown = ", ".join(f"{m} b{b}" for _, m, b in keys[:limit])
    return (shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")) or "none"


def _nothing_compared(base: dict[Key, Row], cur: dict[Key, Row], cfg: GateConfig,
                      compared: Compared) -> list[Failure]:
    """One failure per kind of figure the gate was asked to compare and compared none of, saying why."""
    out: list[Failure] = []
    timed = sorted(k for k, r in base.items() if r.timed)
    ok = [k for k in timed if base[k].ok]
    matched = [k for k in ok if _timed(cur.get(k)) is not None]
    both_ok = [k for k in matched if cur[k].ok]
    accuracy_runs = not timed and not any(r.timed for r in cur.values()) and compared.maps > 0
    for metric in cfg.time_metrics if not accuracy_runs else ():  # two accuracy-only runs: mAP is the question
        if compared.times[metric]:
            continue
        with_metric = [k for k in ok if getattr(base[k], f"{metric}_s") is not None]
        if not timed:
            why = "the baseline holds no timed measurement (only accuracy records)"
        elif not any(base[k].outcome == "ok" for k in timed):
            outcomes = sorted({str(base[k].outcome) for k in timed})
            why = f"no measurement of the baseline ran ok (outcomes: {', '.join(outcomes)})"
        elif not ok:
            n = sum(base[k].outcome == "ok" for k in timed)
            why = (f"the baseline's {n} measurements that ran ok carry no time per image (no pytest-benchmark "
                   f"stats, no times in their records)")
        elif not with_metric:
            why = f"none of the baseline's {len(ok)} ok measurements has a {metric} time"
        elif not matched:
            why = (f"no ok measurement of the baseline ({_rows_text(ok)}) is timed in the current run "
                   f"({_rows_text(sorted(k for k, r in cur.items() if r.timed))})")
        elif not both_ok:
            why = f"none of the {len(matched)} measurements both runs timed ran ok in the current run"
        else:
            why = f"no measurement has a {metric} time in both runs"
        out.append(Failure("nothing", None, None, f"no {metric} time per image compared: {why}"))
    if both_ok and not compared.memory and not cfg.allow_profile_change:  # across devices probes differ
        if all(base[k].peak_mb is None for k in both_ok):
            why = "the baseline has no peak memory figure"
        else:
            probes = sorted({f"{base[k].probe} -> {cur[k].probe}" for k in both_ok if base[k].probe != cur[k].probe})
            why = f"the memory probe differs ({', '.join(probes) or 'none'}) or the current run has no figure"
        out.append(Failure("nothing", None, None, f"no peak memory compared: {why}"))
    return out


def _tags(model: str, runs: tuple[SavedRun, ...]) -> ModelTags:
    """What an expectations rule can select this model by: the record's own fields, plus its family from the
    model registry when the registry knows it."""
    rec = next(r for run in runs for r in run.records if r.model == model)
    family = None
    try:
        from odperf.zoo.registry import get

        family = get(model).family
    except (ImportError, OdperfError, KeyError, AttributeError):
        pass
    return ModelTags(name=model, meta_arch=rec.meta_arch, family=family, map_group=rec.map_group)


def _floor(model: str, profile: str, rows: list[Row], runs: tuple[SavedRun, ...],
           floors: Expectations) -> float | None:
    tags = _tags(model, runs)
    found = [floors.lookup(profile, tags, r.batch_size).map_floor for r in rows]
    found = [f for f in found if f is not None]
    return max(found) if found else None


def _same_runtime(current: str | None, baseline: str | None) -> str | None:
    """The runtime both runs scored with ("tensorflow 2.21.0"), when it is known and one: mAP is then exact."""
    return current if current and current == baseline and " " in current else None


def _check_accuracy(base: list[Row], cur: list[Row], cfg: GateConfig, baseline: SavedRun, current: SavedRun,
                    compared: Compared) -> list[Failure]:
    """mAP is a property of a model (on a device), not of a batch size: one verdict per model, from its
    accuracy record when there is one, else from a timed run scored with --odperf-accuracy. ``base`` rows
    already carry the current run's profile names."""
    bm = {key: r.map for key, r in model_maps(base).items()}
    cm = {key: r.map for key, r in model_maps(cur).items()}
    runtimes = {key: (r.runtime, model_maps(base)[key].runtime) for key, r in model_maps(cur).items()
                if key in bm}
    out: list[Failure] = []
    floors_apply = 0
    for profile, model in sorted({(r.profile, r.model) for r in cur} | set(bm)):
        now, was = cm.get((profile, model)), bm.get((profile, model))
        name = model if profile == current.profile else f"{model} on {profile}"
        mine = [r for r in cur if (r.profile, r.model) == (profile, model)] or [
            r for r in base if (r.profile, r.model) == (profile, model)]
        floor = _floor(model, profile, mine, (current, baseline), cfg.floors) if cfg.floors else None
        floors_apply += floor is not None
        if now is None:
            asks = [f"baseline {was:.3f}" if was is not None else "",
                    f"floor {floor:.3f} of {cfg.floors.source}" if floor is not None and cfg.floors else ""]
            asks = [a for a in asks if a]
            if asks:
                out.append(Failure("map", name, None, f"no mAP in the current run ({' and '.join(asks)} "
                                                      f"ask{'s' if len(asks) == 1 else ''} for one)"))
            continue
        if was is not None:
            compared.maps += 1
            same = _same_runtime(*runtimes[(profile, model)])
            tolerance = 0.0 if same else cfg.map_tolerance
            if now < was - tolerance or (cfg.strict and now > was + tolerance):
                rule = f"exact: both runs on {same}" if same else f"tolerance {cfg.map_tolerance:g}"
                out.append(Failure("map", name, None, f"mAP {was:.3f} -> {now:.3f} ({now - was:+.4f}, {rule})"))
        if floor is not None and cfg.floors:
            compared.floors += 1
            if now < floor:
                out.append(Failure("map", name, None, f"mAP {now:.3f} is below its floor {floor:.3f} "
                                                      f"({cfg.floors.source})"))
    if cfg.floors and not floors_apply:
        out.append(Failure("nothing", None, None, f"no mAP checked against floors: {cfg.floors.source} sets no "
                                                   f"map_floor for any model of profile {current.profile}"))
    return out
