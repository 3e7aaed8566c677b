"""``odperf device``: the device profiles this machine has, as results will name them."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from odperf.measure.devices import load_table
from odperf.measure.kinds import detect_profiles, none_found


def cmd_device(args: argparse.Namespace) -> int:
    table = load_table(args.table) if args.table else None
    profiles = detect_profiles(table)
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return 0
    rows = [
        [p.name, p.kind, p.device, p.display_name, f"{p.memory_mb / 1000:.1f}", ",".join(p.markers),
         p.cores or "", p.driver or "", p.cuda or "", p.compute_capability or ""]
        for p in profiles
    ]
    headers = ["profile", "kind", "device", "name", "memory GB", "markers", "cores", "driver", "cuda", "cc"]
    print(tabulate(rows, headers=headers))
    if not any(p.kind != "cpu" for p in profiles):
        print(f"\n{none_found()}: runs measure the CPU")
    boards = (table or load_table()).boards
    if boards:  # named, not reached: --odperf-board NAME asks the board itself before any case
        print("\nBoards named in the device table (--odperf-board NAME):")
        print(tabulate([[b.name, b.profile or "(names itself)", b.url, b.description or "", b.table] for b in boards],
                       headers=["name", "profile", "url", "description", "table"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("device", help="show the device profiles detected on this machine")
    p.add_argument("--json", action="store_true", help="print the profiles as JSON")
    p.add_argument("--table", help="device table to match against (default: fixtures/devices.toml, under the "
                   "site's own table that ODPERF_DEVICES names)")
    p.set_defaults(func=cmd_device)
