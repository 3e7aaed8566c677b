"""The ``odperf`` command. Each area of the library adds its own sub-commands through ``register``.

One convention for every sub-command: its module's ``register(subparsers)`` adds the parser and sets
``func=cmd_<name>``; ``cmd_<name>(args) -> int`` returns the exit code and raises OdperfError for what
a user can fix, which ``main`` prints as one line (exit 2). No command module imports this one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from odperf.commands import ab
from odperf.commands import bench
from odperf.commands import gate
from odperf.commands import validate
from odperf.datasets import cli as datasets_cli
from odperf.errors import OdperfError
from odperf.measure import cli as measure_cli
from odperf.pipeline import cli as pipeline_cli
from odperf.report import cli as report_cli
from odperf.zoo import cli as zoo_cli

COMMAND_MODULES = (bench, ab, zoo_cli, datasets_cli, measure_cli, report_cli, gate, validate, pipeline_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odperf",
        description="Benchmark object detectors on a stream of tiled high-definition camera images.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OdperfError as exc:
        print(f"odperf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odperf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
