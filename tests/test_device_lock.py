"""Runs on one device see each other through real lock files held by real processes; dead runs do not count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from odperf.measure.lock import DeviceLock

_HOLDER = """
import sys
from pathlib import Path
from odperf.measure.lock import DeviceLock
lock = DeviceLock(sys.argv[1], Path(sys.argv[2])).acquire()
print(lock.path, flush=True)
sys.stdin.read()  # held until the test closes stdin (or kills this process)
lock.release()
"""


def _holder(device: str, root: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, device, str(root), "pytest benchmarks -k gpu"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_another_process_on_the_same_device_is_seen_until_it_ends(tmp_path: Path):
    proc, path = _holder("gpu:0", tmp_path)
    try:
        with DeviceLock("gpu:0", tmp_path) as mine, DeviceLock("gpu:1", tmp_path) as other_gpu:
            found = mine.others()
            assert [h.pid for h in found] == [proc.pid]
            assert found[0].command.endswith("pytest benchmarks -k gpu") and found[0].since[:2] == "20"
            assert other_gpu.others() == []  # another device is not shared
        assert path.exists()
    finally:
        proc.stdin.close()
        proc.wait()
    assert not path.exists()  # a run that ends releases its lock and removes its file
    with DeviceLock("gpu:0", tmp_path) as mine:
        assert mine.others() == []


def test_both_runs_see_each_other(tmp_path: Path):
    proc, _ = _holder("cpu", tmp_path)
    try:
        with DeviceLock("cpu", tmp_path) as mine:
            code = ("import sys; from pathlib import Path; from odperf.measure.lock import DeviceLock; "
                    "l = DeviceLock('cpu', Path(sys.argv[1])).acquire(); print(*sorted(h.pid for h in l.others()))")
            out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
            assert [int(pid) for pid in out.stdout.split()] == sorted([proc.pid, os.getpid()])
            assert [h.pid for h in mine.others()] == [proc.pid]  # the third process has ended
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_killed_run_leaves_a_stale_file_that_is_not_counted_and_is_removed(tmp_path: Path):
    proc, path = _holder("cpu", tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists()  # SIGKILL leaves no chance to clean up ...
    with DeviceLock("cpu", tmp_path) as mine:
        assert mine.others() == []  # ... but the kernel released the lock
    assert not path.exists()
