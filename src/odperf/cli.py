"""The ``odperf`` command. Each area of the library adds its own sub-commands through ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from odperf.errors import OdperfError

# Modules that define ``register(subparsers)``; each sub-command sets ``func(args) -> int``.
COMMAND_MODULES = (
    "odperf.bench",
    "odperf.ab",
    "odperf.zoo.cli",
    "odperf.datasets.cli",
    "odperf.measure.cli",
    "odperf.report.cli",
    "odperf.validate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odperf",
        description="Benchmark object detectors on a stream of tiled high-definition camera images.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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
