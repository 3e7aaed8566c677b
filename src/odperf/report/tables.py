"""The report's tables: built as plain data (``Table``), rendered by tabulate for Markdown or the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from tabulate import tabulate

from odperf.report.rows import Row, group_rank
from odperf.report.selection import Best, DeadlineChoice

TIME_FMT = ".4g"
MB_FMT = ".0f"
MAP_FMT = ".3f"


@dataclass
class Table:
    """A titled table; ``floatfmt`` has one format per column so each quantity keeps its own precision."""

    name: str  # file-safe identifier
    title: str
    headers: list[str]
    rows: list[list[Any]]
    floatfmt: list[str] = field(default_factory=list)
    note: str = ""

    def render(self, markdown: bool = True) -> str:
        body = tabulate(
            self.rows,
            headers=self.headers,
            tablefmt="github" if markdown else "simple",
            floatfmt=self.floatfmt or "g",
            missingval="-",
        )
        if not markdown:
            return f"{self.title}\n{body}" + (f"\n{self.note}" if self.note else "")
        return f"## {self.title}\n\n" + (f"{self.note}\n\n" if self.note else "") + body + "\n"


def measurements_table(rows: Sequence[Row]) -> Table:
    return Table(
        name="measurements",
        title="Time per image, throughput and memory by device, model and batch size",
        headers=["device", "model", "batch", "outcome", "mean s/img", "median s/img", "p95 s/img",
                 "tiles/s", "peak MB", "memory probe", "times from"],
        rows=[
            [r.profile, r.model, r.batch_size, r.outcome, r.mean_s, r.median_s, r.p95_s, r.tiles_per_s,
             r.peak_mb, r.probe, r.time_source]
            for r in rows
        ],
        floatfmt=["", "", "", "", TIME_FMT, TIME_FMT, TIME_FMT, ".1f", MB_FMT, "", ""],
        note="Times are seconds per camera image (all its tiles); 'times from' says whether pytest-benchmark "
        "stats or the odperf record gave them.",
    )


def best_batch_table(bests: Sequence[Best]) -> Table:
    return Table(
        name="best_batch",
        title="Best batch size per model, its memory, and instances that fit the device",
        headers=["device", "model", "best batch", "mean s/img", "peak MB", "device MB", "instances"],
        rows=[
            [b.row.profile, b.row.model, b.row.batch_size, b.row.mean_s, b.row.peak_mb, b.capacity_mb,
             b.instances]
            for b in bests
        ],
        floatfmt=["", "", "", TIME_FMT, MB_FMT, MB_FMT, ""],
        note="Best batch: the batch size with the lowest mean time per image (the paper's Fig. 8). "
        "Instances: copies of the model that fit the device's memory at that batch size.",
    )


def accuracy_table(rows: Sequence[Row]) -> Table:
    """mAP per model; a model measured on several devices shows each value it got."""
    by_model: dict[str, tuple[set[float], str | None, set[str]]] = {}
    for r in rows:
        maps, group, profiles = by_model.get(r.model, (set(), None, set()))
        if r.map is not None:
            maps.add(round(r.map, 4))
        by_model[r.model] = (maps, group or r.map_group, profiles | {r.profile})
    ordered = sorted(by_model.items(), key=lambda kv: (group_rank(kv[1][1]), -max(kv[1][0], default=-1), kv[0]))
    return Table(
        name="accuracy",
        title="Accuracy: COCO mAP@[.5:.95] and mAP group",
        headers=["model", "mAP group", "mAP", "devices"],
        rows=[
            [model, group, ", ".join(f"{m:.3f}" for m in sorted(maps)) or None, ", ".join(sorted(profiles))]
            for model, (maps, group, profiles) in ordered
        ],
    )


def deadline_table(choices: Sequence[DeadlineChoice]) -> Table:
    rows = []
    for c in choices:
        top = c.most_accurate
        rows.append([
            c.profile, c.deadline_s, len(c.meeting), ", ".join(b.row.model for b in c.meeting) or None,
            top.row.model if top else None, top.row.map if top else None, top.row.map_group if top else None,
            top.row.mean_s if top else None,
        ])
    return Table(
        name="deadlines",
        title="Models that meet each per-image deadline, and the most accurate of them",
        headers=["device", "deadline s", "# meeting", "models meeting", "most accurate", "mAP", "mAP group",
                 "its s/img"],
        rows=rows,
        floatfmt=["", "g", "", "", "", MAP_FMT, "", TIME_FMT],
        note="A model meets a deadline when its mean time per image at its best batch size is within it "
        "(the paper's Fig. 10 reasoning).",
    )


def pareto_table(front: Sequence[Best]) -> Table:
    return Table(
        name="pareto",
        title="Time/accuracy Pareto front per device",
        headers=["device", "model", "best batch", "mean s/img", "mAP", "mAP group"],
        rows=[[b.row.profile, b.row.model, b.row.batch_size, b.row.mean_s, b.row.map, b.row.map_group]
              for b in front],
        floatfmt=["", "", "", TIME_FMT, MAP_FMT, ""],
        note="No other model on the same device is both faster and more accurate.",
    )
