"""Where each saved run's wall time went, from the breakdown the run measured itself (``odperf.measure.breakdown``,
the ``time_breakdown`` of its JSON): one row per run, and the runs together, so a report says what its figures
cost to take and how much of that was measurement (the overhead ratio)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from odperf.measure.breakdown import STEPS, TimeBreakdown
from odperf.report.tables import Table
from odperf.results import SavedRun

TOTAL = "all these runs"
HEADERS = ["cases", "wall s", *(f"{k} s" for k in STEPS), "overhead ratio"]
FLOATFMT = ["", ".1f", *(".1f" for _ in STEPS), ".2f"]


def _row(name: str, b: TimeBreakdown) -> list[object]:
    ratio = b.overhead_ratio
    return [name, b.cases, b.wall_s, *(b.seconds[k] for k in STEPS), ratio]


def time_tables(runs: Sequence[SavedRun]) -> list[Table]:
    """The table of the runs that saved a breakdown (none if no run did: older runs, or a run stopped early)."""
    timed = [(r.path.stem, TimeBreakdown.from_dict(r.time_breakdown)) for r in runs if r.time_breakdown]
    if not timed:
        return []
    rows = [_row(name, b) for name, b in timed]
    if len(timed) > 1:
        rows.append(_row(TOTAL, TimeBreakdown.total(b for _, b in timed)))
    return [Table(
        name="time_spent",
        title="Where each run's time went",
        headers=["run", *HEADERS],
        rows=rows,
        floatfmt=["", *FLOATFMT],
        note="Seconds of each run's own wall time (its pytest session, from the start of its Python to its JSON "
             "written), as the run measured them; the overhead ratio is wall / (timed inference + deployment "
             "with its warm-up + LoadGen's runs), 1.0 for a run that did nothing but measure.",
    )]


def job_table(parts: Sequence[tuple[str, TimeBreakdown]], job: str) -> Table:
    """A whole job's passes and their total (``measure.breakdown.job_breakdowns``), as the job saw them."""
    return Table(
        name="job_time",
        title=f"Where the {job} job's time went",
        headers=["pass", *HEADERS],
        rows=[_row(name, b) for name, b in parts],
        floatfmt=["", *FLOATFMT],
        note="Seconds of the job's wall time, measured by the job: each pass from starting its Python to its JSON "
             "written (starting Python and pytest is bookkeeping), and the whole job from its start to its "
             "report rendered (rendering is bookkeeping).",
    )


def write_job_table(parts: Sequence[tuple[str, TimeBreakdown]], job: str, path: str | Path) -> Path:
    """``job_table`` as a Markdown file (the README's excerpts read it like a report's tables)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# odperf: the {job} job's time\n\n" + job_table(parts, job).render(), encoding="utf-8")
    return out
