"""Rendering saved runs, as functions: the one way ``odperf report`` and ``odperf compare``, ``odperf bench``'s
closing report, a cluster run's reports and the GPU check turn saved JSON into pages."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from odperf.errors import ResultsError
from odperf.report import compare as cmp
from odperf.report.index import build_report, write_report
from odperf.report.rows import latest_named, load_runs
from odperf.results import SavedRun, load_run


def report_runs(paths: Sequence[str], out: str | Path, latest: str | None = None,
                deadlines: Sequence[float] = (), quiet: bool = False) -> int:
    """The report of saved runs (files, storage folders or globs) written into ``out``; prints its tables
    unless ``quiet``, and where it went. Returns the exit code (0)."""
    runs = load_runs(list(paths))
    if latest:
        runs = latest_named(runs, latest)
    report = build_report(runs, tuple(deadlines))
    index = write_report(report, out)
    if not quiet:
        print(report.terminal())
        print()
    print(f"report written: {index} ({len(report.plots)} figures, {len(report.tables)} tables)")
    return 0


def newest(path: str) -> SavedRun:
    """A file, or the newest odperf run in a storage folder."""
    if not Path(path).is_dir():
        return load_run(path)
    return max(load_runs([path]), key=lambda r: (r.datetime or "", r.path.name))


def compare_files(paths: Sequence[str], metric: str = "mean", markdown: str | Path | None = None,
                  csv: str | Path | None = None) -> int:
    """Each later run beside the first (ratios B/A), printed and optionally written as Markdown and CSV."""
    if len(paths) < 2:
        raise ResultsError("compare needs at least two runs: RUN_A RUN_B [RUN_C ...] (each compared with RUN_A)")
    runs = [newest(p) for p in paths]
    comparisons = [cmp.compare_runs(runs[0], other, metric) for other in runs[1:]]
    print("\n\n".join(cmp.render(c) for c in comparisons))
    if markdown:
        md = Path(markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text("# odperf compare\n\n" + "\n".join(cmp.render(c, markdown=True) for c in comparisons))
    if csv:
        cmp.write_csv(comparisons, csv)
    return 0
