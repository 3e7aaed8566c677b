"""The parent side: spawn a worker per measurement, drive it image by image, survive whatever it does.

A worker runs in its own session (process group) with its own pipes; its stdout/stderr go to a file whose
tail explains a crash. Every step waits at most ``request.timeout_s``; a worker that overruns is killed with
its whole process group. A worker's out-of-memory, crash or hang ends as ``WorkerFailed`` (or, through
``measure``, as the outcome of the returned Measurement); it never takes the caller down. The failure's
first line says why (the exception and its message, or the signal and what the log says about it); the
worker's log follows, labelled. Errors a user can fix (a missing model, a bad dataset, an unwritable
cache) come back as an OdperfError, raised here before any worker starts wherever that can be known.

Files: the worker's log and the detections it hands back for scoring (``engine.detections``) are nameless
files that this side creates: a killed worker or a killed parent leaves nothing behind.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from odperf.engine.detections import DetectionsFile
from odperf.engine.measurement import Deployment, Measurement
from odperf.engine.outcomes import classify_exit, describe_exit, reason_in_log
from odperf.engine.protocol import Channel, ChannelClosed, ChannelTimeout
from odperf.engine.request import MeasureRequest
from odperf.engine.runtime import worker_env
from odperf.errors import DatasetError, OdperfError
from odperf.measure.kinds import external_probes, profile_of, state_reader
from odperf.measure.load import LoadMeter
from odperf.measure.memory import MemorySampler

__all__ = ["MeasureRequest", "WorkerSession", "WorkerFailed", "Measurement", "Deployment", "measure"]

STDERR_TAIL_BYTES = 4000
EXIT_GRACE_S = 10.0


class WorkerFailed(Exception):
    """A worker that ran out of memory, crashed or hung. ``measurement`` holds the figures so far;
    ``message`` is the reason alone (the first line of ``measurement.error``, after the outcome)."""

    def __init__(self, measurement: Measurement, reason: str | None = None) -> None:
        self.measurement = measurement
        self.outcome = measurement.outcome
        self.message = reason or (measurement.error or measurement.outcome).split("\n", 1)[0]
        self.exit_code = measurement.exit_code
        self.exit_signal = measurement.exit_signal
        self.stderr_tail = measurement.stderr_tail
        super().__init__(f"{self.outcome}: {self.message}")


class WorkerSession:
    """One worker process for one MeasureRequest; a context manager that never lets the worker outlive it.

    ``start()`` spawns, loads and warms up; ``prepare(i)`` (untimed, optional) makes image ``i`` ready;
    ``run_image(i)`` times image ``i`` in the worker; ``finish()`` collects figures and scores detections.
    """

    def __init__(self, request: MeasureRequest, python: str = sys.executable,
                 on_image: Callable[[], None] | None = None) -> None:
        self.request = request
        self.python = python
        self.on_image = on_image  # called after each timed camera image (progress)
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.sampler: MemorySampler | None = None
        self.measurement = Measurement(request=request)
        self._log = None
        self._detections: DetectionsFile | None = None  # where the worker saves detections, for scoring here
        self._step = "start (spawn, import, model load, warm-up)"  # what the worker is doing: named on failure
        self._failed: WorkerFailed | None = None
        self._t_spawn = 0.0
        self._load: LoadMeter | None = None  # the machine's CPU use around each timed image
        self.costs = self.measurement.costs  # parent-side seconds per step, for the run's time breakdown

    # --- lifetime -----------------------------------------------------------------------------------
    def __enter__(self) -> "WorkerSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> Deployment:
        """Spawn the worker, load the model and warm it up; raises WorkerFailed on oom/crash/timeout."""
        if self.proc is not None:
            raise RuntimeError("worker session already started")
        r = self.request
        check_dataset(r)
        self.measurement.device_info = _device_info(r)
        self.measurement.emulated = _emulated(r)
        sent = r.to_dict()
        passed: tuple[int, ...] = ()
        if r.keep_detections:
            self._detections = DetectionsFile()
            passed, sent["detections_path"] = (self._detections.fd,), self._detections.path
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        self._log = tempfile.TemporaryFile(prefix="odperf-worker-")
        self._t_spawn = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "odperf.engine.worker",
                 "--read-fd", str(to_worker_r), "--write-fd", str(from_worker_w), "--parent-pid", str(os.getpid())],
                pass_fds=(to_worker_r, from_worker_w, *passed),
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                env=worker_env(r.device), start_new_session=True,
            )
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self.channel = Channel(from_worker_r, to_worker_w)
        t_sampler = time.monotonic()
        self.sampler = MemorySampler(external_probes(r.device, self.proc.pid), r.sample_period_ms,
                                     state=state_reader(r.device)).start()
        self._add_cost("sampler", t_sampler)
        self._load = LoadMeter(self.proc.pid)
        start_timeout = r.start_timeout_s or r.timeout_s
        try:
            self._call({"cmd": "start", "request": sent}, "hello", start_timeout)
            self.sampler.mark_runtime(self._receive("runtime", start_timeout)["t"])
            ready = self._receive("ready", start_timeout)
        finally:
            self.costs["start"] = time.monotonic() - self._t_spawn
        deploy = Deployment(
            spawn_s=ready["t_main"] - self._t_spawn,
            import_s=ready["import_s"],
            load_s=ready["load_s"],
            first_inference_s=ready["first_inference_s"],
            warmup_s=ready["warmup_s"],
            total_s=ready["t_ready"] - self._t_spawn - ready["dataset_s"],
            pid=self.proc.pid,
            batch_mode=ready["batch_mode"],
            model_format=ready["model_format"],
            backend=ready["runtime"]["backend"],
            runtime_version=ready["runtime"]["version"],
            runtime_devices=ready["runtime"]["devices"],
            runtime_settings=ready["runtime"]["settings"],
            untrained=bool(ready.get("untrained")),
            dataset_s=ready["dataset_s"],
        )
        self.measurement.deploy = deploy
        if ready.get("memory_cap") and self.measurement.emulated is not None:
            self.measurement.emulated = {**self.measurement.emulated, **ready["memory_cap"]}
        self.measurement.image_source = r.dataset_root or "embedded synthetic dataset"
        return deploy

    def prepare(self, index: int) -> int:
        """Make camera image ``index`` ready in the worker (decoding is never timed); returns ``index``."""
        self._step = f"preparing camera image {index}"
        t0 = time.monotonic()
        self._call({"cmd": "prepare", "index": index}, "prepared")
        self._add_cost("prepare", t0)
        return index

    def run_image(self, index: int) -> float:
        """Time camera image ``index`` in the worker; returns the worker-timed seconds."""
        self._step = f"camera image {index}"
        if self.sampler is not None:
            self.sampler.mark_timed(start=time.monotonic())  # the GPU's state is summarised from here
        if self._load is not None:
            self._load.begin()  # the kernel's counters, read outside the parent's clock
        t0 = time.perf_counter()
        reply = self._call({"cmd": "run", "index": index}, "ran")
        self.measurement.parent_times_s.append(time.perf_counter() - t0)
        if self._load is not None:
            self._load.end()
        self.measurement.worker_times_s.append(float(reply["seconds"]))
        if reply.get("device_seconds") is not None:  # CUDA events around the model calls (GPU only)
            self.measurement.device_times_s.append(float(reply["device_seconds"]))
        if self.on_image is not None:
            self.on_image()
        return float(reply["seconds"])

    def finish(self) -> Measurement:
        """Allocator figures and accuracy from the worker; memory stats; worker exits.

        Detections that cannot be scored (an AccuracyError: label maps that do not match, no ground
        truth) cost the accuracy only: the times and memory measured stand, the outcome stays ``ok`` and
        ``accuracy_error`` (also the record's ``error``) says why, for the harness to fail the case on."""
        self._step = "finish (allocator figures, detections)"
        if self.sampler is not None:
            self.sampler.mark_timed(end=time.monotonic())
        t0 = time.monotonic()
        reply = self._call({"cmd": "finish"}, "finished")
        m = self.measurement
        m.allocator = reply.get("allocator")
        self._add_cost("finish", t0)
        # Every figure is in (the detections saved, the sampler stopped first): the worker's own exit, its
        # runtime's teardown (about 1 s of TensorFlow a case), measures nothing and is not waited for.
        self._stop_sampler()
        t0 = time.monotonic()
        self._kill()
        self._add_cost("exit", t0)
        m.outcome = "ok"
        if reply.get("detections_path") and self._detections is not None:
            t0 = time.monotonic()
            try:
                m.accuracy = self._detections.score(self.request, reply["timed"])
            except OdperfError as exc:
                m.accuracy_error = f"{type(exc).__name__}: {exc}"
                m.error = f"accuracy: {m.accuracy_error}"
            finally:
                self._release_detections()
                self._add_cost("scoring", t0)
        return m

    def close(self) -> None:
        """Stop the worker (quit, then kill its process group) and release everything; idempotent."""
        if self.proc is not None and self.proc.poll() is None and self.channel is not None:
            try:
                self.channel.send({"cmd": "quit"})
                self.proc.wait(timeout=2.0)
            except (ChannelClosed, subprocess.TimeoutExpired):
                pass
        self._kill()
        self._stop_sampler()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._release_detections()

    def _release_detections(self) -> None:
        if self._detections is not None:
            self._detections.close()
            self._detections = None

    # --- protocol ---------------------------------------------------------------------------------
    def _call(self, message: dict[str, Any], expect: str, timeout: float | None = None) -> dict[str, Any]:
        if self._failed is not None:
            raise self._failed
        if self.channel is None:
            raise RuntimeError("worker session not started (call start() first)")
        try:
            self.channel.send(message)
        except ChannelClosed:
            self._died()
        return self._receive(expect, timeout)

    def _receive(self, expect: str, timeout: float | None = None) -> dict[str, Any]:
        assert self.channel is not None
        timeout = timeout or self.request.timeout_s
        try:
            reply = self.channel.receive(timeout=timeout)
        except ChannelTimeout:
            self._kill()
            self._fail("timeout", f"no answer within {timeout:g} s during {self._step}; worker killed")
        except ChannelClosed:
            self._died()
        if reply.get("event") == "failed":
            self._reap(expect_exit=True)
            if reply["outcome"] == "error":
                self._stop_sampler()
                raise _user_error(reply)
            full = f"{reply['error_type']}: {reply['message']}"
            self._fail(reply["outcome"], reply.get("reason") or full.split("\n", 1)[0], exception=full)
        if reply.get("event") != expect:
            self._kill()
            self._fail("crash", f"protocol error during {self._step}: expected {expect!r}, got {str(reply)[:200]}")
        return reply

    def _died(self) -> None:
        """The worker closed its pipe without a word: the signal or exit code, and what its log says."""
        self._reap(expect_exit=True)
        code = self.proc.returncode if self.proc else None
        tail = self._stderr_tail()
        capped = self.request.memory_limit_mb is not None
        outcome = classify_exit(code, tail, capped, self.request.backend)
        reason = f"worker {describe_exit(code)} during {self._step}"
        if outcome == "oom" and capped and code is not None and code < 0:
            reason += f" under a {self.request.memory_limit_mb} MB memory cap"
        found = reason_in_log(tail)
        self._fail(outcome, f"{reason}: {found}" if found else reason)

    def _fail(self, outcome: str, reason: str, exception: str | None = None) -> None:
        """Record the failure (first line: outcome and reason; then the exception, then the log) and raise."""
        m = self.measurement
        m.outcome = outcome
        code = self.proc.returncode if self.proc else None
        if code is not None:
            m.exit_code, m.exit_signal = (None, -code) if code < 0 else (code, None)
        m.stderr_tail = self._stderr_tail()
        parts = [f"{outcome}: {reason}"]
        if exception and exception.strip() != reason:
            parts.append(f"--- exception ---\n{exception.strip()}")
        if m.stderr_tail:
            parts.append(f"--- worker output (stdout and stderr, last {STDERR_TAIL_BYTES} bytes) ---\n{m.stderr_tail}")
        m.error = "\n".join(parts)
        self._stop_sampler()
        self._failed = WorkerFailed(m, reason)
        raise self._failed

    def _reap(self, expect_exit: bool) -> None:
        if self.proc is None:
            return
        t0 = time.monotonic()
        try:
            self.proc.wait(timeout=EXIT_GRACE_S if expect_exit else 0)
        except subprocess.TimeoutExpired:
            self._kill()
        self._add_cost("exit", t0)
        self._stop_sampler()

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:  # pragma: no cover (uninterruptible sleep)
            pass

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            t0 = time.monotonic()
            self.measurement.memory = self.sampler.stop()
            self.sampler = None
            self._add_cost("sampler", t0)
        if self._load is not None:
            load = self._load.result()
            self.measurement.load = load.to_record() if load else None
            self._load = None

    def _add_cost(self, step: str, since: float) -> None:
        self.costs[step] = self.costs.get(step, 0.0) + time.monotonic() - since

    def _stderr_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, size - STDERR_TAIL_BYTES))
        return self._log.read().decode("utf-8", "replace").strip()


