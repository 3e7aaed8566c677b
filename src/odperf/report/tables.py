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


def _map_from(r: Row) -> str | None:
    """Which record gave a row's mAP; an accuracy run that failed says so even when the timed run scored."""
    failed = f"accuracy {r.accuracy_outcome}" if r.accuracy_outcome not in (None, "ok") else None
    if r.map_source is None:
        return failed
    source = r.map_source + (f", {r.map_images} img" if r.map_images else "")
    return source if failed is None else f"{source} ({failed})"


def measurements_table(rows: Sequence[Row]) -> Table:
    return Table(
        name="measurements",
        title="Time per image, throughput, memory and mAP by device, model and batch size",
        headers=["device", "model", "batch", "outcome", "mean s/img", "median s/img", "p95 s/img",
                 "tiles/s", "peak MB", "model MB", "memory probe", "times from", "mAP", "mAP from", "runtime",
                 "others' CPU"],
        rows=[
            [r.profile, r.model, r.batch_size, r.outcome or "not timed", r.mean_s, r.median_s, r.p95_s,
             r.tiles_per_s, r.peak_mb, r.model_mb, r.probe, r.time_source if r.timed else None, r.map,
             "untrained" if r.untrained else _map_from(r), r.runtime, load_text(r.load)]
            for r in rows
        ],
        floatfmt=["", "", "", "", TIME_FMT, TIME_FMT, TIME_FMT, ".1f", MB_FMT, MB_FMT, "", "", MAP_FMT, "", "", ""],
        note="Times are seconds per camera image (all its tiles); 'times from' says whether pytest-benchmark "
        "stats or the odperf record gave them. mAP comes from the accuracy run of that batch size, else "
        "from the timed run scored with --odperf-accuracy ('mAP from', with the camera images it is over); "
        "'not timed': only scored; "
        "'untrained': an architecture run with random weights, for time and memory only. 'model MB': the "
        "model's own memory, the peak minus what the runtime held before the model loaded. \"others' CPU\": "
        "the share of the machine's cores other processes used while the case was timed (the kernel's "
        "counters; on a virtual machine with the hypervisor's steal, given apart); UNDER LOAD marks a figure "
        "taken on a busy machine, not comparable with an idle one's.",
    )


def load_text(load: dict[str, Any] | None) -> str | None:
    """A record's load as a cell: the others' share of the cores, and UNDER LOAD where it counts as load."""
    if not load:
        return None
    share = f"{load['others_share']:.0%} of {load['cores']} cores"
    steal = load.get("steal_cores")  # another guest of the hypervisor: a tenant no process list here shows
    if steal is not None and steal / load["cores"] >= 0.005:
        share += f" ({steal / load['cores']:.0%} stolen by the hypervisor)"
    return f"{share}, UNDER LOAD" if load.get("loaded") else share


def best_batch_table(bests: Sequence[Best]) -> Table:
    return Table(
        name="best_batch",
        title="Best batch size per model, its memory, and instances that fit the device",
        headers=["device", "model", "best batch", "mean s/img", "peak MB", "model MB", "device MB", "instances"],
        rows=[
            [b.row.profile, b.row.model, b.row.batch_size, b.row.mean_s, b.row.peak_mb, b.row.model_mb,
             b.capacity_mb, b.instances]
            for b in bests
        ],
        floatfmt=["", "", "", TIME_FMT, MB_FMT, MB_FMT, MB_FMT, ""],
        note="Best batch: the batch size with the lowest mean time per image (the paper's Fig. 8). "
        "Instances: copies of the model that fit the device's memory at that batch size: the whole peak "
        "each, or on an emulated CPU device, whose cap is set above the runtime, the model's own memory.",
    )


def repairs_text(repairs: dict[str, int] | None) -> str | None:
    """``clipped 3, dropped_nonfinite 1``; ``none`` when scoring repaired nothing; None when not recorded."""
    if repairs is None:
        return None
    done = [f"{k} {v}" for k, v in sorted(repairs.items()) if v]
    return ", ".join(done) or "none"


def _sources(scored: set[tuple[str, int]]) -> str | None:
    """``accuracy b64; timing b1..b64 (7 batches)``: which runs scored a model, at which batch sizes."""
    parts = []
    for kind in sorted({k for k, _ in scored}):
        batches = sorted(b for k, b in scored if k == kind)
        many = f"b{batches[0]}..b{batches[-1]} ({len(batches)} batches)"
        parts.append(f"{kind} " + (f"b{batches[0]}" if len(batches) == 1 else many))
    return "; ".join(parts) or None


def accuracy_table(rows: Sequence[Row]) -> Table:
    """mAP per model; a model measured on several devices or by several runs shows each value it got, and
    the detections repaired before scoring (boxes clipped, non-finite detections dropped)."""
    by_model: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = by_model.setdefault(r.model, {"maps": set(), "group": None, "profiles": set(), "from": set(),
                                          "repairs": {}, "recorded": False})
        m["group"] = m["group"] or r.map_group
        m["profiles"].add(r.profile)
        if r.map is not None:
            m["maps"].add(round(r.map, 4))
            m["from"].add((r.map_source, r.batch_size))
        if r.repairs is not None:
            m["recorded"] = True
            for k, v in r.repairs.items():
                m["repairs"][k] = m["repairs"].get(k, 0) + int(v or 0)
    ordered = sorted(by_model.items(), key=lambda kv: (group_rank(kv[1]["group"]), -max(kv[1]["maps"], default=-1),
                                                        kv[0]))
    return Table(
        name="accuracy",
        title="Accuracy: COCO mAP@[.5:.95] and mAP group",
        headers=["model", "mAP group", "mAP", "mAP from", "repairs", "devices"],
        rows=[
            [model, m["group"], ", ".join(f"{v:.3f}" for v in sorted(m["maps"])) or None,
             _sources(m["from"]), repairs_text(m["repairs"]) if m["recorded"] else None,
             ", ".join(sorted(m["profiles"]))]
            for model, m in ordered
        ],
        floatfmt=["", "", MAP_FMT, "", "", ""],
        note="mAP from: the kind of run that scored it (accuracy: the untimed accuracy benchmark; timing: the "
        "timed images with --odperf-accuracy) and its batch size. Repairs: detections fixed before scoring, "
        "summed over the rows shown (odperf.measure.accuracy).",
    )


def deadline_table(choices: Sequence[DeadlineChoice]) -> Table:
    rows = []
    for c in choices:
        top = c.most_accurate
        rows.append([
            c.profile, c.deadline_s, len(c.meeting), ", ".join(b.row.model for b in c.meeting) or None,
            top.row.model if top else None, top.map if top else None, top.row.map_group if top else None,
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
        rows=[[b.row.profile, b.row.model, b.row.batch_size, b.row.mean_s, b.map, b.row.map_group]
              for b in front],
        floatfmt=["", "", "", TIME_FMT, MAP_FMT, ""],
        note="No other model on the same device is both faster and more accurate.",
    )
