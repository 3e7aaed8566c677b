"""The child supervision under `odperf bench`, with real processes and real signals (no TensorFlow)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from child_env import child_env


DRIVER = """
import json, sys
from odperf.util.supervise import run_child
r = run_child([sys.executable, "-c", sys.argv[2], sys.argv[3]], grace_s=float(sys.argv[1]), name="the child")
print(json.dumps({"returncode": r.returncode, "stopped_by": r.stopped_by, "killed": r.killed,
                  "leftovers": r.leftovers}))
"""

# Saves its work when stopped as by Ctrl-C, as pytest does.
COOPERATIVE = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1], "pids").write_text(str(os.getpid()))
try:
    time.sleep(600)
except KeyboardInterrupt:
    Path(sys.argv[1], "saved").write_text("what finished")
    sys.exit(130)
"""

# Ignores the stop signal, and starts a process of its own in a new session that would outlive it.
STUBBORN = """
import os, signal, subprocess, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)
orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
Path(sys.argv[1], "pids").write_text(f"{os.getpid()} {orphan.pid}")
time.sleep(600)
"""


def drive(child: str, folder: Path, grace_s: float, ignore_sigint: bool = False) -> subprocess.Popen:
    env = child_env()

    def as_a_background_job() -> None:  # a shell's `cmd &` starts it with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-c", DRIVER, str(grace_s), child, str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_a_background_job if ignore_sigint else None)


def stop(proc: subprocess.Popen, folder: Path) -> tuple[list[int], dict]:
    end = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    while not (folder / "pids").exists():
        if proc.poll() is not None or time.monotonic() > end:
            pytest.fail(f"the child never started: {proc.communicate()}")
        time.sleep(0.05)
    pids = [int(p) for p in (folder / "pids").read_text().split()]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return pids, json.loads(out.strip().splitlines()[-1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_is_forwarded_as_ctrl_c_and_the_child_may_finish_saving(tmp_path):
    # Started as a background job (SIGINT ignored): the child must still get a working Ctrl-C.
    proc = drive(COOPERATIVE, tmp_path, grace_s=120, ignore_sigint=True)
    (child,), result = stop(proc, tmp_path)
    assert result == {"returncode": 130, "stopped_by": signal.SIGTERM, "killed": False, "leftovers": []}
    assert (tmp_path / "saved").read_text() == "what finished" and gone(child)


def test_a_child_that_will_not_stop_is_killed_and_what_it_left_is_reaped(tmp_path):
    proc = drive(STUBBORN, tmp_path, grace_s=1)
    (child, orphan), result = stop(proc, tmp_path)
    assert result["stopped_by"] == signal.SIGTERM and result["killed"] and result["returncode"] == -signal.SIGKILL
    assert [int(line.split()[0]) for line in result["leftovers"]] == [orphan]
    assert gone(child) and gone(orphan)
