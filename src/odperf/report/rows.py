"""Saved runs flattened into one row per (device profile, model, batch size): what every report reads.

Times are per camera image. A pytest-benchmark round is one camera image (all its tiles), so its ``stats``
are per image; they are preferred to the record's own ``time_per_image_s`` because they are what
pytest-benchmark itself compares. The record fills in what stats lack (p95 without raw ``data``, and
every time of a run that pytest-benchmark never timed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from odperf.errors import OdperfError, ResultsError
from odperf.results import RunRecord, SavedRun, find_runs, load_run

# The paper's five mAP groups, most accurate first (Table I); matched without regard to case.
MAP_GROUPS = ("highest", "high", "medium", "low", "lowest")


@dataclass(frozen=True)
class Row:
    """One measured (profile, model, batch) with the figures reports show."""

    profile: str
    model: str
    batch_size: int
    outcome: str
    mean_s: float | None
    median_s: float | None
    p95_s: float | None
    tiles_per_s: float | None
    peak_mb: float | None
    probe: str | None
    map: float | None
    map_group: str | None
    time_source: str  # "stats" (pytest-benchmark) or "record" (RunRecord) or "none"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and self.mean_s is not None


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


def rows_of(run: SavedRun) -> list[Row]:
    """One Row per record of a saved run, in (model, batch) order."""
    out = []
    for rec in run.records:
        mean, median, p95, source = image_times(rec, run.stats.get(rec.key))
        tiles = rec.tiles_per_image / mean if mean else rec.tiles_per_second
        out.append(
            Row(
                profile=rec.device_profile,
                model=rec.model,
                batch_size=int(rec.batch_size),
                outcome=rec.outcome,
                mean_s=mean,
                median_s=median,
                p95_s=p95,
                tiles_per_s=tiles,
                peak_mb=_float(rec.peak_memory_mb),
                probe=rec.memory_probe,
                map=_float(rec.map),
                map_group=rec.map_group,
                time_source=source,
            )
        )
    return out


def load_runs(paths: Sequence[str | Path]) -> list[SavedRun]:
    """Load files and storage folders. A file named outright must be odperf's; inside a folder, foreign
    pytest-benchmark files are skipped (a storage tree can hold other suites' saves)."""
    runs: list[SavedRun] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            runs.append(load_run(p))
            continue
        found = find_runs([p])
        for f in found:
            try:
                runs.append(load_run(f))
            except ResultsError:
                continue
        if not any(r.path.is_relative_to(p) for r in runs):
            raise ResultsError(f"{p}: no odperf results file in this folder ({len(found)} JSON files looked at)")
    if not runs:
        raise ResultsError("no results given: name saved JSON files or a --benchmark-storage folder")
    return runs


def latest_named(runs: Iterable[SavedRun], name: str) -> list[SavedRun]:
    """Per device profile, the newest run saved under ``name``: ``NAME.json`` (--benchmark-json) or
    ``NNNN_NAME.json`` (--benchmark-save in a storage folder)."""
    newest: dict[str, SavedRun] = {}
    for run in runs:
        stem = run.path.stem
        if stem != name and not stem.endswith(f"_{name}"):
            continue
        cur = newest.get(run.profile)
        if cur is None or (run.datetime or "", run.path.name) > (cur.datetime or "", cur.path.name):
            newest[run.profile] = run
    if not newest:
        raise ResultsError(f"no saved run named {name!r} (files {name}.json or NNNN_{name}.json)")
    return [newest[p] for p in sorted(newest)]


def merged_rows(runs: Iterable[SavedRun]) -> list[Row]:
    """Rows of many runs; where two runs of one profile measured the same (model, batch), the later wins."""
    ordered = sorted(runs, key=lambda r: (r.datetime or "", r.path.name))
    by_key: dict[tuple[str, str, int], Row] = {}
    for run in ordered:
        for row in rows_of(run):
            by_key[(row.profile, row.model, row.batch_size)] = row
    return sorted(by_key.values(), key=lambda r: (r.profile, r.model, r.batch_size))


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