def check_dataset(request: MeasureRequest) -> None:
    """Before a worker starts: the dataset's folder exists, and the embedded one is generated here (once
    per cache), so an unwritable cache is the user's error naming the folder, not a crash of the model."""
    if request.dataset_root is None:
        from odperf.datasets.synthetic import ensure_embedded

        ensure_embedded(n_train=0)  # what the worker opens: the validation split only
    elif not Path(request.dataset_root).is_dir():
        raise DatasetError(
            f"dataset {request.dataset_root}: no such folder; give a COCO-format root holding "
            f"annotations/instances_<split>.json and <split>/"
        )


def measure(request: MeasureRequest, session: WorkerSession | None = None) -> Measurement:
    """The whole run in one call: start, every image (prepared untimed, then timed), finish; in
    ``session`` when given (a board's, ``engine.remote``), else in a local worker.

    Never raises for a worker's failure: the outcome is in the result. Errors a user can fix still raise,
    except detections that cannot be scored: the figures stand, ``accuracy_error`` says why.
    """
    with session or WorkerSession(request) as session:
        try:
            session.start()
            for index in range(request.images):
                session.prepare(index)
                session.run_image(index)
            return session.finish()
        except WorkerFailed as failure:
            return failure.measurement


def _user_error(reply: dict[str, Any]) -> OdperfError:
    """The worker's OdperfError, as its own class where it can be imported."""
    try:
        cls = getattr(importlib.import_module(reply["error_module"]), reply["error_type"])
        if isinstance(cls, type) and issubclass(cls, OdperfError):
            return cls(reply["message"])
    except (ImportError, AttributeError, TypeError):
        pass
    return OdperfError(f"{reply['error_type']}: {reply['message']}")


def _device_info(request: MeasureRequest) -> dict[str, Any]:
    """The device a case ran on, from this process's one detection (``measure.kinds.detected``)."""
    profile = profile_of(request.device)
    info: dict[str, Any] = {"device": request.device}
    if profile is not None:
        info.update(profile=profile.name, name=profile.display_name, memory_mb=profile.memory_mb)
    if request.emulate_profile:
        info["profile"] = request.emulate_profile
        info["emulated_on"] = profile.name if profile else request.device
    return info


def _emulated(request: MeasureRequest) -> dict[str, Any] | None:
    """The memory cap the request carries (the run's targets decided it), for the record; the runtime
    replaces ``how`` with its own account once it has applied the cap."""
    if request.memory_limit_mb is None:
        return None
    from odperf.backends import get_backend
    from odperf.backends.base import HOST_CAP_HOW

    # The runtime's own method, named before it runs: a cap that fails the warm-up never reports back.
    how = get_backend(request.backend).gpu_cap_how if request.is_gpu else HOST_CAP_HOW
    return {"profile": request.emulate_profile, "memory_limit_mb": request.memory_limit_mb, "how": how}
