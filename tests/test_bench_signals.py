"""`odperf bench` stopped by a signal: pytest is stopped the way Ctrl-C stops it, keeps what finished, and no
process of the run (pytest, a worker) outlives it. Real `odperf bench` processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from child_env import child_env



def bench(engine_models, engine_dataset, out: Path, batch_sizes: str, images: int) -> subprocess.Popen:
    env = child_env()
    return subprocess.Popen(
        [sys.executable, "-m", "odperf.cli", "bench", "--models", str(engine_models["tiny"]), "--devices", "cpu",
         "--batch-sizes", batch_sizes, "--images", str(images), "--no-accuracy", "--no-emulate", "--no-report",
         "--out-dir", str(out), "--name", "stopped", "--",
         f"--odperf-dataset={engine_dataset}", "--odperf-split=val2017", f"--benchmark-storage=file://{out}/storage"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


class Watch:
    """Every process of the run seen so far (bench's descendants, workers included), by pid."""

    def __init__(self, root: subprocess.Popen) -> None:
        self.root = root
        self.seen: dict[int, str] = {}
        self.workers: list[int] = []

    def poll(self) -> None:
        try:
            for p in psutil.Process(self.root.pid).children(recursive=True):
                try:
                    cmd = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                self.seen.setdefault(p.pid, cmd)
                if "odperf.engine.worker" in cmd and p.pid not in self.workers:
                    self.workers.append(p.pid)
        except psutil.NoSuchProcess:
            pass

    def until(self, condition, what: str, limit_s: float = 600) -> None:
        """Poll until ``condition()``; a guard against hanging, not a timing assertion."""
        end = time.monotonic() + limit_s
        while not condition():
            self.poll()
            if self.root.poll() is not None:
                pytest.fail(f"odperf bench ended ({self.root.returncode}) before {what}:\n"
                            f"{self.root.stdout.read().decode()[-3000:]}")
            if time.monotonic() > end:
                pytest.fail(f"still waiting for {what}")
            time.sleep(0.1)

    def alive(self) -> list[str]:
        out = []
        for pid, cmd in self.seen.items():
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid} {cmd[:100]}")
            except psutil.NoSuchProcess:
                pass
        return out


def finish(proc: subprocess.Popen, limit_s: float = 600) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"odperf bench did not end after being stopped:\n{output.decode()[-3000:]}")
    return proc.returncode, output.decode()


def test_sigterm_stops_pytest_keeps_the_finished_case_and_leaves_no_process(engine_models, engine_dataset, tmp_path):
    proc = bench(engine_models, engine_dataset, tmp_path, "64,32", images=20)
    watch = Watch(proc)
    try:
        # The first case has finished once the second case's worker is up.
        watch.until(lambda: len(watch.workers) >= 2, "the second case's worker")
        watch.poll()
        os.kill(proc.pid, signal.SIGTERM)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert "stopped by SIGTERM" in output and "killed a process the run left behind" not in output
    assert len(watch.seen) >= 3  # pytest and two workers were seen, and none of them is left
    assert watch.alive() == []
    # pytest, stopped as by Ctrl-C, still wrote the JSON of the case that finished.
    saved = json.loads((tmp_path / "stopped.json").read_text())
    (bench_b64,) = saved["benchmarks"]
    assert bench_b64["name"] == "test_inference[tiny-b64-cpu]" and bench_b64["stats"]["rounds"] == 20
    assert [(r["batch_size"], r["outcome"]) for r in saved["odperf"]["records"]] == [(64, "ok")]


def test_a_killed_bench_takes_pytest_and_its_worker_with_it(engine_models, engine_dataset, tmp_path):
    proc = bench(engine_models, engine_dataset, tmp_path, "64", images=200)
    watch = Watch(proc)
    try:
        watch.until(lambda: watch.workers, "the worker")
        watch.poll()
        os.kill(proc.pid, signal.SIGKILL)  # nothing in bench runs: the kernel's parent-death signals must do it
        proc.wait()
        end = time.monotonic() + 600
        while watch.alive() and time.monotonic() < end:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("pytest" in cmd for cmd in watch.seen.values()) and watch.workers
    assert watch.alive() == []
    # pytest stopped there and then (an orphan would have gone on to time all 200 images and saved them).
    saved = tmp_path / "stopped.json"
    assert not saved.exists() or json.loads(saved.read_text())["benchmarks"] == []


def test_a_killed_pytest_takes_its_worker_with_it(engine_models, engine_dataset, tmp_path):
    proc = bench(engine_models, engine_dataset, tmp_path, "64", images=200)
    watch = Watch(proc)
    try:
        watch.until(lambda: watch.workers, "the worker")
        (pytest_proc,) = psutil.Process(proc.pid).children()
        pytest_proc.kill()
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0 and watch.alive() == []
    # The worker died with pytest by itself: bench found nothing of the run to clean up after it.
    assert "killed a process the run left behind" not in output, output[-3000:]
