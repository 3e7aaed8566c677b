"""A whole report: saved runs in, a folder out with ``tables.md``, the PNG figures and ``index.md`` that shows
them all (tables inline, figures embedded), so one link gives the reader everything."""

from __future__ import annotations

from dataclasses import dataclass, field
from os.path import relpath
from pathlib import Path
from typing import Iterable, Sequence

from odperf.report import plots
from odperf.report.rows import Row, capacities, merged_rows, superseded
from odperf.report.selection import PAPER_DEADLINES_S, Best, best_batches, deadline_choices, pareto_front
from odperf.report.stream import stream_plots, stream_tables
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
    plots: list[plots.Plot] = field(default_factory=list)

    def terminal(self) -> str:
        return "\n\n".join(t.render(markdown=False) for t in self.tables)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def build_report(runs: Sequence[SavedRun], deadlines_s: Iterable[float] = ()) -> Report:
    rows = merged_rows(runs)
    bests = best_batches(rows, capacities(runs))
    front = pareto_front(bests)
    tables = [
        measurements_table(rows),
        best_batch_table(bests),
        accuracy_table(rows),
        deadline_table(deadline_choices(bests, [*PAPER_DEADLINES_S, *deadlines_s], {r.profile for r in rows})),
        pareto_table(front),
        *stream_tables(runs),
    ]
    return Report(sources=list(runs), rows=rows, bests=bests, front=front, tables=tables)


def draw(report: Report, out_dir: Path) -> list[plots.Plot]:
    rows, bests, front = report.rows, report.bests, report.front
    figs: list[plots.Plot] = []
    for profile in sorted({r.profile for r in rows}):
        figs.append(plots.by_batch(rows, profile, out_dir, "time"))
        figs.append(plots.by_batch(rows, profile, out_dir, "memory"))
    if bests:
        figs.append(plots.best_time_vs_memory(bests, out_dir))
        figs.append(plots.time_by_map_group(bests, out_dir))
        figs.append(plots.pareto(bests, front, out_dir))
    figs.extend(stream_plots(report.sources, out_dir))
    report.plots = figs
    return figs


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
    figures = "\n\n".join(f"### {p.title}\n\n![{p.title}]({p.path.name})" for p in report.plots)
    index = (
        "# odperf report\n\n"
        f"Devices: {', '.join(sorted({r.profile for r in report.sources}))}. "
        "All tables also in [tables.md](tables.md).\n\n"
        f"Runs read:\n\n{sources}\n\n"
        + "\n".join(t.render() for t in report.tables)
        + "\n## Figures\n\n" + figures + "\n"
    )
    path = out / "index.md"
    path.write_text(index)
    return path
