"""Running the real benchmark suite as users do: `python -m pytest benchmarks ...` in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from odperf.suite.launch import child_env

ROOT = Path(__file__).resolve().parents[1]


def suite_env(env: dict | None = None) -> dict:
    return {**child_env(), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def run_pytest(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600,
               **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run(pytest_command(*args), cwd=cwd, env=suite_env(env), capture_output=True, text=True,
                          timeout=timeout, **popen)
