"""Saved runs flattened into one row per (device profile, model, batch size): what every report reads.

Times are per camera image. A pytest-benchmark round is one camera image (all its tiles), so its ``stats``
are per image; they are preferred to the record's own ``time_per_image_s`` because they are what
pytest-benchmark itself compares. The record fills in what stats lack (p95 without raw ``data``, and
every time of a run that pytest-benchmark never timed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from odperf.datasets.synthetic import CATEGORIES as SYNTHETIC_CATEGORIES
from odperf.errors import OdperfError
from odperf.report.sources import distinct_runs, latest_named, load_runs  # noqa: F401 (re-exported)
from odperf.results import ACCURACY, MAP_GROUPS, PIPELINE, STREAM, TIMING, RecordKey, RunRecord, SavedRun


@dataclass(frozen=True)
class Row:
    """One measured (profile, model, batch): the timing record's figures and the mAP beside them.

    Time, memory and outcome come from the timing record only; the mAP from the accuracy record when there
    is one, else from a timing record scored with --odperf-accuracy (``map_source`` says which).
    """

    profile: str
    model: str
    batch_size: int
    outcome: str | None  # the timing record's; None: this batch was only scored, never timed
    mean_s: float | None
    median_s: float | None
    p95_s: float | None
    tiles_per_s: float | None
    peak_mb: float | None
    probe: str | None
    map: float | None
    map_group: str | None
    time_source: str  # "stats" (pytest-benchmark) or "record" (RunRecord) or "none"
    map_source: str | None = None  # TIMING or ACCURACY: the kind of record the mAP came from
    map_images: int | None = None  # camera images the mAP is over, where the record says (scored_images)
    accuracy_outcome: str | None = None  # the accuracy record's outcome, where there is one
    repairs: dict[str, int] | None = None  # detections repaired before scoring (odperf.measure.accuracy)
    runtime: str | None = None  # "tensorflow 2.21.0", "torch 2.14.1+cu130"; None in files before runtimes
    untrained: bool = False  # random weights: timed for time and memory, no mAP
    tile_by_tile: bool = False  # a batch-1-only model: its "batch" tiles went through one call each
    map_dataset: str | None = None  # the set the mAP was scored on (``scored_on``); None: not recorded
    rounds: tuple[float, ...] = ()  # every round's seconds per image, where the file kept them (stats data)
    model_mb: float | None = None  # the model's own memory: peak minus the runtime's, before the model loaded
    cap_above_runtime: bool = False  # an emulated CPU cap: it limits the model's own memory, not the runtime's
    load: dict[str, Any] | None = None  # the machine's CPU use while it was timed (odperf.measure.load)
    gpu_state: dict[str, Any] | None = None  # what an NVIDIA GPU was doing while it was timed (measure.gpu_state)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and self.mean_s is not None

    @property
    def timed(self) -> bool:
        return self.outcome is not None

    @property
    def failed(self) -> bool:
        """Timed and did not run ok (oom, crash, timeout)."""
        return self.outcome is not None and self.outcome != "ok"


def image_times(record: RunRecord, stats: dict[str, Any] | None) -> tuple[float | None, float | None, float | None, str]:
    """(mean, median, p95, source) seconds per image, from stats when present, else from the record."""
    own = record.time_per_image_s or {}
    if stats and stats.get("mean") is not None:
        data = stats.get("data")
        p95 = float(np.percentile(data, 95)) if data else _float(own.get("p95"))
        return float(stats["mean"]), _float(stats.get("median")), p95, "stats"
    if own.get("mean") is not None:
        return _float(own.get("mean")), _float(own.get("median")), _float(own.get("p95")), "record"
    return None, None, None, "none"


Measured = tuple[RunRecord, dict[str, Any] | None]  # a record and its pytest-benchmark stats


def _row(timing: Measured | None, accuracy: RunRecord | None) -> Row:
    rec = timing[0] if timing else accuracy
    assert rec is not None
    mean = median = p95 = tiles = None
    source = "none"
    if timing:
        mean, median, p95, source = image_times(timing[0], timing[1])
        tiles = timing[0].tiles_per_image / mean if mean else timing[0].tiles_per_second
    scored = [(r, kind) for r, kind in ((accuracy, ACCURACY), (timing[0] if timing else None, TIMING))
              if r is not None and _float(r.map) is not None]
    by, map_source = scored[0] if scored else (None, None)
    return Row(
        profile=rec.device_profile,
        model=rec.model,
        batch_size=int(rec.batch_size),
        outcome=timing[0].outcome if timing else None,
        mean_s=mean,
        median_s=median,
        p95_s=p95,
        tiles_per_s=tiles,
        peak_mb=_float(timing[0].peak_memory_mb) if timing else None,
        probe=timing[0].memory_probe if timing else None,
        map=_float(by.map) if by else None,
        map_group=rec.map_group or (accuracy.map_group if accuracy else None),
        time_source=source,
        map_source=map_source,
        map_images=(by.accuracy or {}).get("scored_images") if by else None,
        accuracy_outcome=accuracy.outcome if accuracy else None,
        repairs=(by.accuracy or {}).get("repairs") if by else None,
        runtime=" ".join(p for p in (rec.backend, rec.runtime_version) if p) or None,
        untrained=bool(rec.untrained),
        tile_by_tile=rec.batch_mode == "tile_by_tile",
        map_dataset=scored_on(by.accuracy) if by else None,
        rounds=tuple(float(t) for t in ((timing[1] or {}).get("data") or ())) if timing else (),
        model_mb=_float(timing[0].model_memory_mb) if timing else None,
        cap_above_runtime=(rec.emulated or {}).get("how") == "rlimit_data_above_runtime",
        load=timing[0].load if timing else None,
        gpu_state=timing[0].gpu_state if timing else None,
    )


def scored_on(accuracy: dict[str, Any] | None) -> str | None:
    """The dataset an mAP was scored on, told by the category names its scoring kept: the embedded
    synthetic set's shapes, else the COCO-format set given with --odperf-dataset. None: not recorded."""
    names = set((accuracy or {}).get("per_category") or ())
    if not names:
        return None
    if names <= {c["name"] for c in SYNTHETIC_CATEGORIES}:
        return "the synthetic set"
    return f"a COCO-format set ({len(names)} categories)"


