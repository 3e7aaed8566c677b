"""A whole report: saved runs in, a folder out with ``tables.md``, the PNG figures and ``index.md`` that shows
them all (tables inline, figures embedded), so one link gives the reader everything."""

from __future__ import annotations

from dataclasses import dataclass, field
from os.path import relpath
from pathlib import Path
from typing import Iterable, Sequence

from odperf.report import plots
from odperf.report.gpu import gpu_plots, gpu_tables
from odperf.report.rows import Row, capacities, memory_caps, merged_rows, superseded
from odperf.report.selection import PAPER_DEADLINES_S, Best, best_batches, deadline_choices, pareto_front
from odperf.report.pipeline import pipeline_tables
from odperf.report.stream import stream_plots, stream_tables
from odperf.report.time_spent import time_tables
from odperf.report.tables import (
    Table,
    accuracy_table,
    best_batch_table,
    deadline_table,
    measurements_table,
    pareto_table,
)
from odperf.results import SCHEMA_VERSION, SavedRun


@dataclass
class Report:
    """Everything a report shows, computed once; writing it out is separate."""

    sources: list[SavedRun]
    rows: list[Row]
    bests: list[Best]
    front: list[Best]
    tables: list[Table]
    deadlines_s: tuple[float, ...] = PAPER_DEADLINES_S
    plots: list[plots.Plot] = field(default_factory=list)

    def terminal(self) -> str:
        return "\n\n".join(t.render(markdown=False) for t in self.tables)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def build_report(runs: Sequence[SavedRun], deadlines_s: Iterable[float] = ()) -> Report:
    rows = merged_rows(runs)
    bests = best_batches(rows, capacities(runs))
    front = pareto_front(bests)
    deadlines = tuple(sorted({float(d) for d in (*PAPER_DEADLINES_S, *deadlines_s)}))
    tables = [
        measurements_table(rows),
        best_batch_table(bests),
        accuracy_table(rows),
        deadline_table(deadline_choices(bests, deadlines, {r.profile for r in rows})),
        pareto_table(front),
        *stream_tables(runs),
        *gpu_tables(runs),
        *pipeline_tables(runs),
        *time_tables(runs),
    ]
    return Report(sources=list(runs), rows=rows, bests=bests, front=front, tables=tables, deadlines_s=deadlines)


def draw(report: Report, out_dir: Path) -> list[plots.Plot]:
    rows, bests, front, deadlines = report.rows, report.bests, report.front, report.deadlines_s
    caps = memory_caps(report.sources)
    figs: list[plots.Plot] = []
    for profile in sorted({r.profile for r in rows}):
        figs.append(plots.by_batch(rows, profile, out_dir, "time", deadlines_s=deadlines))
        figs.append(plots.by_batch(rows, profile, out_dir, "memory", caps=caps.get(profile, ())))
    if bests:
        figs.append(plots.best_time_vs_memory(bests, out_dir, caps, deadlines))
        figs.append(plots.time_by_map_group(bests, out_dir, deadlines))
        figs.append(plots.pareto(bests, front, out_dir, deadlines))
    figs.extend(stream_plots(report.sources, out_dir))
    figs.extend(gpu_plots(report.sources, out_dir))
    report.plots = figs
    return figs


# The paper's figures that a plot reproduces: per-device figures by the device profile that measured them.
PAPER_FIGURES = {
    (plots.TIME_VS_BATCH, "p100"): "Fig. 3",
    (plots.TIME_VS_BATCH, "v100_pcie"): "Fig. 4a",
    (plots.TIME_VS_BATCH, "v100_sxm2"): "Fig. 4b",
    (plots.TIME_VS_BATCH, "cpu"): "Fig. 5",
    (plots.TIME_VS_BATCH, "tx2"): "Fig. 6",
    (plots.MEMORY_VS_BATCH, "p100"): "Fig. 7a",
    (plots.MEMORY_VS_BATCH, "v100_pcie"): "Fig. 7b",
    (plots.BEST_TIME_VS_MEMORY, None): "Fig. 8",
    (plots.TIME_BY_MAP_GROUP, None): "Fig. 10",
}
# What the paper shows where a per-device plot is of a device it did not measure (or memory it left out).
PAPER_KINDS = {plots.TIME_VS_BATCH: "Figs. 3-6", plots.MEMORY_VS_BATCH: "Figs. 7a-b"}


def heading(plot: plots.Plot) -> str:
    """A figure's heading: led by the paper's figure it reproduces, else saying which of the paper's figures
    it is drawn as where the paper shows no such device."""
    fig = PAPER_FIGURES.get((plot.kind, plot.profile))
    if fig:
        return f"{fig}: {plot.title}"
    if plot.kind in PAPER_KINDS:
        return f"{plot.title} (drawn as the paper's {PAPER_KINDS[plot.kind]}, which show no such device)"
    return plot.title


def _figure_section(plot: plots.Plot) -> str:
    caption = f"\n\n{plot.caption}" if plot.caption else ""
    return f"### {heading(plot)}\n\n![{plot.title}]({plot.path.name}){caption}"


def _rel(path: Path, out: Path) -> str:
    return Path(relpath(path.resolve(), out.resolve())).as_posix()


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write tables.md, the figures and index.md into out_dir; returns index.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    draw(report, out)
    (out / "tables.md").write_text("# odperf tables\n\n" + "\n".join(t.render() for t in report.tables))
    sources = "\n".join(
        f"- `{r.profile}`: `{_rel(r.path, out)}`"
        f" ({r.datetime or 'no date'}, {len(r.records)} measurements"
        + (f", schema {r.schema} read migrated" if r.schema < SCHEMA_VERSION else "")
        + "".join(f"; same run also in `{_rel(a, out)}`, read once" for a in r.also_saved_as) + ")"
        for r in report.sources
    )
    replaced = superseded(report.sources)
    if replaced:
        sources += (f"\n\n{replaced} measurement(s) of earlier runs are replaced by a later run's record of the "
                    f"same device, model, batch size and kind.")
    figures = "\n\n".join(_figure_section(p) for p in report.plots)
    index = (
        "# odperf report\n\n"
        f"Devices: {', '.join(sorted({r.profile for r in report.sources}))}. "
        "All tables also in [tables.md](tables.md).\n\n"
        f"Runs read:\n\n{sources}\n\n"
        + "\n".join(t.render() for t in report.tables)
        + "\n## Figures\n\nFigures named Fig. N reproduce that figure of the paper on the devices measured here. "
        "Only measurements are drawn as points and lines; limits are labelled dashed or dotted lines.\n\n"
        + figures + "\n"
    )
    path = out / "index.md"
    path.write_text(index)
    return path
