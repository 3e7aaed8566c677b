"""The environment for a child process a test starts: this checkout's odperf first on the path, and none of
the variables pytest-xdist sets in its workers (a child pytest would take itself for one and save nothing):
the launcher's own ``child_env``, with this checkout as the source tree."""

from __future__ import annotations

from pathlib import Path

import odperf
from odperf.suite.launch import child_env as launcher_env

ROOT = Path(odperf.__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    return {**launcher_env(source=ROOT), **extra}
