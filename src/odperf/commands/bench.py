"""``odperf bench``: the main job. Runs the benchmark suite (pytest + pytest-benchmark) and saves its JSON.

The main job measures every embedded model at every paper batch size on this machine's devices, then
runs batches 1, 8 and 64 again on an emulated small device (``cpu_400mb``: the worker's memory capped
at 400 MB above the TensorFlow runtime; EMULATED_IMAGES images per case, unscored: its question is what
fits and in how much memory), where every embedded detector must fit at batch 8 and run out
of memory at batch 64, as large batches stop fitting smaller cards in the paper. A car is 95 camera images; the
main job times up to MAIN_IMAGES images per case, stopping once the mean per image is within +/-3% (the
mean per image over a car, estimated from fewer rounds; ``--images N`` fixes the count, ``--images 95`` a
whole car). At its end it prints where its time went, pass by pass (odperf.measure.breakdown), and its
overhead ratio, wall time / what it measured (timed inference, deployment, LoadGen runs). ``--smoke`` is the
variant CI runs: two images at batch 1 and 64, and batches 8 and 64 on the emulated device. Then the
streaming pass (benchmarks/test_stream.py): every embedded model at batch STREAM_BATCH through LoadGen's
scenarios, the line and the peak search, with the ``quick`` budget (``--stream-budget``; the smoke run: the
``smoke`` budget at batch 64, one embedded model of each runtime). Every pass writes a JSON file that is
read back and checked, so a run that measured nothing never passes.

Stopping it (SIGTERM from a CI cancel or ``timeout``, SIGINT, SIGHUP) stops pytest the way Ctrl-C does, so
that the JSON of the cases that finished is still written, then ends every process of the run
(``odperf.util.supervise``); the exit code is 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
from pathlib import Path

from odperf.errors import OdperfError
from odperf.measure.breakdown import job_breakdowns, job_lines
from odperf.measure.scorers import DEFAULT_SCORER, SCORERS
from odperf.report.render import report_runs
from odperf.report.time_spent import write_job_table
from odperf.results import OUTCOMES, SavedRun, load_run
from odperf.scaleout import add_options
from odperf.suite.launch import EMULATED, MAIN_IMAGES, STREAMS, Selection, SuiteRun, pytest_command
from odperf.util.supervise import run_child
from odperf.workload import IMAGES_PER_CAR, PAPER_BATCH_SIZES, PAPER_GRID, batch_bounds

SMOKE_IMAGES = 2
EMULATED_IMAGES = 2  # the emulated pass: does it fit, and its memory
SMOKE_STREAM_MODELS = "centernet_tiny,fcos_tiny_torch"  # the smoke run's streams: the smallest of each runtime
STREAM_BATCH = "8"  # near the best batch of every embedded model on the reference CPU
JOB_TIME = "job-time.md"  # beside the report: where the whole job's time went, pass by pass
PASS_WALLS: dict[str, float] = {}  # each pass's wall time as the job saw it, Python's and pytest's start included


def passes(args: argparse.Namespace) -> list[SuiteRun]:
    if args.smoke:
        smoke = [SuiteRun("smoke", args.batch_sizes or "1,64"), SuiteRun("smoke-cpu_400mb", "8,64", (f"--odperf-emulate={EMULATED}",))]
        if args.stream:
            # the streaming path is one for every model: one model of each runtime proves it end to end
            models = SMOKE_STREAM_MODELS if args.models == "embedded" else None
            smoke.append(SuiteRun("smoke-stream", "64", ("--odperf-stream-budget=smoke",), STREAMS, models=models))
        return smoke
    main = [SuiteRun(args.name, args.batch_sizes or "paper")]
    if args.emulate and args.devices in ("all", "cpu"):
        # its question is whether each batch fits and in how much memory: the peak is reached by the warm-up
        # and the first images, and the detections (hence the mAP) are the timing pass's
        main.append(SuiteRun(f"{args.name}-cpu_400mb", "1,8,64", (f"--odperf-emulate={EMULATED}",),
                             images=args.images or EMULATED_IMAGES, accuracy=False))
    if args.stream:
        main.append(SuiteRun(f"{args.name}-stream", args.stream_batch_sizes,
                         (f"--odperf-stream-budget={args.stream_budget}",), STREAMS))
    return main


def summarise_car(images: int = IMAGES_PER_CAR) -> str:
    g = PAPER_GRID
    lines = [f"car: {images} camera images; {g.describe()}"]
    for b in PAPER_BATCH_SIZES:
        calls = len(batch_bounds(g.tiles_per_image, b))
        lines.append(f"  batch {b:>2}: {calls:>2} model calls per image, {calls * images:>5} per car")
    return "\n".join(lines)


def selection(args: argparse.Namespace) -> Selection:
    """What every pass of this job measures, from ``odperf bench``'s options (the smoke run never scores).
    Without --images the run chooses each case's images, up to MAIN_IMAGES (odperf.measure.sampling)."""
    images = args.images or (SMOKE_IMAGES if args.smoke else None)
    return Selection(args.models, args.devices, images, accuracy=args.accuracy and not args.smoke,
                     scorer=args.scorer, pytest_args=tuple(args.pytest_args), max_images=MAIN_IMAGES)


def run_pass(args: argparse.Namespace, run: SuiteRun, out_dir: Path) -> tuple[int, SavedRun | None, bool]:
    """Run one pass; returns its exit code, the run it saved (read back once; None if none), and whether a
    signal stopped it."""
    json_path = out_dir / f"{run.name}.json"
    if json_path.exists():
        json_path.unlink()  # never read back a file left by an earlier run
    cmd = pytest_command(run, selection(args), json_path, save=not args.smoke)
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
    return code, saved, child.interrupted


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
        code, saved, stopped = run_pass(args, p, out_dir)
        worst = worst or code
        ran.append((p.name, saved.time_breakdown if saved else None, PASS_WALLS.get(p.name, 0.0)))
        if saved is not None:
            written.append(str(saved.path))
        if stopped:
            return code  # stopped: what was saved stays saved, nothing more is measured or rendered
    report_dir = Path("reports") / args.name if written and args.report and not args.smoke else None
    if report_dir:
        try:
            report_code = report_runs(written, report_dir)
        except OdperfError as exc:
            print(f"odperf report: error: {exc}", file=sys.stderr)
            report_code = 2
        worst = worst or report_code
    parts = job_breakdowns(ran, time.monotonic() - t_job)
    for line in job_lines(parts):
        print(f"odperf bench: {line}", flush=True)
    if report_dir:
        print(f"odperf bench: where the time went: {write_job_table(parts, args.name, report_dir / JOB_TIME)}")
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
