"""``odperf report``, ``odperf compare`` and ``odperf readme``: command-line faces of the report package
(``odperf gate``, which can also run the suite to calibrate itself, is ``commands/gate.py``)."""

from __future__ import annotations

import argparse

from odperf.report import compare as cmp
from odperf.report.render import compare_files, report_runs


def cmd_report(args: argparse.Namespace) -> int:
    return report_runs(args.runs, args.out, latest=args.latest, deadlines=args.deadline or (), quiet=args.quiet)


def cmd_compare(args: argparse.Namespace) -> int:
    return compare_files(args.runs, args.metric, markdown=args.markdown, csv=args.csv)


def cmd_readme(args: argparse.Namespace) -> int:
    from pathlib import Path

    from odperf.report import readme

    path = Path(args.readme)
    text = path.read_text(encoding="utf-8")
    if args.check:
        stale = readme.stale_blocks(text, path.parent)
        for spec in stale:
            print(f"{path}: stale excerpt ({spec}); run `odperf readme {path}`")
        return 1 if stale else 0
    fresh = readme.update(text, path.parent)
    if fresh != text:
        path.write_text(fresh, encoding="utf-8")
    print(f"{path}: excerpts rebuilt from their reports ({'changed' if fresh != text else 'unchanged'})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, figures and an index page from saved runs")
    p.add_argument("runs", nargs="*", default=[".benchmarks"], metavar="RUNS",
                   help="saved JSON files, --benchmark-storage folders or quoted glob patterns, any devices "
                        "(default: .benchmarks); one run saved twice (--benchmark-json and --benchmark-save) "
                        "is read once")
    p.add_argument("--out", default="reports/latest", help="folder to write into (default: %(default)s)")
    p.add_argument("--deadline", type=float, action="append", metavar="SECONDS",
                   help="a per-image deadline to check besides the paper's 1, 4 and 32 s (repeatable)")
    p.add_argument("--latest", metavar="NAME", help="per device, only the newest run saved as NAME "
                   "(NAME.json or NNNN_NAME.json) among RUNS")
    p.add_argument("--latest-main", dest="latest", action="store_const", const="main",
                   help="same as --latest main: the main job's newest run per device")
    p.add_argument("--quiet", action="store_true", help="do not print the tables")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="runs from different hardware side by side, matched by (model, batch)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="RUN_A RUN_B [...]: files or storage folders "
                   "(a folder gives its newest run); each later run is compared with RUN_A, ratios B/A")
    p.add_argument("--metric", choices=cmp.TIME_METRICS, default="mean",
                   help="time per image compared (default: %(default)s)")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    p.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("readme", help="rebuild the README's excerpts of committed reports (odperf.report.readme)")
    p.add_argument("readme", nargs="?", default="README.md", help="the file (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when an excerpt is stale")
    p.set_defaults(func=cmd_readme)
