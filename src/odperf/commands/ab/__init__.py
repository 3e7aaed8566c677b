"""``odperf ab``: a baseline and a candidate measured interleaved on one machine in one job, then gated.

Runs measured at different times on a shared machine differ by more than any regression worth catching
(load, thermal state, neighbours). Here every pair of slots runs the same pytest selection once for each
side, in the order A B, then B A, then A B ... (each a fresh pytest and fresh workers), so drift and load
fall on both sides alike. The rounds of each side's slots are pooled into one saved run per side
(``<out>/baseline.json``, ``<out>/candidate.json``, readable by ``odperf gate`` and ``odperf report``) and
gated: time by a test over the pairs, one candidate/baseline ratio of medians per pair
(``significance.compare_pairs``: rounds of one run are not independent, pairs are); the model's own
memory and deployment time, one figure per slot, by the same paired test at ``--slot-alpha``; outcomes and
mAP exactly.

A side is a source tree run with a Python: this checkout, or a git ref of it (checked out with ``git
worktree add`` into a temporary folder, removed after), with this or another Python environment (say, a new
TensorFlow against the old), optionally other models (``NAME=PATH`` of another model folder), and optionally
pytest options of its own (``--baseline-args``/``--candidate-args``: say, one board reached over SSH and the
same board's interpreter through local pipes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from odperf.commands.ab.settings import CI_SETTINGS, DEFAULT_SETTINGS, DEPLOY_THRESHOLD
from odperf.commands.ab.sides import measure_sides
from odperf.commands.ab.verdict import gate_slots
from odperf.report import gate as gt


def cmd_ab(args: argparse.Namespace) -> int:
    if args.ci:
        for name, value in CI_SETTINGS.items():
            setattr(args, name, value)
        args.accuracy = args.strict = True
    if getattr(args, "calibrate", None):
        from odperf.commands.ab.calibrate import calibrate  # noqa: PLC0415 (its own mode)

        return calibrate(args)
    slots = measure_sides(args)
    failed = len(gate_slots(slots, args, Path(args.out).resolve()))
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ab", help="a baseline and a candidate measured interleaved on this machine, then gated",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for label in ("baseline", "candidate"):
        here = "this checkout" if label == "candidate" else "none"
        p.add_argument(f"--{label}-ref", metavar="REF", help=f"git ref of this project to run (default: {here})")
        p.add_argument(f"--{label}-python", metavar="PYTHON",
                       help="the Python (environment) to run it with (default: this one)")
        p.add_argument(f"--{label}-models", metavar="SEL", help="its --odperf-models (default: --models)")
        p.add_argument(f"--{label}-args", metavar="ARGS",
                       help="more pytest options for this side only, one shell-quoted string "
                            "(e.g. another --odperf-board; after the options both sides share)")
    p.add_argument("--pairs", type=int, default=DEFAULT_SETTINGS["pairs"],
                   help="A/B pairs of runs, alternating order (default: %(default)s)")
    p.add_argument("--models", default="centernet_tiny", help="model selectors (default: %(default)s)")
    p.add_argument("--batch-sizes", default="1,64", help="tiles per model call (default: %(default)s)")
    p.add_argument("--images", type=int, default=5, help="camera images timed per case (default 5)")
    p.add_argument("--devices", default="cpu", help="cpu, gpu or gpu:N (default: cpu)")
    p.add_argument("--accuracy", action="store_true", help="score the timed images: mAP is gated too")
    p.add_argument("--strict", action="store_true",
                   help="any changed outcome or mAP fails (a change that must not change what is measured)")
    p.add_argument("--time-threshold", type=float, default=DEFAULT_SETTINGS["time_threshold"], metavar="FRACTION",
                   help="largest allowed growth of the median time per image, if significant (default: %(default)s)")
    p.add_argument("--deploy-threshold", type=float, default=DEPLOY_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of deployment time, worker start to warm model (default: "
                        "%(default)s: it includes the runtime's import, which varies more than inference)")
    p.add_argument("--memory-threshold", type=float, default=gt.DEFAULT_MEMORY_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of the model's own memory (default: %(default)s)")
    p.add_argument("--map-tolerance", type=float, default=gt.DEFAULT_MAP_TOLERANCE, metavar="AP",
                   help="mAP drop allowed across runtime versions; exact on one version (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=DEFAULT_SETTINGS["alpha"], metavar="P",
                   help="significance level of the time tests (default: %(default)s)")
    p.add_argument("--slot-alpha", type=float, default=DEFAULT_SETTINGS["slot_alpha"], metavar="P",
                   help="significance level of the figures measured once per slot, deployment time and the "
                        "model's own memory (default: %(default)s: they spread more than the median of rounds)")
    p.add_argument("--out", default=".benchmarks/ab", help="where the slots' and merged runs go (default: %(default)s)")
    p.add_argument("--ci", action="store_true",
                   help="CI's self-gate settings: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                 CI_SETTINGS.items()) + " --accuracy --strict")
    p.add_argument("--calibrate", type=int, default=None, metavar="N",
                   help="instead of one comparison: N A/A comparisons of HEAD and N of HEAD against HEAD with a "
                        "planted slowdown (--planted-delay) in the worker's timed region; prints the false-alarm "
                        "and detection rates under these thresholds and CI's (odperf.commands.ab.calibrate)")
    p.add_argument("--planted-delay", type=float, default=0.25, metavar="FRACTION",
                   help="--calibrate: the planted slowdown, a fraction of each image's time (default 0.25)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to both sides' pytest (after --)")
    p.set_defaults(func=cmd_ab)
