"""``odperf bench``: the main job. Runs the benchmark suite (pytest + pytest-benchmark) and saves its JSON.

The main job measures every embedded model at every paper batch size on this machine's devices. A full
car is 95 camera images; on a 2-core CPU that would take hours for the two-stage model, so the main job
times MAIN_IMAGES images per case by default (the paper's mean over a car, estimated from fewer rounds;
``--images 95`` for the whole car). ``--smoke`` is the variant CI runs: two images at batch 1 and 64.
Both write a JSON file that is then read back and checked, so an empty run never passes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from odperf.errors import OdperfError
from odperf.results import load_run
from odperf.zoo.registry import fixtures_dir
from odperf.workload import IMAGES_PER_CAR, PAPER_BATCH_SIZES, PAPER_GRID, batch_bounds

MAIN_IMAGES = 8
SMOKE_IMAGES = 2
SMOKE_BATCHES = "1,64"


def summarise_car(images: int = IMAGES_PER_CAR) -> str:
    g = PAPER_GRID
    lines = [f"car: {images} camera images; {g.describe()}"]
    for b in PAPER_BATCH_SIZES:
        calls = len(batch_bounds(g.tiles_per_image, b))
        lines.append(f"  batch {b:>2}: {calls:>2} model calls per image, {calls * images:>5} per car")
    return "\n".join(lines)


def repo_root() -> Path:
    return fixtures_dir().parent


def pytest_command(args: argparse.Namespace, json_path: Path) -> list[str]:
    root = repo_root()
    images = SMOKE_IMAGES if args.smoke and args.images is None else (args.images or MAIN_IMAGES)
    cmd = [
        sys.executable, "-m", "pytest", str(root / "benchmarks" / "test_inference.py"),
        "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "--rootdir", str(root),
        f"--odperf-models={args.models}",
        f"--odperf-devices={args.devices}",
        f"--odperf-images={images}",
        f"--odperf-batch-sizes={SMOKE_BATCHES if args.smoke and not args.batch_sizes else args.batch_sizes or 'paper'}",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=mean,median,max,rounds",
        "--benchmark-sort=name",
    ]
    if not args.smoke:
        cmd.append(f"--benchmark-save={args.name}")
    if args.accuracy:
        cmd.append("--odperf-accuracy")
    return cmd + list(args.pytest_args)


def run(args: argparse.Namespace) -> int:
    root = repo_root()
    json_path = Path(args.json) if args.json else root / ".benchmarks" / f"{'smoke' if args.smoke else args.name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if json_path.exists():
        json_path.unlink()  # never gate on a file left by an earlier run
    print(summarise_car(), flush=True)
    cmd = pytest_command(args, json_path)
    print("odperf bench: " + " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=root)
    try:
        saved = load_run(json_path)
    except OdperfError as exc:
        print(f"odperf bench: {exc}", file=sys.stderr)
        return code or 1
    ok = sum(r.outcome == "ok" for r in saved.records)
    print(f"odperf bench: {json_path}: {len(saved.records)} measurement(s), {ok} ok, profile {saved.profile}")
    if code == 0 and args.report and not args.smoke:
        from odperf.cli import main as odperf_main  # noqa: PLC0415

        code = odperf_main(["report", str(json_path), "--out", str(root / "reports" / args.name)])
    return code


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
    p.add_argument("--images", type=int, default=None, help=f"images timed per case (default {MAIN_IMAGES})")
    p.add_argument("--accuracy", action="store_true", help="compute mAP from the timed images too")
    p.add_argument("--name", default="main", help="name of the saved run (default main)")
    p.add_argument("--json", default=None, help="where to write the JSON (default .benchmarks/NAME.json)")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not render reports/NAME")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest (after --)")
    p.set_defaults(func=run)
