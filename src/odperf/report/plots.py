"""The report's figures, drawn after the paper's: time and memory against batch size per device (Figs. 3-7),
best time against memory (Fig. 8), time per mAP group across devices (Fig. 10), and the time/accuracy front.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot, so drawing needs no
display and keeps no global state between reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from odperf.report.rows import Row, group_rank
from odperf.report.selection import Best


@dataclass(frozen=True)
class Plot:
    title: str
    path: Path


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _per_model(rows: Sequence[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: (r.model, r.batch_size)):
        out.setdefault(r.model, []).append(r)
    return out


def _batch_axis(ax, rows: Sequence[Row]) -> None:
    batches = sorted({r.batch_size for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size (tiles per model call)")


def by_batch(rows: Sequence[Row], profile: str, out_dir: Path, what: str) -> Plot:
    """One device: a line per model of time per image (``what="time"``, log y) or peak memory against batch.

    Batches that ran out of memory or failed are marked with an x on the model's line level, so a model's
    OOM limit is visible the way the paper's Figs. 3-7 leave the line off.
    """
    mine = [r for r in rows if r.profile == profile]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for model, series in _per_model(mine).items():
        value = (lambda r: r.mean_s) if what == "time" else (lambda r: r.peak_mb)
        ok = [r for r in series if r.ok and value(r) is not None]
        (line,) = ax.plot([r.batch_size for r in ok], [value(r) for r in ok], marker="o", label=model)
        failed = [r for r in series if r.failed]
        if failed and ok:
            ax.scatter([r.batch_size for r in failed], [value(ok[-1])] * len(failed), marker="x",
                       color=line.get_color(), s=60)
    _batch_axis(ax, mine)
    drawn = any(len(line.get_xdata()) for line in ax.get_lines())
    if not drawn:
        ax.text(0.5, 0.5, "no successful measurement", transform=ax.transAxes, ha="center")
    if what == "time":
        if drawn:
            ax.set_yscale("log")
        ax.set_ylabel("mean time per image (s, log)")
        title = f"Inference time per image vs batch size: {profile}"
    else:
        ax.set_ylabel("peak memory (MB)")
        title = f"Peak memory vs batch size: {profile}"
    ax.set_title(title + ("  (x: oom/failed)" if any(r.failed for r in mine) else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    name = f"{'time' if what == 'time' else 'memory'}_vs_batch_{safe_name(profile)}.png"
    return Plot(title, _save(fig, out_dir / name))


def best_time_vs_memory(bests: Sequence[Best], out_dir: Path) -> Plot:
    """Fig. 8: per device, each model at its best batch size, labelled ``model(batch)``."""
    profiles = sorted({b.row.profile for b in bests})
    fig = Figure(figsize=(5.0 * max(1, len(profiles)), 4.5))
    for i, profile in enumerate(profiles, start=1):
        ax = fig.add_subplot(1, len(profiles), i)
        mine = [b for b in bests if b.row.profile == profile and b.row.peak_mb is not None]
        ax.scatter([b.row.peak_mb for b in mine], [b.row.mean_s for b in mine])
        for b in mine:
            ax.annotate(f"{b.row.model}({b.row.batch_size})", (b.row.peak_mb, b.row.mean_s), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if mine:
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no memory figures", transform=ax.transAxes, ha="center")
        ax.set_xlabel("peak memory at best batch (MB)")
        ax.set_ylabel("best mean time per image (s, log)")
        ax.set_title(profile)
        ax.grid(True, alpha=0.3)
    title = "Best inference time against memory"
    fig.suptitle(title)
    return Plot(title, _save(fig, out_dir / "best_time_vs_memory.png"))


def time_by_map_group(bests: Sequence[Best], out_dir: Path) -> Plot:
    """Fig. 10: best time per image of each model, models ordered by mAP group, a bar per device."""
    profiles = sorted({b.row.profile for b in bests})
    models = sorted({(group_rank(b.row.map_group), b.row.map_group or "?", b.row.model) for b in bests})
    fig = Figure(figsize=(max(6.0, 0.9 * len(models) + 2), 4.8))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(profiles))
    lookup = {(b.row.profile, b.row.model): b.row.mean_s for b in bests}
    for j, profile in enumerate(profiles):
        xs, ys = [], []
        for i, (_, _, model) in enumerate(models):
            if (profile, model) in lookup:
                xs.append(i + (j - (len(profiles) - 1) / 2) * width)
                ys.append(lookup[(profile, model)])
        ax.bar(xs, ys, width=width, label=profile)
    ax.set_xticks(range(len(models)), [f"{m}\n[{g}]" for _, g, m in models], rotation=45, ha="right",
                  fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("best mean time per image (s, log)")
    title = "Inference time per mAP group across devices"
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return Plot(title, _save(fig, out_dir / "time_by_map_group.png"))


def pareto(bests: Sequence[Best], front: Sequence[Best], out_dir: Path) -> Plot:
    """Every model with a measured mAP at its best time, per device; the front drawn as a step line."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for profile in sorted({b.row.profile for b in bests}):
        pts = [b for b in bests if b.row.profile == profile and b.map is not None]
        if not pts:
            continue
        sc = ax.scatter([b.row.mean_s for b in pts], [b.map for b in pts], label=profile, alpha=0.6)
        edge = [b for b in front if b.row.profile == profile]
        ax.step([b.row.mean_s for b in edge], [b.map for b in edge], where="post",
                color=sc.get_facecolor()[0], alpha=0.9)
        for b in edge:
            ax.annotate(b.row.model, (b.row.mean_s, b.map), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")
    if ax.collections:
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no model with a measured mAP", transform=ax.transAxes, ha="center")
    ax.set_xlabel("best mean time per image (s, log)")
    ax.set_ylabel("COCO mAP@[.5:.95]")
    title = "Time/accuracy Pareto front"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return Plot(title, _save(fig, out_dir / "pareto.png"))
