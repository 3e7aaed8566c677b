"""A board as a device: the portable worker core (``engine.portable``) run on it over SSH.

The host keeps everything but the worker: it resolves the model (a frozen graph, or an embedded PyTorch
model's weights and builders: ``zoo.board_model``), decodes and resizes the source tiles, and sends the
core's source, the tiles and the model once per case on the SSH session's stdin; the board builds and times
the camera images, keeps detections and samples its own memory (``/proc/meminfo`` every ``sample_period_ms``). Scoring, records and reports stay on the host.

The link: ``ssh`` with the user's own configuration and host keys (odperf never turns host-key checking
off; BatchMode makes an unknown key or a password prompt a failure, not a hang). Its round trip is
measured with pings after deployment and reported apart from the board's image times. A dropped
connection kills the board's worker (it dies with its SSH session: ``portable_board.board_main``).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from odperf.engine import portable, portable_board
from odperf.engine.client import EXIT_GRACE_S, WorkerFailed, WorkerSession, check_dataset
from odperf.engine.measurement import Deployment
from odperf.engine.protocol import Channel
from odperf.measure.board import Board
from odperf.zoo.board_model import BoardModel, board_model  # noqa: F401 (re-exported: what a board loads)
from odperf.measure.memory import MemoryStats, ProbeStats, _downsample

PINGS = 5
# The two sources of the core (``portable``, then ``portable_board``), each as a length line and its bytes,
# read from stdin without buffering past them: the protocol follows on the same stream. Each becomes a
# module of its own name; the board's side starts.
SOURCES = ((portable, "odperf_portable"), (portable_board, "odperf_portable_board"))
BOOTSTRAP = (
    "import os,sys,types\n"
    "def get(n):\n"
    "    s=b''\n"
    "    while len(s)<n:\n"
    "        c=os.read(0,n-len(s))\n"
    "        if not c: sys.exit(0)\n"
    "        s+=c\n"
    "    return s\n"
    "def line():\n"
    "    h=b''\n"
    "    while not h.endswith(b'\\n'): h+=get(1)\n"
    "    return h\n"
    f"for name in {tuple(name for _, name in SOURCES)!r}:\n"
    "    m=types.ModuleType(name);sys.modules[name]=m\n"
    "    exec(compile(get(int(line())),name+'.py','exec'),m.__dict__)\n"
    "sys.exit(m.board_main())\n"
)


def shipped_sources() -> bytes:
    """What the bootstrap reads first: the core's two sources, each after its length."""
    return b"".join(b"%d\n" % len(source) + source
                    for source in (Path(module.__file__).read_bytes() for module, _ in SOURCES))


def worker_command(board: Board, settings: dict[str, Any]) -> list[str]:
    """The ssh command line that starts the worker core's bootstrap with the board's python; ``settings``
    are the memory sampler's (period, meminfo path, tegrastats, jtop)."""
    return board.command(f"exec {shlex.quote(board.python)} -u -c {shlex.quote(BOOTSTRAP)} "
                         f"{shlex.quote(json.dumps(settings))}")


def board_payload(request: Any, model: BoardModel) -> bytes:
    """The case's source tiles (decoded, resized here), their placements and the model's entries, as npz."""
    from odperf.engine.worker import open_camera_set

    grid = request.camera_grid
    camera = open_camera_set(request, grid)
    rows = camera.placements[: request.images * grid.image_tiles]
    sources = sorted({int(s) for s in rows[:, 2]})
    index = {s: i for i, s in enumerate(sources)}
    tiles = np.stack([camera.tile(s) for s in sources]) if sources else np.zeros((0, grid.tile, grid.tile, 3), np.uint8)
    placements = np.array([[int(t), index[int(s)]] for _, t, s in rows], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, tiles=tiles, placements=placements, **model.entries)
    return buffer.getvalue()


def board_memory(samples: dict[str, Any] | None, requested_ms: float, runtime_t: float | None = None) -> MemoryStats | None:
    """The board's raw meminfo samples as MemoryStats (relative to the value before the runtime started)."""
    if not samples:
        return None
    times = np.asarray(samples["times"], dtype=np.float64)
    values = np.asarray(samples["values"], dtype=np.float64).reshape(len(times), -1)
    probes, series = {}, {}
    for j, name in enumerate(samples["probes"]):
        base = float(samples["baselines"][j])
        mb = (values[:, j] - base) / portable.MB
        series[name] = mb
        probes[name] = ProbeStats(name=name, scope="system", peak_mb=float(mb.max()) if len(mb) else None,
                                  mean_mb=float(mb.mean()) if len(mb) else None, baseline_mb=base / portable.MB,
                                  samples=len(mb))
    head = samples["probes"][0]
    also = "; ".join([f"{name} peak {probes[name].peak_mb:.0f} MB" for name in samples["probes"][1:]
                      if probes[name].peak_mb is not None] + ([samples["unanswered"]] if samples.get("unanswered") else []))
    gaps = np.diff(times) * 1000.0
    mark = None if runtime_t is None else runtime_t - float(samples["t0"])
    before = np.flatnonzero(times <= mark) if mark is not None else np.zeros(0, dtype=int)
    duration = float(samples["duration_s"])
    return MemoryStats(
        probe=f"{head} ({samples['path']}: MemTotal - MemFree - Buffers - Cached{'; ' + also if also else ''})",
        peak_mb=probes[head].peak_mb, mean_mb=probes[head].mean_mb, samples=len(times),
        requested_period_ms=requested_ms,
        period_mean_ms=float(gaps.mean()) if len(gaps) else None,
        period_p99_ms=float(np.percentile(gaps, 99)) if len(gaps) else None,
        duration_s=duration, sampler_cpu_fraction=float(samples["cpu_s"]) / duration if duration > 0 else None,
        probes=probes, timeline=_downsample(times, series[head]),
        runtime_mb=float(series[head][before[-1]]) if before.size else None,
    )


