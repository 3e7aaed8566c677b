"""``odperf bench``: the main job. Runs the benchmark suite on this machine and saves its JSON."""

from __future__ import annotations

import argparse

from odperf.workload import IMAGES_PER_CAR, PAPER_BATCH_SIZES, PAPER_GRID, batch_bounds


def summarise_car(images: int = IMAGES_PER_CAR) -> str:
    g = PAPER_GRID
    lines = [f"car: {images} camera images; {g.describe()}"]
    for b in PAPER_BATCH_SIZES:
        calls = len(batch_bounds(g.tiles_per_image, b))
        lines.append(f"  batch {b:>2}: {calls:>2} model calls per image, {calls * images:>5} per car")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(summarise_car())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite (the main job) and save its JSON")
    p.add_argument("--smoke", action="store_true", help="the small variant CI runs")
    p.set_defaults(func=run)
