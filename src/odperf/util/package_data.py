"""Where the folders odperf ships live: ``fixtures`` (device table, expectations, embedded models) and
``benchmarks`` (the suite).

The repository keeps both at its top level; the wheel maps them into the package (``odperf/fixtures``,
``odperf/benchmarks``; see setup.py). They are looked up beside the imported ``odperf`` package through
importlib.resources, and found at the top of the source tree when odperf runs from a checkout (an editable
install, or ``PYTHONPATH=src``), so the data always comes from the same place as the code.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

SHIPPED = ("fixtures", "benchmarks")


def shipped(name: str) -> Path:
    """The shipped folder ``name`` (one of SHIPPED); ``ODPERF_FIXTURES`` names another fixtures folder."""
    if name not in SHIPPED:
        raise ValueError(f"odperf ships no folder {name!r} (only {', '.join(SHIPPED)})")
    if name == "fixtures" and os.environ.get("ODPERF_FIXTURES"):
        return Path(os.environ["ODPERF_FIXTURES"])
    installed = files("odperf") / name
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[3] / name  # a source tree: src/odperf/util/ -> the repository


def fixtures_dir() -> Path:
    """The fixtures folder: ``devices.toml``, ``expectations.toml`` and ``models/``."""
    return shipped("fixtures")


def benchmarks_dir() -> Path:
    """The benchmark suite (``pytest --pyargs odperf.benchmarks`` runs the same files)."""
    return shipped("benchmarks")


def writable_fixtures() -> Path | None:
    """The fixtures folder where odperf may write (retrained embedded models): a source tree's or the one
    ``ODPERF_FIXTURES`` names; None when it is the installed package's, which a reinstall replaces."""
    folder = fixtures_dir()
    inside_package = folder.resolve().is_relative_to(Path(__file__).resolve().parents[1])
    return None if inside_package and not os.environ.get("ODPERF_FIXTURES") else folder
