"""A pipeline pass as a results record (kind ``pipeline``, odperf.results), saved like every other benchmark.

The record's usual fields come from the first instance that ran to the end (its worker's deployment and
memory, as a timing record's); its ``pipeline`` block holds the pass's settings, summary (verdict, latency
parts, cars, backlog, accounting), instances, faults and backlog timeline; ``map`` is the collector's mAP.
"""

from __future__ import annotations

from typing import Any

from odperf.pipeline.figures import PipelineSummary
from odperf.pipeline.run import PipelineRun
from odperf.pipeline.settings import PipelineSettings
from odperf.results import PIPELINE, RunRecord


def settings_from_text(text: str, **base: Any) -> PipelineSettings:
    """``instances=2,cars=1`` (the benchmark's --odperf-pipeline) over ``base``; a bad key is one clear line."""
    from dataclasses import fields

    from odperf.errors import WorkloadError

    types = {f.name: f.type for f in fields(PipelineSettings)}
    values = dict(base)
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in types or not value:
            raise WorkloadError(f"--odperf-pipeline {item!r}: give KEY=VALUE with KEY one of {', '.join(types)}")
        kind = str(types[key])
        try:
            values[key] = (int(value) if kind.startswith("int") else float(value) if "float" in kind
                           else None if value == "none" else value)
        except ValueError:
            raise WorkloadError(f"--odperf-pipeline {item!r}: {key} must be {kind}") from None
    return PipelineSettings(**values)


def fill_record(record: RunRecord, run: PipelineRun, summary: PipelineSummary) -> RunRecord:
    """``record`` (made from an instance's measurement, kind pipeline) completed with the pass's block."""
    record.kind = PIPELINE
    data = run.to_dict()
    record.pipeline = {"settings": data["settings"], "summary": summary.to_dict(), "instances": data["instances"],
                       "faults": data["faults"], "backlog": data["backlog"], "broker": data["broker"],
                       "local_broker": data["local_broker"], "wall_s": data["wall_s"]}
    record.accuracy = run.accuracy
    record.map = (run.accuracy or {}).get("AP")
    peaks = [r.peak_memory_mb for r in run.instances if r.peak_memory_mb is not None]
    record.peak_memory_mb = max(peaks) if peaks else record.peak_memory_mb
    return record


def measured_instance(run: PipelineRun) -> Any:
    """The measurement the record is made from: the first instance that ran to the end, else the first."""
    for report, measurement in zip(run.instances, run.measurements):
        if report.outcome == "ok":
            return measurement
    return run.measurements[0]
