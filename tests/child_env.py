"""The environment for a child process a test starts: this checkout's odperf first on the path, and none of
the variables pytest-xdist sets in its workers (a child pytest would take itself for one and save nothing)."""

from __future__ import annotations

import os
from pathlib import Path

import odperf

SRC = str(Path(odperf.__file__).resolve().parents[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_CURRENT_TEST"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**env, **extra}
