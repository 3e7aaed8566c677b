"""Files the engine makes: a kill at any moment leaves none behind; a cache it cannot write is the user's error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from child_env import child_env
from odperf.engine import MeasureRequest, WorkerSession
from odperf.errors import DatasetError


# Measures with accuracy on, and holds still once scoring has begun (the worker is gone by then, its
# detections handed over): the moment a kill used to leak a detections file of 26 MB a car.
STALLED_SCORER = """
import sys, time
from pathlib import Path
from odperf.engine import MeasureRequest, measure
from odperf.measure import accuracy

def stalled(*args, **kwargs):
    Path(sys.argv[1]).write_text("scoring")
    time.sleep(600)

accuracy.TiledDetections.evaluate = stalled
measure(MeasureRequest(model=sys.argv[2], batch_size=64, images=2, dataset_root=sys.argv[3],
                       dataset_split="val2017", keep_detections=True))
"""


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, limit_s: float = 600) -> None:
    """Poll until ``condition()``; a guard against hanging (not a timing assertion)."""
    end = time.monotonic() + limit_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended ({proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > end:
            pytest.fail(f"still waiting for {what}")
        time.sleep(0.2)


def test_a_parent_killed_while_scoring_leaves_no_file(engine_models, engine_dataset, tmp_path):
    private = tmp_path / "tmp"
    private.mkdir()
    marker = tmp_path / "scoring"
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLED_SCORER, str(marker), str(engine_models["tiny"]), str(engine_dataset)],
        env=child_env(TMPDIR=str(private)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, "scoring began", proc)
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no finally: only a file without a name is safe
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(private.iterdir()) == []


def test_an_unwritable_cache_is_the_users_error_before_any_worker_starts(tmp_path, monkeypatch):
    # A cache that cannot be made (its parent is a file) and one that exists but refuses writing.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caches = [blocker / "cache"]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        caches.append(locked)
    elif Path("/sys").is_dir():
        caches.append(Path("/sys"))  # a folder even root cannot write in
    for cache in caches:
        monkeypatch.setenv("ODPERF_CACHE", str(cache))
        with WorkerSession(MeasureRequest(model="any-model", batch_size=64, images=1)) as session:
            with pytest.raises(DatasetError) as error:
                session.start()
        message = str(error.value)
        assert f"cannot write the dataset cache {cache} (" in message and "$ODPERF_CACHE" in message
        assert "\n" not in message and session.pid is None  # no worker was spawned


def test_a_missing_dataset_folder_is_the_users_error_before_any_worker_starts(tmp_path):
    req = MeasureRequest(model="any-model", batch_size=64, images=1, dataset_root=str(tmp_path / "nowhere"))
    with WorkerSession(req) as session:
        with pytest.raises(DatasetError, match="nowhere: no such folder"):
            session.start()
        assert session.pid is None
