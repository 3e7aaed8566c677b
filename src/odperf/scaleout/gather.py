"""Shards' saved JSON gathered into one run per profile, written where a local run of that profile saves.

A profile's file is ``<out>/<profile>/<machine id>/NNNN_<name>.json``, the place and name pytest-benchmark's
``--benchmark-save=<name>`` gives a run on that hardware (odperf keeps each profile's storage apart). It
holds every benchmark and record of the profile's returned shards, and a crash record with the reason for
each case of a shard that failed for good, so no case goes missing silently. It is rewritten (atomically)
each time a shard returns, so a stopped run keeps everything that came back.

Each record carries ``ray_shard``: which shard and node measured it, and how many other shards ran on that
node meanwhile (they share its CPU cores, memory bandwidth and PCIe).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from odperf.results import SCHEMA_VERSION, Outcome, RunRecord
from odperf.scaleout.shards import Shard
from odperf.scaleout.task import ShardResult
from odperf.util.atomic import write_atomic, write_numbered

SHARD_KEY = "ray_shard"


@dataclass
class ProfileRun:
    """One profile's part of a cluster run: what came back, what failed for good, and its file."""

    profile: str
    returned: list[tuple[Shard, ShardResult]] = field(default_factory=list)
    failed: list[tuple[Shard, str]] = field(default_factory=list)
    path: Path | None = None


def others_on_node(result: ShardResult, every: list[ShardResult]) -> int:
    """How many other shards ran on ``result``'s node while it ran (times of that node's own clock)."""
    return sum(1 for r in every if r is not result and r.node_id == result.node_id
               and r.start < result.end and result.start < r.end)


def crash_records(shard: Shard, reason: str) -> list[dict[str, Any]]:
    """A crash record per case of a shard that never brought results back."""
    m = shard.model
    return [
        {**RunRecord(model=m.name, device_profile=shard.profile.name, batch_size=b, outcome=Outcome.CRASH.value,
                     backend=m.backend, meta_arch=m.meta_arch, map_group=m.map_group,
                     error=f"shard {shard.label} failed on the cluster: {reason}").to_extra_info(),
         SHARD_KEY: {"shard": shard.index, "node": None}}
        for b in shard.batch_sizes
    ]


def document(run: ProfileRun, every: list[ShardResult]) -> dict[str, Any]:
    """The profile's pytest-benchmark document: the returned shards' merged, plus the failed shards' crash records."""
    docs = []
    for shard, result in sorted(run.returned, key=lambda p: p[0].index):
        if result.json_text:
            doc = json.loads(result.json_text)
            mark = {"shard": shard.index, "node": result.node_id, "host": result.host,
                    "other_shards_on_node": others_on_node(result, every)}
            for bench in doc.get("benchmarks", []):
                if "odperf_schema" in (bench.get("extra_info") or {}):
                    bench["extra_info"][SHARD_KEY] = mark
            for rec in doc.get("odperf", {}).get("records", []):
                rec[SHARD_KEY] = mark
            docs.append(doc)
    out = copy.deepcopy(docs[0]) if docs else {
        "machine_info": {}, "commit_info": {}, "benchmarks": [],
        "datetime": datetime.now(timezone.utc).isoformat(),
        "odperf": {"schema": SCHEMA_VERSION, "profile": run.profile, "records": []},
    }
    out["benchmarks"] = [b for d in docs for b in d["benchmarks"]]
    out["odperf"]["records"] = [r for d in docs for r in d["odperf"]["records"]]
    out["odperf"]["records"] += [r for shard, reason in run.failed for r in crash_records(shard, reason)]
    out["odperf"][SHARD_KEY + "s"] = [
        {"shard": s.index, "label": s.label, "node": r.node_id, "host": r.host, "start": r.start, "end": r.end,
         "seconds": round(r.seconds, 3),
         "pytest_exit_code": r.returncode, "outcomes": r.outcomes} for s, r in run.returned
    ] + [{"shard": s.index, "label": s.label, "failed": reason} for s, reason in run.failed]
    if docs:
        out["datetime"] = max(d.get("datetime") or "" for d in docs)
    return out


def write(run: ProfileRun, every: list[ShardResult], out_dir: Path, name: str, machine_id: str) -> Path:
    """(Re)write the profile's file: the first write picks its storage folder and number."""
    text = json.dumps(document(run, every), indent=4)
    if run.path is None:  # numbered as pytest-benchmark numbers, never over a run saved meanwhile
        mid = next((r.machine_id for _, r in run.returned), machine_id)
        folder = out_dir / run.profile / mid
        folder.mkdir(parents=True, exist_ok=True)
        run.path = write_numbered(folder, name, text)
    else:
        write_atomic(run.path, text)
    return run.path
