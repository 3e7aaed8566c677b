"""Calibrate ``odperf ab``: false alarms over A/A comparisons and detections of a planted slowdown.

A/A: both sides are this checkout's HEAD. Planted: the candidate is HEAD plus a delay in the worker's timed
region (a busy wait of DELAY x each image's own time: a 25 % slowdown of the measured path), committed on
a detached temporary tree and never on a branch. Every comparison is one full ``odperf ab`` run with the
given options; its exit code is the verdict. Prints each verdict and the rates, with the command.

    python tools/calibrate_gate.py --runs 10 -- --pairs 4 --batch-sizes 64 --images 8
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = "src/odperf/engine/worker.py"
TIMED = "            seconds = time.perf_counter() - t0\n"
DELAY = 0.25


def git(*cmd: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *cmd], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def planted_commit(delay: float) -> str:
    """A commit of HEAD whose worker spins ``delay`` x each image's time inside the timed region."""
    with tempfile.TemporaryDirectory(prefix="odperf-planted-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), "HEAD")
        try:
            worker = tree / WORKER
            text = worker.read_text()
            if TIMED not in text:
                raise SystemExit(f"{WORKER}: the timed region's end ({TIMED.strip()!r}) moved; update {__file__}")
            spin = (f"            _end = time.perf_counter() + {delay} * (time.perf_counter() - t0)\n"
                    f"            while time.perf_counter() < _end:\n                pass\n")
            worker.write_text(text.replace(TIMED, spin + TIMED))
            git("-c", "user.name=calibration", "-c", "user.email=calibration@localhost", "commit", "-qam",
                f"planted: worker spins {delay:.0%} of each image's time", cwd=tree)
            return git("rev-parse", "HEAD", cwd=tree)
        finally:
            git("worktree", "remove", "--force", str(tree))


def compare(candidate: str, options: list[str], out: Path) -> int:
    cmd = [sys.executable, "-m", "odperf.cli", "ab", "--baseline-ref", "HEAD", "--candidate-ref", candidate,
           "--out", str(out), *options]
    with (out.parent / f"{out.name}.log").open("w") as log:
        return subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="A/A and planted comparisons each (default 10)")
    parser.add_argument("--delay", type=float, default=DELAY, help="planted slowdown (default 0.25)")
    parser.add_argument("--out", default=".benchmarks/calibration", help="logs and runs (default: %(default)s)")
    parser.add_argument("ab_options", nargs=argparse.REMAINDER, help="options of odperf ab (after --)")
    args = parser.parse_args()
    options = [a for a in args.ab_options if a != "--"]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    planted = planted_commit(args.delay)
    alarms = caught = 0
    t0 = time.monotonic()
    for k in range(1, args.runs + 1):
        for kind, candidate in (("aa", "HEAD"), ("planted", planted)):
            code = compare(candidate, options, out / f"{kind}-{k}")
            if code not in (0, 1):
                raise SystemExit(f"odperf ab failed (exit {code}); see {out / f'{kind}-{k}.log'}")
            alarms += kind == "aa" and code == 1
            caught += kind == "planted" and code == 1
            print(f"{kind} {k}: {'FAIL' if code else 'pass'}", flush=True)
    minutes = (time.monotonic() - t0) / 60
    print(f"false alarms: {alarms}/{args.runs} A/A; planted +{args.delay:.0%} caught: {caught}/{args.runs}; "
          f"{minutes:.1f} min; odperf ab {' '.join(options)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
