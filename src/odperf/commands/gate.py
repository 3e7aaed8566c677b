"""``odperf gate``: a current run against a baseline run, both saved, judged against the noise between
processes (``report/gate.py``, ``report/gate_noise.py``); ``--calibrate N`` measures that gate's false alarms
and detections on this machine (``commands/gate_calibrate.py``), which runs the suite."""

from __future__ import annotations

import argparse

from odperf.errors import ResultsError
from odperf.report import gate as gt
from odperf.report import gate_noise as gn
from odperf.results import load_run
from odperf.suite.expectations import load as load_expectations


def cmd_gate(args: argparse.Namespace) -> int:
    if args.calibrate is not None:
        from odperf.commands.gate_calibrate import calibrate  # noqa: PLC0415 (its own mode: it runs the suite)

        return calibrate(args)
    if not args.baseline or not args.current:
        raise ResultsError("odperf gate needs --baseline FILE and --current FILE (or --calibrate N)")
    noise = gn.load(args.noise) if args.noise else gn.shipped()
    baseline, current = load_run(args.baseline), load_run(args.current)
    config = gt.GateConfig(
        time_threshold=args.time_threshold,
        memory_threshold=args.memory_threshold,
        map_tolerance=args.map_tolerance,
        time_metrics=tuple(dict.fromkeys(args.time_metric or gt.DEFAULT_TIME_METRICS)),
        floors=load_expectations(args.floors) if args.floors else None,
        allow_profile_change=args.allow_profile_change,
        noise=noise.overridden(args.time_noise, args.memory_noise, current.profile),
        noise_alpha=args.noise_alpha,
        detect=args.detect,
    )
    result = gt.run_gate(baseline, current, config)
    for line in result.times:
        print(line)
    for failure in result.failures:
        print(failure)
    for line in result.undecided:
        print(line)
    if args.verbose:
        for note in result.notes:
            print(f"note: {note}")
    print(f"noise: {config.noise.describe()}")
    print(result.summary())
    return result.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gate", help="fail (exit 1) on a regression of the current run against a baseline",
        description=(gt.__doc__ or "").split("\n\n")[0],
        epilog="Exit 0: pass (one-line summary); 1: regressions, or nothing compared that was asked for (one "
               "line each, with the reason); 2: unusable input (a missing, empty, corrupt, foreign, "
               "newer-schema or self-contradicting results file, e.g. one never written under xdist); 3: "
               "undecided: a time or memory grew beyond its threshold but within the noise between two "
               "processes, which one run per side cannot tell from a regression: run `odperf ab`.",
    )
    p.add_argument("--baseline", metavar="FILE", help="saved JSON of the reference run")
    p.add_argument("--current", metavar="FILE", help="saved JSON of the run under test")
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
    p.add_argument("--allow-profile-change", action="store_true",
                   help="gate runs of different device profiles against each other")
    p.add_argument("-v", "--verbose", action="store_true", help="also print notes (fixed OOMs, new rows)")
    p.add_argument("--noise", metavar="FILE", help="the between-process noise of this machine, written by "
                   "`odperf gate --calibrate N` (default: the one shipped, measured on the reference machine)")
    p.add_argument("--time-noise", type=float, metavar="LOG_SD", help="override the noise file's between-process "
                   "spread of the median time per image (log standard deviation, 0.05 = 5%%)")
    p.add_argument("--memory-noise", type=float, metavar="LOG_SD",
                   help="override its spread of the model's own memory (log standard deviation)")
    p.add_argument("--noise-alpha", type=float, default=gt.DEFAULT_NOISE_ALPHA, metavar="P",
                   help="chance of a false alarm per gate, shared by the figures tested against the noise "
                        "(default: %(default)s)")
    p.add_argument("--detect", type=float, default=gt.gn.DEFAULT_DETECT, metavar="FRACTION",
                   help="a time or memory within its threshold passes only when a growth this large is ruled out "
                        "(95%% bound); else undecided (default: %(default)s)")
    cal = p.add_argument_group("--calibrate N: false alarms and detections of this gate on this machine "
                               "(odperf.commands.gate_calibrate)")
    cal.add_argument("--calibrate", type=int, metavar="N", help="save N rounds of 3 runs (HEAD, HEAD, HEAD with "
                     "a planted slowdown and memory growth), gate each A/A and planted pair, write the rates "
                     "and every verdict to OUT/saved-runs.md and the noise to OUT/saved-runs-noise.json; "
                     "runs already in OUT are reused")
    cal.add_argument("--models", default="centernet_tiny,ssd_fpn", help="(default: %(default)s)")
    cal.add_argument("--batch-sizes", default="1,64", help="(default: %(default)s)")
    cal.add_argument("--images", type=int, default=6, help="camera images timed per case (default: %(default)s)")
    cal.add_argument("--devices", default="cpu", help="(default: %(default)s)")
    cal.add_argument("--accuracy", action="store_true", help="score the timed images: mAP is gated too")
    cal.add_argument("--planted-delay", type=float, default=0.25, metavar="FRACTION",
                     help="the planted slowdown, a fraction of each image's time (default: %(default)s)")
    cal.add_argument("--planted-memory", type=float, default=0.25, metavar="FRACTION",
                     help="the planted memory growth, a fraction of the model's own memory (default: %(default)s)")
    cal.add_argument("--out", default=".benchmarks/gate-calibration", help="(default: %(default)s)")
    p.set_defaults(func=cmd_gate, pytest_args=[])
