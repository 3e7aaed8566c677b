"""``odperf report``, ``odperf compare`` and ``odperf gate``: command-line faces of the report package."""

from __future__ import annotations

import argparse

from odperf.suite.expectations import load as load_expectations
from odperf.report import compare as cmp
from odperf.report import gate as gt
from odperf.report.render import compare_files, report_runs
from odperf.results import load_run


def cmd_report(args: argparse.Namespace) -> int:
    return report_runs(args.runs, args.out, latest=args.latest, deadlines=args.deadline or (), quiet=args.quiet)


def cmd_compare(args: argparse.Namespace) -> int:
    return compare_files(args.runs, args.metric, markdown=args.markdown, csv=args.csv)


def cmd_gate(args: argparse.Namespace) -> int:
    config = gt.GateConfig(
        time_threshold=args.time_threshold,
        memory_threshold=args.memory_threshold,
        map_tolerance=args.map_tolerance,
        time_metrics=tuple(dict.fromkeys(args.time_metric or gt.DEFAULT_TIME_METRICS)),
        floors=load_expectations(args.floors) if args.floors else None,
        allow_profile_change=args.allow_profile_change,
        alpha=args.alpha,
    )
    result = gt.run_gate(load_run(args.baseline), load_run(args.current), config)
    for line in result.times:
        print(line)
    for failure in result.failures:
        print(failure)
    if args.verbose:
        for note in result.notes:
            print(f"note: {note}")
    print(result.summary())
    return 0 if result.passed else 1


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

    p = sub.add_parser(
        "gate", help="fail (exit 1) on a regression of the current run against a baseline",
        description=(gt.__doc__ or "").split("\n\n")[0],
        epilog="Exit 0: pass (one-line summary); 1: regressions, or nothing compared that was asked for (one "
               "line each, with the reason); 2: unusable input (a missing, empty, corrupt, foreign, "
               "newer-schema or self-contradicting results file, e.g. one never written under xdist).",
    )
    p.add_argument("--baseline", required=True, metavar="FILE", help="saved JSON of the reference run")
    p.add_argument("--current", required=True, metavar="FILE", help="saved JSON of the run under test")
    p.add_argument("--time-threshold", type=float, default=gt.DEFAULT_TIME_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of time per image (default: %(default)s = +10%%)")
    p.add_argument("--time-metric", choices=("mean", "median"), action="append",
                   help="time statistic(s) gated, repeatable (default: median: robust to one slow round)")
    p.add_argument("--memory-threshold", type=float, default=gt.DEFAULT_MEMORY_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of the model's own memory (its peak less the runtime's; the whole "
                   "peak where a run lacks that figure) (default: %(default)s = +10%%)")
    p.add_argument("--map-tolerance", type=float, default=gt.DEFAULT_MAP_TOLERANCE, metavar="AP",
                   help="largest allowed mAP drop below the baseline, absolute COCO AP (default: %(default)s)")
    p.add_argument("--floors", metavar="TOML", help="an expectations file whose map_floor rules the current "
                   "run's mAP must meet (e.g. fixtures/expectations.toml)")
    p.add_argument("--alpha", type=float, default=gt.sig.DEFAULT_ALPHA, metavar="P",
                   help="significance level of the time test over the rounds (default: %(default)s)")
    p.add_argument("--allow-profile-change", action="store_true",
                   help="gate runs of different device profiles against each other")
    p.add_argument("-v", "--verbose", action="store_true", help="also print notes (fixed OOMs, new rows)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("readme", help="rebuild the README's excerpts of committed reports (odperf.report.readme)")
    p.add_argument("readme", nargs="?", default="README.md", help="the file (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when an excerpt is stale")
    p.set_defaults(func=cmd_readme)
