"""The report's figures, drawn after the paper's: time and memory against batch size per device (Figs. 3-7),
best time against memory (Fig. 8), time per mAP group across devices (Fig. 10), and the time/accuracy front.

Only measurements are drawn as data. A batch that ran out of memory or failed is marked in a band above the
axes at that batch, labelled with its outcome; device memory and deadlines are labelled lines (``marks``).
Memory axes start at zero. Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never
pyplot, so drawing needs no display and keeps no global state between reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from odperf.report.marks import FAR, NEAR, Labeller, Level, draw_levels, label_levels, seconds_axis, within
from odperf.report.rows import MemoryCap, Row, group_rank
from odperf.report.selection import Best

# An outcome's name beside its x in the failure band: right of it, else left (points, alignment).
_BESIDE = ((6, 0, "left", "center"), (-6, 0, "right", "center"))

TIME_VS_BATCH, MEMORY_VS_BATCH = "time_vs_batch", "memory_vs_batch"
BEST_TIME_VS_MEMORY, TIME_BY_MAP_GROUP, PARETO = "best_time_vs_memory", "time_by_map_group", "pareto"


@dataclass(frozen=True)
class Plot:
    title: str
    path: Path
    kind: str  # one of the names above: what the figure shows, whichever devices
    profile: str | None = None  # the device of a per-device figure
    caption: str = ""  # how to read what is drawn besides measurements
    figure: Figure | None = field(default=None, repr=False, compare=False)  # as saved, for checks on it


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _per_model(rows: Sequence[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: (r.model, r.batch_size)):
        out.setdefault(r.model, []).append(r)
    return out


def _batch_axis(ax: Axes, rows: Sequence[Row]) -> None:
    batches = sorted({r.batch_size for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlim(batches[0] / 1.4, batches[-1] * 1.4)


def _deadlines(deadlines_s: Sequence[float], times: Sequence[float], horizontal: bool = True) -> list[Level]:
    return [Level(d, f"deadline {d:g} s", horizontal, color="tab:red", linestyle=":")
            for d in sorted(set(deadlines_s)) if within(d, times, NEAR, log=True)]


def _memory_levels(caps: Sequence[MemoryCap], peaks: Sequence[float], horizontal: bool = True
                   ) -> tuple[list[Level], list[str]]:
    """Lines for the device's memory limits near the measured peaks, and names of those too far to draw."""
    levels, far = [], []
    for cap in caps:
        if cap.runtime_mb is not None:
            runtime = cap.runtime or "runtime"
            levels.append(Level(cap.runtime_mb, f"{runtime} started: {cap.runtime_mb:,.0f} MB data segment",
                                horizontal, linestyle="-."))
            levels.append(Level(cap.limit_mb, f"cap: {runtime} + {cap.size_mb:,.0f} MB = "
                                f"{cap.limit_mb:,.0f} MB data segment", horizontal, color="tab:purple"))
        elif within(cap.limit_mb, peaks or [cap.limit_mb], FAR, log=False):
            name = "emulated device memory" if cap.emulated else "device memory"
            levels.append(Level(cap.limit_mb, f"{name} {cap.limit_mb:,.0f} MB", horizontal, color="tab:purple"))
        else:
            far.append(f"device memory {cap.limit_mb:,.0f} MB, over {FAR:g}x the largest peak: not drawn")
    return levels, far


def _failure_band(band: Axes, failed: dict[str, list[Row]], colours: dict[str, str]) -> None:
    """Each failing model on its own row of the band, an x at each batch that failed (named by outcome once
    the layout is final: ``_name_failures``)."""
    names = sorted(failed)
    for k, model in enumerate(names):
        band.scatter([r.batch_size for r in failed[model]], [k] * len(failed[model]), marker="x", s=40,
                     color=colours[model], gid="failed")
    band.set_ylim(len(names) - 0.5, -0.5)
    band.set_yticks(range(len(names)), names, fontsize=7)
    band.tick_params(axis="x", labelbottom=False)
    band.set_title("no measurement: the batch ran out of memory or failed (outcome beside each x)", fontsize=8,
                   loc="left")
    band.grid(True, axis="x", alpha=0.3)
    band.set_facecolor("0.96")


def _name_failures(band: Axes, failed: dict[str, list[Row]]) -> None:
    labeller = Labeller(band, [(r.batch_size, k) for k, m in enumerate(sorted(failed)) for r in failed[m]])
    for k, model in enumerate(sorted(failed)):
        for r in failed[model]:
            labeller.place(str(r.outcome), (r.batch_size, k), around=_BESIDE, gid="outcome")


