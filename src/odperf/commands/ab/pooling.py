"""One saved run per side from its slots: every slot read through ``results.load_run`` (validated, older
schemas migrated), every round of every slot pooled per benchmark, written with the atomic writer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from odperf.results import RecordKey, RunRecord, load_run, migrate_record
from odperf.util.atomic import write_atomic

MEMORY_FIGURES = ("peak_memory_mb", "model_memory_mb", "runtime_memory_mb")


def merge(paths: list[Path], out: Path) -> Path:
    """One saved run from one side's slots: every round of every slot pooled per benchmark; per record the
    worst outcome of any slot, the median of its memory figures and the lowest mAP."""
    from pytest_benchmark.stats import Stats

    runs = [load_run(p) for p in paths]  # refuses a corrupt, foreign or newer slot, migrates older ones
    by_key: dict[RecordKey, list[RunRecord]] = {}
    for run in runs:
        for rec in run.records:
            by_key.setdefault(rec.key, []).append(rec)
    merged = {key: _merge_records(recs) for key, recs in by_key.items()}
    rounds = {key: [t for run in runs for t in (run.stats.get(key) or {}).get("data") or []] for key in merged}
    first_doc = json.loads(paths[0].read_text(encoding="utf-8"))  # pytest-benchmark's machine and run fields
    entries: dict[RecordKey, dict[str, Any]] = {}  # pytest-benchmark's own fields of each benchmark (names)
    for path in paths:
        for bench in json.loads(path.read_text(encoding="utf-8"))["benchmarks"]:
            info = bench.get("extra_info") or {}
            if "odperf_schema" in info:
                key = RunRecord.from_extra_info(migrate_record(info, info["odperf_schema"], has_stats=True)).key
                entries.setdefault(key, bench)
    benchmarks = []
    for key, entry in entries.items():
        rec = merged[key]
        if rec.outcome != "ok" or not rounds[key]:
            continue
        stats = Stats()
        for t in rounds[key]:
            stats.update(t)
        arr = np.asarray(rounds[key])
        rec = merged[key] = replace(rec, images_timed=int(arr.size), time_per_image_s={
            "mean": float(arr.mean()), "median": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
            "min": float(arr.min()), "max": float(arr.max())})
        benchmarks.append({**entry, "stats": {**stats.as_dict(), "data": rounds[key]},
                           "extra_info": rec.to_extra_info()})
    block = {**first_doc.get("odperf", {}), "records": [r.to_extra_info() for r in merged.values()]}
    write_atomic(out, json.dumps({**first_doc, "benchmarks": benchmarks, "odperf": block}, indent=2))
    return out


def _merge_records(recs: list[RunRecord]) -> RunRecord:
    failed = [r for r in recs if r.outcome != "ok"]
    memory = {}
    for name in MEMORY_FIGURES:
        values = [getattr(r, name) for r in recs if getattr(r, name) is not None]
        memory[name] = float(np.median(values)) if values else None
    maps = [r.map for r in recs if r.map is not None]
    return replace(failed[0] if failed else recs[0], map=min(maps) if maps else None, **memory)
