"""``odperf bench``: the main job. Runs the benchmark suite (pytest + pytest-benchmark) and saves its JSON.

The main job measures every embedded model at every paper batch size on this machine's devices, then
runs batches 1, 8 and 64 again on an emulated small device (``cpu_400mb``: the worker's memory capped
at 400 MB above the TensorFlow runtime; EMULATED_IMAGES images per case, unscored: its question is what
fits and in how much memory), where every embedded detector must fit at batch 8 and run out
of memory at batch 64, as large batches stop fitting smaller cards in the paper. A car is 95 camera images; the
main job times up to MAIN_IMAGES images per case, stopping once the mean per image is within +/-3% (the
mean per image over a car, estimated from fewer rounds; ``--images N`` fixes the count, ``--images 95`` a
whole car). At its end it prints where its time went, pass by pass (odperf.measure.breakdown), and its
overhead ratio, wall time / (timed inference + deployment). ``--smoke`` is the
variant CI runs: two images at batch 1 and 64, and batches 8 and 64 on the emulated device. Then the
streaming pass (benchmarks/test_stream.py): every embedded model at batch STREAM_BATCH through LoadGen's
scenarios, the line and the peak search, with the ``quick`` budget (``--stream-budget``; the smoke run: the
``smoke`` budget at batch 64). Every pass writes a JSON file that is read back and checked, so a run that
measured nothing never passes.

Stopping it (SIGTERM from a CI cancel or ``timeout``, SIGINT, SIGHUP) stops pytest the way Ctrl-C does, so
that the JSON of the cases that finished is still written, then ends every process of the run
(``odperf.util.supervise``); the exit code is 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from odperf.errors import OdperfError
from odperf.measure.breakdown import job_lines
from odperf.measure.scorers import DEFAULT_SCORER, SCORERS
from odperf.util.package_data import benchmarks_dir
from odperf.report.cli import report_runs
from odperf.results import OUTCOMES, load_run
from odperf.scaleout import add_options
from odperf.util.supervise import run_child
from odperf.workload import IMAGES_PER_CAR, PAPER_BATCH_SIZES, PAPER_GRID, batch_bounds

MAIN_IMAGES = 10
SMOKE_IMAGES = 2
EMULATED_IMAGES = 2  # the emulated pass: does it fit, and its memory
EMULATED = "cpu_400mb:400"
STREAM_BATCH = "8"  # near the best batch of every embedded model on the reference CPU
PASS_WALLS: dict[str, float] = {}  # each pass's wall time as the job saw it, Python's and pytest's start included


@dataclass(frozen=True)
class Pass:
    """One pytest run of the suite: its saved name, batch sizes and extra options."""

    name: str
    batch_sizes: str
    options: tuple[str, ...] = ()
    suite: str = "test_inference.py"  # the benchmark file it runs
    images: int | None = None  # a fixed count of images per case for this pass (None: the run's)
    accuracy: bool = True  # scored with --odperf-accuracy when the run scores


def passes(args: argparse.Namespace) -> list[Pass]:
    if args.smoke:
        smoke = [Pass("smoke", args.batch_sizes or "1,64"), Pass("smoke-cpu_400mb", "8,64", (f"--odperf-emulate={EMULATED}",))]
        if args.stream:
            smoke.append(Pass("smoke-stream", "64", ("--odperf-stream-budget=smoke",), "test_stream.py"))
        return smoke
    main = [Pass(args.name, args.batch_sizes or "paper")]
    if args.emulate and args.devices in ("all", "cpu"):
        # its question is whether each batch fits and in how much memory: the peak is reached by the warm-up
        # and the first images, and the detections (hence the mAP) are the timing pass's
        main.append(Pass(f"{args.name}-cpu_400mb", "1,8,64", (f"--odperf-emulate={EMULATED}",),
                         images=args.images or EMULATED_IMAGES, accuracy=False))
    if args.stream:
        main.append(Pass(f"{args.name}-stream", args.stream_batch_sizes,
                         (f"--odperf-stream-budget={args.stream_budget}",), "test_stream.py"))
    return main


def summarise_car(images: int = IMAGES_PER_CAR) -> str:
    g = PAPER_GRID
    lines = [f"car: {images} camera images; {g.describe()}"]
    for b in PAPER_BATCH_SIZES:
        calls = len(batch_bounds(g.tiles_per_image, b))
        lines.append(f"  batch {b:>2}: {calls:>2} model calls per image, {calls * images:>5} per car")
    return "\n".join(lines)


def child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child pytest run: without what a pytest-xdist worker hands down
    (PYTEST_XDIST_*, with which pytest-benchmark switches itself off and odperf refuses timing)."""
    return {k: v for k, v in (os.environ if environ is None else environ).items()
            if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST"}


def pytest_command(args: argparse.Namespace, run: Pass, json_path: Path, save: bool = True,
                   root: Path | None = None, python: str = sys.executable) -> list[str]:
    """The suite shipped with odperf (the files ``pytest --pyargs odperf.benchmarks`` runs), from the
    current directory; the plugin is named so that a source tree on PYTHONPATH runs the same way.
    ``save``: also keep a copy in the storage folder (--benchmark-save); ``root`` and ``python``: the suite
    of another source tree, with another environment (``odperf ab``)."""
    images = run.images or args.images or (SMOKE_IMAGES if args.smoke else None)
    # without --images the run chooses each case's images, up to MAIN_IMAGES (odperf.measure.sampling)
    count = f"--odperf-images={images}" if images else f"--odperf-max-images={MAIN_IMAGES}"
    suite = root / "benchmarks" if root is not None else benchmarks_dir()
    cmd = [
        python, "-m", "pytest", str(suite / run.suite),
        "-p", "odperf.pytest_plugin", "-p", "no:xdist", "-p", "no:cacheprovider",
        f"--odperf-models={args.models}",
        f"--odperf-devices={args.devices}",
        count,
        f"--odperf-batch-sizes={run.batch_sizes}",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=mean,median,max,rounds",
        "--benchmark-sort=name",
        "--benchmark-disable-gc",  # the worker times with GC off too: neither clock counts a collection
        *run.options,
    ]
    if save and not args.smoke:
        cmd.append(f"--benchmark-save={run.name}")
    if args.accuracy and run.accuracy and not args.smoke and run.suite == "test_inference.py":
        cmd += ["--odperf-accuracy", f"--odperf-scorer={args.scorer}"]
    return cmd + [a for a in args.pytest_args if a != "--"]


def run_pass(args: argparse.Namespace, run: Pass, out_dir: Path) -> tuple[int, Path | None, bool]:
    """Run one pass; returns its exit code, the JSON it saved (if any), and whether a signal stopped it."""
    json_path = out_dir / f"{run.name}.json"
    if json_path.exists():
        json_path.unlink()  # never read back a file left by an earlier run
    cmd = pytest_command(args, run, json_path)
    print("odperf bench: " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    child = run_child(cmd, name="pytest")
    PASS_WALLS[run.name] = time.monotonic() - t0
    for line in child.leftovers:
        print(f"odperf bench: killed a process the run left behind: {line}", file=sys.stderr)
    if child.interrupted:
        name = signal.Signals(child.stopped_by).name
        how = "killed after its grace period" if child.killed else f"exit code {child.returncode}"
        print(f"odperf bench: {run.name}: stopped by {name} (pytest: {how}); no further pass is run",
              file=sys.stderr)
        code = 128 + int(child.stopped_by)
    else:  # a pytest killed by a signal exits as a shell would report it
        code = child.returncode if child.returncode >= 0 else 128 - child.returncode
    try:
        saved = load_run(json_path)
    except OdperfError as exc:
        print(f"odperf bench: {run.name}: {exc}", file=sys.stderr)
        return code or 1, None, child.interrupted
    counts = {o: sum(r.outcome == o for r in saved.records) for o in OUTCOMES}
    summary = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    print(f"odperf bench: {json_path}: {len(saved.records)} measurement(s) ({summary}), profile {saved.profile}")
    return code, json_path, child.interrupted


def cmd_bench(args: argparse.Namespace) -> int:
    if args.ray:
        from odperf.scaleout.driver import run_cluster  # noqa: PLC0415 (Ray only when asked for)

        return run_cluster(args)
    t_job = time.monotonic()
    out_dir = Path(args.out_dir or ".benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(summarise_car(), flush=True)
    if args.stream and importlib.util.find_spec("mlperf_loadgen") is None:
        args.stream = False  # said, not failed: the timing and memory passes need no LoadGen
        print("odperf bench: the streaming pass is skipped: MLPerf LoadGen is not installed "
              "(pip install 'odperf[stream]'; --no-stream silences this)", flush=True)
    worst, written, ran = 0, [], []
    for p in passes(args):
        code, path, stopped = run_pass(args, p, out_dir)
        worst = worst or code
        ran.append((p.name, path, PASS_WALLS.get(p.name, 0.0)))
        if path is not None:
            written.append(str(path))
        if stopped:
            return code  # stopped: what was saved stays saved, nothing more is measured or rendered
    if written and args.report and not args.smoke:
        try:
            report_code = report_runs(written, Path("reports") / args.name)
        except OdperfError as exc:
            print(f"odperf report: error: {exc}", file=sys.stderr)
            report_code = 2
        worst = worst or report_code
    for line in job_lines(ran, time.monotonic() - t_job):
        print(f"odperf bench: {line}", flush=True)
    return worst


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite (the main job) and save its JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="the small variant CI runs")
    p.add_argument("--models", default="embedded", help="model selectors (default: embedded)")
    p.add_argument("--devices", default="all", help="cpu, gpu, gpu:N or all (default)")
    p.add_argument("--batch-sizes", default=None, help="default: the paper's 1..64 (smoke: 1,64)")
    p.add_argument("--images", type=int, default=None, help=f"images timed per case (default: chosen by the run, 3 to {MAIN_IMAGES})")
    p.add_argument("--no-accuracy", dest="accuracy", action="store_false",
                   help="skip COCO mAP of the timed images (on by default; the smoke run never scores)")
    p.add_argument("--scorer", default=DEFAULT_SCORER, choices=SCORERS,
                   help=f"COCO scorer for mAP (default {DEFAULT_SCORER}; pycocotools is the paper's reference)")
    p.add_argument("--no-emulate", dest="emulate", action="store_false",
                   help=f"skip the pass on the emulated small device ({EMULATED})")
    p.add_argument("--no-stream", dest="stream", action="store_false",
                   help="skip the streaming pass (benchmarks/test_stream.py, MLPerf LoadGen)")
    p.add_argument("--stream-budget", default="quick",
                   help="LoadGen run lengths of the streaming pass: quick (default), smoke, mlperf (MLPerf's own)")
    p.add_argument("--stream-batch-sizes", default=STREAM_BATCH,
                   help=f"batch sizes of the streaming pass (default {STREAM_BATCH})")
    p.add_argument("--name", default="main", help="name of the saved run (default main)")
    p.add_argument("--out-dir", default=None, help="where the JSON files go (default .benchmarks/ of the current directory)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not render reports/NAME (of the current directory)")
    add_options(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest (after --)")
    p.set_defaults(func=cmd_bench)