def own_channel(proc: subprocess.Popen) -> Channel:
    """The protocol over ``proc``'s stdout and stdin, on copies of their descriptors that the channel alone
    owns and closes; the Popen's own file objects are closed here. Sharing the numbers would close each one
    twice, the second time (when the Popen's files are collected) whatever file had taken that number since:
    another case's memory probe, once."""
    assert proc.stdin is not None and proc.stdout is not None
    channel = Channel(os.dup(proc.stdout.fileno()), os.dup(proc.stdin.fileno()))
    proc.stdout.close()
    proc.stdin.close()
    return channel


class BoardSession(WorkerSession):
    """A WorkerSession whose worker runs on ``board`` over SSH (or, with ``board=None`` and ``python``, in
    a local process of that interpreter: the same code without the link, for comparison)."""

    def __init__(self, request: Any, model: BoardModel, board: Board | None = None, python: str | None = None,
                 on_image: Any = None) -> None:
        super().__init__(request, python=python or (board.python if board else "python3"), on_image=on_image)
        self.board = board
        self.model = model
        self.rtt_s: list[float] = []
        self._runtime_t: float | None = None

    def start(self) -> Deployment:
        if self.proc is not None:
            raise RuntimeError("worker session already started")
        r = self.request
        check_dataset(r)
        self.measurement.device_info = {"device": r.device, "profile": self.board.profile if self.board else None,
                                        "board": self.board.destination if self.board else None}
        payload = board_payload(r, self.model)
        sampling = {"period_ms": r.sample_period_ms, "meminfo": self.board.meminfo if self.board else portable_board.MEMINFO,
                    "tegrastats": self.board.tegrastats if self.board else None,
                    "jtop": (self.board.jtop or True) if self.board else False}
        command = (worker_command(self.board, sampling) if self.board
                   else [self.python, "-u", "-c", BOOTSTRAP, json.dumps(sampling)])
        self._log = tempfile.TemporaryFile(prefix="odperf-board-")
        self._t_spawn = time.monotonic()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     start_new_session=True)
        self.channel = own_channel(self.proc)
        timeout = r.start_timeout_s or r.timeout_s
        try:
            self.channel.write_raw(shipped_sources())  # what the bootstrap reads first
        except portable.ChannelClosed:
            self._died()
        start = {"cmd": "start", "request": r.to_dict()}
        try:
            self.channel.send(start, payload)
        except portable.ChannelClosed:
            self._died()
        hello = self._receive("hello", timeout)
        t_hello = time.monotonic()
        self.measurement.device_info.update(python=hello.get("python"), numpy=hello.get("numpy"), pid=hello["pid"])
        self._runtime_t = float(self._receive("runtime", timeout)["t"])  # the board's clock, as its samples
        ready = self._receive("ready", timeout)
        t_ready = time.monotonic()
        for _ in range(PINGS):
            t0 = time.perf_counter()
            self._call({"cmd": "ping"}, "pong")
            self.rtt_s.append(time.perf_counter() - t0)
        rtt = float(np.median(self.rtt_s))
        self.measurement.device_info["link_rtt_s"] = rtt
        if self.board is not None:
            self.measurement.device_info["name"] = f"{self.board.profile} board at {self.board.destination}"
        # Board and host clocks differ: spans are the board's own, except the start (host: ssh + python + code).
        deploy = Deployment(
            spawn_s=t_hello - self._t_spawn, import_s=ready["import_s"], load_s=ready["load_s"],
            first_inference_s=ready["first_inference_s"], warmup_s=ready["warmup_s"],
            total_s=t_ready - self._t_spawn - ready["dataset_s"], pid=hello["pid"],
            batch_mode=ready["batch_mode"], model_format=ready["model_format"],
            backend=ready["runtime"]["backend"], runtime_version=ready["runtime"]["version"],
            runtime_devices=ready["runtime"]["devices"],
            # the board's side of the record: its interpreter, and the link's round trip (not in any image's time)
            runtime_settings={**ready["runtime"]["settings"], "python": hello.get("python"), "numpy": hello.get("numpy"),
                              "link": self.board.link if self.board else "local pipes", "link_rtt_s": rtt},
            untrained=bool(ready.get("untrained")), dataset_s=ready["dataset_s"],
        )
        self.measurement.deploy = deploy
        if ready.get("memory_cap"):
            self.measurement.emulated = {"profile": r.emulate_profile, "memory_limit_mb": r.memory_limit_mb,
                                         **ready["memory_cap"]}
        self.measurement.image_source = r.dataset_root or "embedded synthetic dataset"
        return deploy

    def finish(self) -> Any:
        self._step = "finish (detections, board memory)"
        reply = self._call({"cmd": "finish"}, "finished")
        m = self.measurement
        self._receive("board_memory")  # the supervisor's, once the worker has exited
        m.allocator = None
        self._reap(expect_exit=True)
        m.outcome = "ok"
        if self.request.keep_detections and "payload" in reply:
            m.accuracy = self._score(reply["payload"], reply["timed"])
        return m

    def _score(self, payload: bytes, timed: list[int]) -> dict[str, Any]:
        from odperf.engine.detections import score_detections
        from odperf.measure.accuracy import TiledDetections

        r = self.request
        detections = TiledDetections(r.camera_grid, model=r.model)
        with np.load(io.BytesIO(payload)) as data:
            keys = sorted({k.rsplit("_", 1)[0] for k in data.files}, key=lambda k: [int(v) for v in k.split("_")])
            for key in keys:
                _, index, batch = (int(v) for v in key.split("_"))
                detections.add(index, batch * r.batch_size, data[f"{key}_boxes"], data[f"{key}_scores"],
                               data[f"{key}_classes"], data[f"{key}_counts"])
        with tempfile.NamedTemporaryFile(prefix="odperf-board-detections-", suffix=".npz") as fh:
            detections.save(fh.name)
            return score_detections(r, fh.name, timed)

    def _receive(self, expect: str, timeout: float | None = None) -> dict[str, Any]:
        assert self.channel is not None
        try:
            reply = self.channel.receive(timeout=timeout or self.request.timeout_s)
        except portable.ChannelTimeout:
            self._kill()
            self._fail("timeout", f"no answer from the board within {timeout or self.request.timeout_s:g} s "
                                  f"during {self._step}; ssh session killed")
        except portable.ChannelClosed:
            self._died()
        if reply.get("event") == "board_memory":
            self.measurement.memory = board_memory(reply["memory"], self.request.sample_period_ms, self._runtime_t)
            if expect != "board_memory":  # the worker ended without a word
                self._died()
        if reply.get("event") == "failed":
            self._board_failed(reply)
        if reply.get("event") != expect:
            self._kill()
            self._fail("crash", f"protocol error during {self._step}: expected {expect!r}, got {str(reply)[:200]}")
        return reply

    def _board_failed(self, reply: dict[str, Any]) -> None:
        from odperf.engine.outcomes import classify_error, reason_from_message

        try:
            self._receive("board_memory", EXIT_GRACE_S)  # the samples up to the failure
        except WorkerFailed:
            self._failed = None
        self._reap(expect_exit=True)
        capped = self.request.memory_limit_mb is not None
        chain = reply.get("chain") or [[reply["error_type"], reply["message"]]]
        ooms = [c for c in chain if classify_error(c[0], c[1], capped, self.model.backend) == "oom"]
        cause = ooms[-1] if ooms else chain[0]
        outcome = "oom" if ooms else "crash"
        reason = reason_from_message(cause[0], cause[1] or cause[0], capped, self.model.backend)
        self._fail(outcome, f"on board: {reason}", exception=f"{reply['error_type']}: {reply['message']}\n{reply['traceback']}")

    def _died(self) -> None:
        """ssh ended without a word from the worker: a lost link (ssh's 255), or how the board's worker ended."""
        self._reap(expect_exit=True)
        code = self.proc.returncode if self.proc else None
        tail = self._stderr_tail()
        where = self.board.destination if self.board else self.python
        if self.board is not None and code == 255:
            self._fail("crash", f"SSH connection to {where} lost during {self._step} (ssh exit 255): "
                                f"{tail.splitlines()[-1] if tail else 'no message'}")
        said = [line for line in tail.splitlines() if line.startswith("odperf-board:")]
        if said:
            from odperf.engine.outcomes import classify_exit

            sig = re.search(r"\((\d+)\)$", said[-1])
            capped = self.request.memory_limit_mb is not None
            outcome = classify_exit(-int(sig.group(1)) if sig else code, tail, capped, self.model.backend)
            cap = f" under a {self.request.memory_limit_mb} MB memory cap" if outcome == "oom" and capped else ""
            self._fail(outcome, f"{said[-1][len('odperf-board: '):]}{cap} on {where} during {self._step}")
        super()._died()

    def _stop_sampler(self) -> None:
        """No host sampler: the board samples its own memory."""