def rows_from(measured: Iterable[Measured]) -> list[Row]:
    """One Row per (profile, model, batch): its timing and accuracy records side by side."""
    timing: dict[tuple[str, str, int], Measured] = {}
    accuracy: dict[tuple[str, str, int], RunRecord] = {}
    for rec, stats in measured:
        where = rec.key[:3]
        if rec.kind in (STREAM, PIPELINE):
            continue  # a stream's figures are LoadGen's (odperf.report.stream), a pipeline's its own report
        if rec.kind == ACCURACY:
            accuracy[where] = rec
        else:
            timing[where] = (rec, stats)
    return [_row(timing.get(k), accuracy.get(k)) for k in sorted(set(timing) | set(accuracy))]


def rows_of(run: SavedRun) -> list[Row]:
    """One Row per (profile, model, batch) of a saved run, in (profile, model, batch) order."""
    return rows_from((rec, run.stats.get(rec.key)) for rec in run.records)


def merged_rows(runs: Iterable[SavedRun]) -> list[Row]:
    """Rows of many runs. Where two runs of one profile made the same measurement (model, batch and
    kind), the later run's record is shown; a later accuracy run never hides an earlier run's times."""
    ordered = sorted(runs, key=lambda r: (r.datetime or "", r.path.name))
    latest: dict[RecordKey, Measured] = {}
    for run in ordered:
        for rec in run.records:
            latest[rec.key] = (rec, run.stats.get(rec.key))
    return rows_from(latest.values())


def superseded(runs: Iterable[SavedRun]) -> int:
    """How many records a later run's record of the same measurement replaces in ``merged_rows``."""
    keys = [rec.key for run in runs for rec in run.records]
    return len(keys) - len(set(keys))


