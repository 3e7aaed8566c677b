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

from odperf.errors import OdperfError
from odperf.report.sources import distinct_runs, latest_named, load_runs  # noqa: F401 (re-exported)
from odperf.results import ACCURACY, STREAM, TIMING, RecordKey, RunRecord, SavedRun

# The paper's five mAP groups, most accurate first (Table I); matched without regard to case.
MAP_GROUPS = ("highest", "high", "medium", "low", "lowest")


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
    accuracy_outcome: str | None = None  # the accuracy record's outcome, where there is one
    repairs: dict[str, int] | None = None  # detections repaired before scoring (odperf.measure.accuracy)
    runtime: str | None = None  # "tensorflow 2.21.0", "torch 2.14.1+cu130"; None in files before runtimes
    untrained: bool = False  # random weights: timed for time and memory, no mAP

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
        accuracy_outcome=accuracy.outcome if accuracy else None,
        repairs=(by.accuracy or {}).get("repairs") if by else None,
        runtime=" ".join(p for p in (rec.backend, rec.runtime_version) if p) or None,
        untrained=bool(rec.untrained),
    )


def rows_from(measured: Iterable[Measured]) -> list[Row]:
    """One Row per (profile, model, batch): its timing and accuracy records side by side."""
    timing: dict[tuple[str, str, int], Measured] = {}
    accuracy: dict[tuple[str, str, int], RunRecord] = {}
    for rec, stats in measured:
        where = rec.key[:3]
        if rec.kind == STREAM:
            continue  # a stream's figures are LoadGen's: odperf.report.stream shows them
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
    try:
        from odperf.measure.devices import get_profile
    except ImportError:
        return None
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
