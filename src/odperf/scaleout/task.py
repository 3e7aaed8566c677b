"""What a shard does on its node: the suite's own pytest command (``odperf bench``'s), its saved JSON back.

The task runs in a Ray worker on the node Ray chose. The GPU Ray gave it is in the ``CUDA_VISIBLE_DEVICES``
Ray set, which pytest and its workers inherit: ``gpu:0`` of the shard is that card, and NVML reads that
same card (odperf.measure.visible_gpus). Ray also sets ``OMP_NUM_THREADS`` to the task's CPU count; it is
removed so that each runtime picks its threads as on a machine measured by hand.

pytest dies with the task (its parent-death signal is SIGKILL): a cancelled task or a lost worker leaves
nothing measuring on the node. Progress goes to the driver's board as cases start and end.
"""

from __future__ import annotations

import collections
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odperf.scaleout.case_log import ENV as CASE_LOG_ENV
from odperf.scaleout.shards import Shard, ShardFailed, ShardOptions

POLL_S = 1.0
TAIL_LINES = 30
BOARDS_ENV = "ODPERF_BOARDS"  # on a node next to boards: their --odperf-board values, space-separated


def node_board(profile: str, env: dict[str, str] | None = None) -> str | None:
    """The ``--odperf-board`` value this node drives for ``profile`` (``ODPERF_BOARDS``), None if none.

    A node declares ``odperf:tx2`` and names the board (``tx2=ssh://...``, or a ``[[board]]`` entry's name
    whose profile is tx2): its shards of that profile run
    on the board over SSH (``engine.remote``), as ``pytest -m tx2 --odperf-board ...`` would by hand."""
    import os

    from odperf.measure.board import board_spec

    for given in (env if env is not None else os.environ).get(BOARDS_ENV, "").split():
        spec = board_spec(given)  # a [[board]] entry's name stands for its URL
        name, sep, _ = spec.partition("=")
        if sep and not name.startswith("ssh:") and name.strip().lower() == profile:
            return spec
    return None


@dataclass
class ShardResult:
    """What a shard brought back: its saved JSON (None when every case was skipped), where and when it ran."""

    index: int
    node_id: str
    host: str
    machine_id: str  # pytest-benchmark's storage subfolder on that node
    start: float  # the node's clock: compared only with other shards of the same node
    end: float
    returncode: int
    json_text: str | None
    outcomes: dict[str, str] = field(default_factory=dict)  # case id -> pytest outcome (passed, skipped...)
    skip_reasons: dict[str, str] = field(default_factory=dict)  # case id -> why pytest skipped it

    @property
    def seconds(self) -> float:
        return self.end - self.start


def run_shard(shard: Shard, options: ShardOptions, board: Any = None) -> ShardResult:
    """Run the shard's cases as one pytest session here; raise ShardFailed when it saved nothing."""
    import ray  # noqa: PLC0415 (runs inside a Ray worker)
    from pytest_benchmark.utils import get_machine_id

    from odperf.suite.launch import Selection, SuiteRun, child_env, pytest_command

    start = time.time()
    node_id, host = ray.get_runtime_context().get_node_id(), socket.gethostname()
    folder = Path(tempfile.mkdtemp(prefix="odperf-shard-"))
    try:
        json_path, log_path = folder / "shard.json", folder / "cases.jsonl"
        on_board = node_board(shard.profile.name)
        selection = Selection(shard.model.selector, "cpu" if on_board else shard.profile.devices, options.images,
                              accuracy=options.accuracy, scorer=options.scorer, pytest_args=tuple(options.pytest_args))
        run = SuiteRun(f"shard{shard.index}", ",".join(map(str, shard.batch_sizes)),
                       ((f"--odperf-emulate={shard.profile.emulate}",) if shard.profile.emulate else ())
                       + ((f"--odperf-board={on_board}", "-m", shard.profile.name) if on_board else ()))
        cmd = pytest_command(run, selection, json_path, plugins=("odperf.scaleout.case_log",))
        # Ray's thread count is not the runtime's to take; a node started from inside a pytest-xdist worker
        # hands down PYTEST_XDIST_*, with which pytest-benchmark would switch itself off in the shard's pytest
        env = child_env(drop=("OMP_NUM_THREADS",))
        env[CASE_LOG_ENV] = str(log_path)
        report = _Reporter(board, shard, node_id, host, start)
        report.update(log_path)
        returncode, tail = _run(cmd, env, lambda: report.update(log_path), folder)
        outcomes, reasons = report.update(log_path), report.reasons
        text = json_path.read_text(encoding="utf-8") if json_path.is_file() else None
        if not text and not (outcomes and all(o == "skipped" for o in outcomes.values())):
            raise ShardFailed(f"pytest on {host} saved no results (exit code {returncode}); its last lines:\n"
                              + "\n".join(tail))
        return ShardResult(shard.index, node_id, host, get_machine_id(), start, time.time(), returncode,
                           text or None, outcomes, reasons)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(cmd: list[str], env: dict[str, str], tick: Any, cwd: Path) -> tuple[int, list[str]]:
    """Run pytest to its end in ``cwd``, calling ``tick`` every POLL_S; its exit code and its last lines."""
    from odperf.util.supervise import _PR_SET_PDEATHSIG, _prctl

    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL)))  # noqa: PLW1509
    reader = threading.Thread(target=lambda: tail.extend(line.rstrip() for line in proc.stdout), daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            tick()
            time.sleep(POLL_S)
    except BaseException:  # ray.cancel raises KeyboardInterrupt here: nothing keeps measuring
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    return proc.returncode, list(tail)


class _Reporter:
    """Reads the case log and tells the driver's board where the shard stands."""

    def __init__(self, board: Any, shard: Shard, node_id: str, host: str, start: float) -> None:
        self.board, self.shard = board, shard
        self.base = {"node": f"{host}/{node_id[:8]}", "started": start, "total": len(shard.case_ids())}
        self.last: dict[str, Any] | None = None
        self.reasons: dict[str, str] = {}

    def update(self, log_path: Path) -> dict[str, str]:
        outcomes, durations, current, began = {}, [], None, {}
        lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.is_file() else []
        for line in lines:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:  # the line being written
                continue
            if ev["event"] == "start":
                current, began[ev["id"]] = ev["id"], ev["t"]
            else:
                outcomes[ev["id"]] = ev["outcome"]
                if "reason" in ev:
                    self.reasons[ev["id"]] = ev["reason"]
                durations.append(ev["t"] - began.get(ev["id"], ev["t"]))
                current = None if current == ev["id"] else current
        state = {**self.base, "done": len(outcomes), "current": current, "durations": durations}
        if self.board is not None and state != self.last:
            self.board.update.remote(self.shard.index, state)
            self.last = state
        return outcomes