def model_maps(rows: Iterable[Row]) -> dict[tuple[str, str], Row]:
    """Per (profile, model), the row whose mAP stands for the model: an accuracy record's first, else the
    largest batch scored with the timed run. mAP is the model's, not the batch size's."""
    out: dict[tuple[str, str], Row] = {}
    for row in rows:
        if row.map is None:
            continue
        key = (row.profile, row.model)
        cur = out.get(key)
        rank = (row.map_source == ACCURACY, row.batch_size)
        if cur is None or rank > (cur.map_source == ACCURACY, cur.batch_size):
            out[key] = row
    return out


def device_memory_mb(run: SavedRun, profile: str | None = None) -> float | None:
    """Memory capacity of ``profile`` (default: the run's) as the run saw it.

    In order: machine_info's odperf block (its ``memory_mb``, or the matching entry of its ``targets`` or
    ``devices``), an emulated limit in a record, and last the device table's nominal figure.
    """
    profile = profile or run.profile
    block = run.machine_info.get("odperf")
    if isinstance(block, dict):
        if block.get("memory_mb") and profile == (block.get("profile") or run.profile):
            return float(block["memory_mb"])
        for key, name_key in (("targets", "profile"), ("devices", "name")):
            for entry in block.get(key) or []:
                if isinstance(entry, dict) and entry.get(name_key) == profile and entry.get("memory_mb"):
                    return float(entry["memory_mb"])
    for rec in run.records:
        if rec.device_profile == profile and rec.emulated and rec.emulated.get("memory_limit_mb"):
            return float(rec.emulated["memory_limit_mb"])
    from odperf.measure.kinds import get_profile

    try:
        return float(get_profile(profile).memory_mb) or None
    except (OdperfError, KeyError, AttributeError, TypeError, ValueError):
        return None


def capacities(runs: Iterable[SavedRun]) -> dict[str, float | None]:
    """Memory capacity per device profile (the first run of a profile that knows it)."""
    out: dict[str, float | None] = {}
    for run in runs:
        for profile in sorted({r.device_profile for r in run.records}):
            if out.get(profile) is None:
                out[profile] = device_memory_mb(run, profile)
    return out


@dataclass(frozen=True)
class MemoryCap:
    """A device's memory limit as a peak-memory axis can show it.

    On a GPU (real or emulated) the limit is the card's memory. On a CPU emulating a smaller device the
    cap is set on the worker's data segment ``size_mb`` above what its runtime held once started
    (``runtime_mb``), so the line sits at their sum and the runtime's own footprint is drawn beside it.
    """

    limit_mb: float
    size_mb: float
    emulated: bool = False
    runtime: str | None = None  # the runtime(s) whose own footprint the cap sits above
    runtime_mb: float | None = None


def memory_caps(runs: Iterable[SavedRun]) -> dict[str, list[MemoryCap]]:
    """Per device profile, its memory limits: one per runtime where the cap sits above the runtime, else the
    emulated or nominal device memory (``capacities``)."""
    runs = list(runs)
    above: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    emulated: dict[str, float] = {}
    for run in runs:
        for rec in run.records:
            emu = rec.emulated or {}
            size = _float(emu.get("memory_limit_mb"))
            if size is None:
                continue
            emulated.setdefault(rec.device_profile, size)
            base, limit = _float(emu.get("runtime_mb")), _float(emu.get("limit_mb"))
            if base is not None and limit is not None:
                above.setdefault(rec.device_profile, {}).setdefault(rec.backend or "", []).append(
                    (base, limit, size))
    out: dict[str, list[MemoryCap]] = {}
    for profile, capacity in capacities(runs).items():
        if profile in above:
            out[profile] = [MemoryCap(float(np.median([x[1] for x in seen])), seen[0][2], True, runtime or None,
                                      float(np.median([x[0] for x in seen])))
                            for runtime, seen in sorted(above[profile].items())]
        elif profile in emulated or capacity:
            out[profile] = [MemoryCap(emulated.get(profile, capacity), emulated.get(profile, capacity),
                                      profile in emulated)]
    return out


def group_rank(group: str | None) -> int:
    """Position of an mAP group, most accurate first; unknown groups after the known ones."""
    key = group.lower() if isinstance(group, str) else None
    return MAP_GROUPS.index(key) if key in MAP_GROUPS else len(MAP_GROUPS)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
