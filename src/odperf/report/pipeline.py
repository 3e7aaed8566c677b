"""The pipeline's table in ``odperf report``: each saved ``pipeline`` record (odperf.pipeline.record) as one
row: the deployment, the line offered, the verdict, end-to-end latency and its largest parts, accounting."""

from __future__ import annotations

from typing import Any, Sequence

from odperf.report.tables import Table
from odperf.results import PIPELINE, RunRecord, SavedRun


def pipeline_records(runs: Sequence[SavedRun]) -> list[RunRecord]:
    """Every pipeline record, a later run's replacing an earlier one of the same key."""
    latest: dict[Any, RunRecord] = {}
    for run in runs:
        for rec in run.records:
            if rec.kind == PIPELINE and rec.pipeline:
                latest[rec.key] = rec
    return sorted(latest.values(), key=lambda r: (r.device_profile, r.model, r.batch_size))


def pipeline_table(records: Sequence[RunRecord]) -> Table:
    rows = []
    for r in records:
        block = r.pipeline or {}
        s, summary = block.get("settings") or {}, block.get("summary") or {}
        lat = summary.get("latency_s") or {}

        def p(part: str, q: str) -> float | None:
            return (lat.get(part) or {}).get(q)
        cars = summary.get("cars") or []
        rows.append([r.device_profile, r.model, r.batch_size, s.get("instances"), s.get("cameras"),
                     summary.get("offered_rate"), summary.get("achieved_rate"), p("total", "p50"), p("total", "p99"),
                     p("queueing", "p99"), p("inference", "p50"), s.get("deadline_s"),
                     f"{sum(1 for c in cars if c.get('within'))}/{len(cars)}",
                     f"{summary.get('detected')}/{summary.get('published')}", summary.get("lost"),
                     summary.get("retried"), "holds" if summary.get("holds") else "misses", r.map])
    return Table(
        name="pipeline",
        title="Pipeline: cameras through a broker to detector instances (end-to-end latency per image, s)",
        headers=["device", "model", "batch", "instances", "cameras", "offered img/s", "back img/s", "p50",
                 "p99", "queueing p99", "inference p50", "deadline", "cars in time", "detected", "lost",
                 "retried", "line", "mAP"],
        rows=rows,
        floatfmt=["", "", "", "", "", ".3g", ".3g", ".3f", ".3f", ".3f", ".3f", ".3g", "", "", "", "", "", ".3f"],
        note="Latency: capture to detections back at the collector; its parts are in each run's own "
             "pipeline report (odperf pipeline). A line holds with no image lost, the p99 within the "
             "deadline and every car in time.",
    )


def pipeline_tables(runs: Sequence[SavedRun]) -> list[Table]:
    records = pipeline_records(runs)
    return [pipeline_table(records)] if records else []