def by_batch(rows: Sequence[Row], profile: str, out_dir: Path, what: str,
             caps: Sequence[MemoryCap] = (), deadlines_s: Sequence[float] = ()) -> Plot:
    """One device: a line per model of time per image (``what="time"``, log y) or peak memory against batch,
    through the batches that ran ok only. Failed batches go in a band above, as the paper's Figs. 3-7
    leave the line off where a model ran out of memory."""
    mine = [r for r in rows if r.profile == profile]
    per_model = _per_model(mine)
    colours = {m: f"C{i % 10}" for i, m in enumerate(per_model)}
    failed = {m: [r for r in s if r.failed] for m, s in per_model.items() if any(r.failed for r in s)}
    fig = _figure(8.5, 5.0 + 0.25 * len(failed))
    if failed:
        band, ax = fig.subplots(2, 1, sharex=True, height_ratios=[0.6 + 0.35 * len(failed), 5.0])
        _failure_band(band, failed, colours)
    else:
        ax = fig.add_subplot()
    value = (lambda r: r.mean_s) if what == "time" else (lambda r: r.peak_mb)
    measured: list[float] = []
    for model, series in per_model.items():
        ok = [r for r in series if r.ok and value(r) is not None]
        if ok:
            # a batch-1-only model runs its tiles one call each: its "batch" is the suite's, not the model's
            label = f"{model} (tile by tile)" if any(r.tile_by_tile for r in ok) else model
            ax.plot([r.batch_size for r in ok], [value(r) for r in ok], marker="o", label=label,
                    color=colours[model])
        measured += [value(r) for r in ok]
    _batch_axis(ax, mine)
    ax.set_xlabel("batch size (tiles per model call)")
    if not measured:
        ax.text(0.5, 0.5, "no successful measurement", transform=ax.transAxes, ha="center")
        ax.set_yticks([])
    far: list[str] = []
    if what == "time":
        levels = _deadlines(deadlines_s, measured)
        if measured:
            ax.set_yscale("log")
            seconds_axis(ax.yaxis)
        ax.set_ylabel("mean time per image (s, log)")
        title = f"Inference time per image vs batch size: {profile}"
    else:
        levels, far = _memory_levels(caps, measured)
        probes = sorted({r.probe for r in mine if r.probe})
        ax.set_ylabel(f"peak memory (MB{', ' + ', '.join(probes) if probes else ''})")
        title = f"Peak memory vs batch size: {profile}"
    draw_levels(ax, levels)
    if what != "time":
        ax.set_ylim(0, max([*measured, *(lv.value for lv in levels), 1.0]) * 1.1)
    fig.suptitle(title + ("\n" + "; ".join(far) if far else ""), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    if measured:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if failed:
        _name_failures(band, failed)
    label_levels(Labeller(ax), levels)
    name = f"{'time' if what == 'time' else 'memory'}_vs_batch_{safe_name(profile)}.png"
    caption = "Lines join the batch sizes that ran; "
    caption += ("an x in the band above marks a batch that ran out of memory or failed (no value was measured "
                "there). " if failed else "every batch ran. ")
    if what == "time":
        caption += "Dotted red lines: per-image deadlines within the measured range." if levels else ""
    elif any(c.runtime_mb is not None for c in caps):
        caption += ("The emulated device caps the worker's data segment at the runtime's own once started plus "
                    "the device's size (dashed); host RSS, plotted, also counts the runtime's mapped libraries, "
                    "so a batch that ran may peak above the cap line.")
    elif levels:
        caption += "The dashed line is the device's memory."
    return Plot(title, _save(fig, out_dir / name), TIME_VS_BATCH if what == "time" else MEMORY_VS_BATCH, profile,
                caption.strip(), fig)


def _mean_times(bests: Sequence[Best]) -> list[float]:
    return [b.row.mean_s for b in bests if b.row.mean_s]


def best_time_vs_memory(bests: Sequence[Best], out_dir: Path, caps: dict[str, list[MemoryCap]] | None = None,
                        deadlines_s: Sequence[float] = ()) -> Plot:
    """Fig. 8: per device, each model at its best batch size, labelled ``model(batch)``; memory from zero."""
    profiles = sorted({b.row.profile for b in bests})
    fig = _figure(5.2 * max(1, len(profiles)), 4.8)
    axes = fig.subplots(1, max(1, len(profiles)), squeeze=False)[0]
    placed = []
    for ax, profile in zip(axes, profiles):
        mine = [b for b in bests if b.row.profile == profile and b.row.peak_mb is not None]
        points = [(b.row.peak_mb, b.row.mean_s) for b in mine]
        ax.scatter([p[0] for p in points], [p[1] for p in points], zorder=3)
        levels = _deadlines(deadlines_s, _mean_times(mine))
        mem_levels, far = _memory_levels((caps or {}).get(profile, ()), [p[0] for p in points], horizontal=False)
        levels += mem_levels
        draw_levels(ax, levels)
        if mine:
            ax.set_yscale("log")
            seconds_axis(ax.yaxis)
            ax.margins(y=0.15)
        else:
            ax.text(0.5, 0.5, "no memory figures", transform=ax.transAxes, ha="center")
        top = max([p[0] for p in points] + [lv.value for lv in mem_levels] + [1.0])
        ax.set_xlim(0, top * 1.35)
        ax.set_xlabel("peak memory at best batch (MB)")
        ax.set_ylabel("best mean time per image (s, log)")
        ax.set_title(profile + ("\n" + "; ".join(far) if far else ""), fontsize=9 if far else 11)
        ax.grid(True, alpha=0.3)
        placed.append((ax, mine, points, levels))
    for ax, mine, points, levels in placed:
        labeller = Labeller(ax, points)
        for b in mine:
            labeller.place(f"{b.row.model}({b.row.batch_size})", (b.row.peak_mb, b.row.mean_s))
        label_levels(labeller, levels)
    title = "Best inference time against memory"
    fig.suptitle(title)
    caption = "Each model at the batch size with its fastest mean time per image, labelled model(batch)."
    return Plot(title, _save(fig, out_dir / "best_time_vs_memory.png"), BEST_TIME_VS_MEMORY, caption=caption,
                figure=fig)


def time_by_map_group(bests: Sequence[Best], out_dir: Path, deadlines_s: Sequence[float] = ()) -> Plot:
    """Fig. 10: best time per image of each model, most accurate mAP group on top, a bar per device."""
    profiles = sorted({b.row.profile for b in bests})
    models = sorted({(group_rank(b.row.map_group), b.row.map_group or "?", b.row.model) for b in bests})
    fig = _figure(8.5, max(3.5, 0.45 * len(models) * max(1, len(profiles)) ** 0.5 + 1.8))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(profiles))
    lookup = {(b.row.profile, b.row.model): b.row.mean_s for b in bests}
    for j, profile in enumerate(profiles):
        ys, xs = [], []
        for i, (_, _, model) in enumerate(models):
            if (profile, model) in lookup:
                ys.append(i + (j - (len(profiles) - 1) / 2) * height)
                xs.append(lookup[(profile, model)])
        ax.barh(ys, xs, height=height, label=profile)
    ax.set_yticks(range(len(models)), [f"{m} [{g}]" for _, g, m in models], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    seconds_axis(ax.xaxis)
    levels = _deadlines(deadlines_s, _mean_times(bests), horizontal=False)
    draw_levels(ax, levels)
    ax.set_xlabel("best mean time per image (s, log)")
    ax.set_ylabel("model [mAP group], most accurate group first")
    title = "Inference time per mAP group across devices"
    ax.set_title(title)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    label_levels(Labeller(ax), levels)
    caption = "Dotted red lines: the per-image deadlines within the measured range." if levels else ""
    return Plot(title, _save(fig, out_dir / "time_by_map_group.png"), TIME_BY_MAP_GROUP, caption=caption,
                figure=fig)


def map_axis_title(bests: Sequence[Best]) -> str:
    """COCO mAP@[.5:.95] with the dataset it was scored on, as the records say (``rows.scored_on``)."""
    sets = sorted({(b.scored or b.row).map_dataset or "a dataset not recorded" for b in bests if b.map is not None})
    if len(sets) == 1:
        return f"mAP@[.5:.95] on {sets[0]}"
    return "mAP@[.5:.95] on " + " or ".join(sets) + " (not comparable)" if sets else "mAP@[.5:.95]"


def pareto(bests: Sequence[Best], front: Sequence[Best], out_dir: Path, deadlines_s: Sequence[float] = ()) -> Plot:
    """Every model with a measured mAP at its best time, per device; the front drawn as a step line."""
    fig = _figure(8.5, 5.0)
    ax = fig.add_subplot()
    points = []
    for k, profile in enumerate(sorted({b.row.profile for b in bests})):
        pts = [b for b in bests if b.row.profile == profile and b.map is not None]
        if not pts:
            continue
        sc = ax.scatter([b.row.mean_s for b in pts], [b.map for b in pts], label=profile, alpha=0.7,
                        marker="osD^v"[k % 5], zorder=3)
        edge = [b for b in front if b.row.profile == profile]
        ax.step([b.row.mean_s for b in edge], [b.map for b in edge], where="post",
                color=sc.get_facecolor()[0], alpha=0.9)
        points += [(b.row.mean_s, b.map, b.row.model, b in edge) for b in pts]
    levels = _deadlines(deadlines_s, [p[0] for p in points], horizontal=False)
    draw_levels(ax, levels)
    if points:
        ax.set_xscale("log")
        seconds_axis(ax.xaxis)
        ax.margins(x=0.25, y=0.12)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  title="device", title_fontsize="small")
    else:
        ax.text(0.5, 0.5, "no model with a measured mAP", transform=ax.transAxes, ha="center")
    ax.set_xlabel("best mean time per image (s, log)")
    ax.set_ylabel(map_axis_title(bests))
    title = "Time/accuracy Pareto front"
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    labeller = Labeller(ax, [(x, y) for x, y, _, _ in points])
    named: set[tuple[str, float]] = set()
    for x, y, model, on_front in sorted(points, key=lambda p: not p[3]):
        if (model, y) not in named:  # a model's mAP is the same on every device: name it once
            labeller.place(model, (x, y))
            named.add((model, y))
    label_levels(labeller, levels)
    caption = "Step lines: each device's front (no model is both faster and more accurate)."
    return Plot(title, _save(fig, out_dir / "pareto.png"), PARETO, caption=caption, figure=fig)
