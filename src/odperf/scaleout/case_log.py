"""A pytest plugin a shard loads (``-p odperf.scaleout.case_log``): a JSON line per case start and end.

The shard's task reads the file while pytest runs, to say which case runs now, how many are done and how
long they took. It is written by the file named in ``ODPERF_CASE_LOG``; without it the plugin does nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

ENV = "ODPERF_CASE_LOG"


def case_id(nodeid: str) -> str:
    """``benchmarks/test_inference.py::test_inference[centernet_tiny-b8-cpu]`` -> ``centernet_tiny-b8-cpu``."""
    return nodeid.partition("[")[2].rstrip("]") or nodeid


def _write(event: dict[str, Any]) -> None:
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**event, "t": time.time()}) + "\n")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _write({"event": "start", "id": case_id(nodeid)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A case ends at its call phase, or at setup when it was skipped or failed there.
    if report.when == "call" or (report.when == "setup" and not report.passed):
        event = {"event": "end", "id": case_id(report.nodeid), "outcome": report.outcome}
        if report.skipped and isinstance(report.longrepr, tuple):
            event["reason"] = str(report.longrepr[2])  # (file, line, message): a missing model's fetch hint
        _write(event)
