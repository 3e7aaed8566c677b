"""Nothing measured is lost: real `pytest benchmarks` processes, real workers, real signals, real files.

The saved JSON (--benchmark-json and the --benchmark-save copy) is written when a run is stopped by a
signal after its first case, when no case reached timing, under xdist, and never half: a failed write
keeps the previous file. A second run on the same device is seen and recorded.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from odperf.results import load_run
from suite_runs import ROOT, pytest_command, run_pytest, suite_env

SMALL = ("-p", "no:xdist", "--odperf-devices=cpu", "--odperf-models=centernet_tiny")


@pytest.fixture
def no_rules(tmp_path: Path) -> Path:
    path = tmp_path / "no_rules.toml"
    path.write_text("# no expectations: these tests are about what is saved, not about the figures\n")
    return path


def _saved_copy(storage: Path) -> dict:
    (path,) = storage.glob("*/0001_*.json")
    return json.loads(path.read_text())


def _alive(proc: psutil.Process) -> bool:
    """Running, not a zombie: a child that has exited but is not yet reaped is gone for this test."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_of(proc: psutil.Process, timeout: float = 600.0) -> psutil.Process:
    """Wait until the run has a measuring worker (odperf.engine.worker) among its children; polls every
    0.1 s and gives up after ``timeout`` s or once the run itself has ended (zombie included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in proc.children(recursive=True):
            try:
                if "odperf.engine.worker" in " ".join(child.cmdline()) and _alive(child):
                    return child
            except psutil.NoSuchProcess:
                continue
        if not _alive(proc):
            raise AssertionError("the run ended before its second case started")
        time.sleep(0.1)
    raise AssertionError(f"no measuring worker among the run's children after {timeout:.0f} s")


def test_waiting_for_a_worker_ends_on_a_finished_run_or_a_timeout():
    """_worker_of cannot hang a test: an exited, unreaped run (a zombie) and a run without workers end it."""
    import sys

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    zombie = psutil.Process(done.pid)
    while zombie.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    with pytest.raises(AssertionError, match="the run ended before"):
        _worker_of(zombie)
    done.wait()
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(AssertionError, match="no measuring worker among the run's children after 1 s"):
            _worker_of(psutil.Process(idle.pid), timeout=1.0)
    finally:
        idle.kill()
        idle.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_after_its_first_case_keeps_it(tmp_path: Path, no_rules: Path, sig: signal.Signals):
    json_path, storage = tmp_path / "run.json", tmp_path / "storage"
    cmd = pytest_command("benchmarks/test_inference.py", *SMALL, "-v", "--odperf-batch-sizes=64,1",
                         "--odperf-images=3", f"--odperf-expectations={no_rules}", f"--benchmark-json={json_path}",
                         "--benchmark-save=stopped", f"--benchmark-storage={storage}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=suite_env({"PYTHONUNBUFFERED": "1"}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # the first case's result line ends when that case has finished
        seen.append(line)
        if "test_inference[centernet_tiny-b64-cpu]" in line and ("PASSED" in line or "FAILED" in line):
            break
    worker = _worker_of(psutil.Process(proc.pid))  # the second case is measuring now
    proc.send_signal(sig)
    text = "".join(seen) + proc.stdout.read()
    assert proc.wait() == 2, text  # pytest's "interrupted"
    assert f"stopped by {sig.name}" in text
    for data in (json.loads(json_path.read_text()), _saved_copy(storage)):
        assert [b["name"] for b in data["benchmarks"]] == ["test_inference[centernet_tiny-b64-cpu]"]
        assert data["benchmarks"][0]["stats"]["rounds"] == 3 == len(data["benchmarks"][0]["stats"]["data"])
        assert [(r["batch_size"], r["outcome"]) for r in data["odperf"]["records"]] == [(64, "ok")]
    assert load_run(json_path).records[0].images_timed == 3
    gone, alive = psutil.wait_procs([worker], timeout=60)
    assert not alive, "the interrupted case's worker outlived the run"


def test_a_run_where_every_case_ran_out_of_memory_as_expected_saves_them(tmp_path: Path):
    rules = tmp_path / "oom.toml"
    rules.write_text('[[rule]]\nprofiles = ["tiny"]\nmodels = "*"\noom = true\nnote = "a 20 MB device"\n')
    json_path, storage = tmp_path / "run.json", tmp_path / "storage"
    out = run_pytest("benchmarks/test_inference.py", *SMALL, "--odperf-batch-sizes=64", "--odperf-images=1",
                     "--odperf-emulate=tiny:20", f"--odperf-expectations={rules}", f"--benchmark-json={json_path}",
                     "--benchmark-save=oom", f"--benchmark-storage={storage}")
    assert out.returncode == 0, out.stdout + out.stderr  # the run passes: the out-of-memory was expected
    for data in (json.loads(json_path.read_text()), _saved_copy(storage)):
        assert data["benchmarks"] == []
        (rec,) = data["odperf"]["records"]
        assert (rec["outcome"], rec["device_profile"], rec["emulated"]["memory_limit_mb"]) == ("oom", "tiny", 20)
    assert load_run(json_path).records[0].outcome == "oom"


def test_a_run_where_every_case_timed_out_saves_them(tmp_path: Path, no_rules: Path):
    json_path = tmp_path / "run.json"
    out = run_pytest("benchmarks/test_inference.py", *SMALL, "--odperf-batch-sizes=1,64", "--odperf-images=1",
                     "--odperf-timeout=0.5", f"--odperf-expectations={no_rules}", f"--benchmark-json={json_path}")
    assert out.returncode == 1, out.stdout + out.stderr  # a timeout fails its case ...
    assert "no answer within 0.5 s" in out.stdout and "Traceback" not in out.stdout
    records = json.loads(json_path.read_text())["odperf"]["records"]  # ... and is kept
    assert [(r["batch_size"], r["outcome"]) for r in records] == [(1, "timeout"), (64, "timeout")]


def test_accuracy_spread_over_xdist_is_saved_for_report_and_gate(tmp_path: Path, no_rules: Path):
    json_path = tmp_path / "accuracy.json"
    out = run_pytest("benchmarks", "-m", "accuracy", "-n", "2", "--odperf-devices=cpu",
                     "--odperf-models=centernet_tiny,ssd_fpn", "--odperf-images=1",
                     f"--odperf-expectations={no_rules}", f"--benchmark-json={json_path}")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(json_path.read_text())
    assert data["benchmarks"] == [] and data["machine_info"]["odperf"]["profile"] == "cpu"
    saved = load_run(json_path)
    assert sorted((r.model, r.batch_size) for r in saved.records) == [("centernet_tiny", 64), ("ssd_fpn", 64)]
    assert all(r.map is not None and 0 < r.map <= 1 for r in saved.records)
    gate = subprocess.run([*pytest_command()[:1], "-m", "odperf.cli", "gate", "--baseline", str(json_path),
                           "--current", str(json_path)], capture_output=True, text=True, env=suite_env())
    assert gate.returncode == 0, gate.stdout + gate.stderr


def _small_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # any write past 2 kB fails, as on a full disk


def test_a_failed_write_keeps_the_previous_results_file_and_fails_the_run(tmp_path: Path):
    rules = tmp_path / "oom.toml"
    rules.write_text('[[rule]]\nprofiles = ["tiny"]\nmodels = "*"\noom = true\n')
    json_path = tmp_path / "run.json"
    json_path.write_text('{"previous": "run"}')
    out = run_pytest("benchmarks/test_inference.py", *SMALL, "--odperf-batch-sizes=64", "--odperf-images=1",
                     "--odperf-emulate=tiny:20", f"--odperf-expectations={rules}", f"--benchmark-json={json_path}",
                     preexec_fn=_small_files)
    assert "1 passed" in out.stdout, out.stdout + out.stderr  # the case itself went as expected ...
    assert "odperf: ERROR: --benchmark-json: could not write" in out.stdout
    assert "the previous file, if any, is unchanged" in out.stdout
    assert out.returncode == 1  # ... but a run whose results are not saved does not pass
    assert json.loads(json_path.read_text()) == {"previous": "run"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.json")] == []


_HOLDER = """
import sys
from odperf.measure.lock import DeviceLock
lock = DeviceLock("cpu").acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def test_a_run_on_a_device_another_run_measures_on_says_so_and_records_it(tmp_path: Path, no_rules: Path):
    locks = {"ODPERF_LOCK_DIR": str(tmp_path / "locks")}  # this test's own lock folder: no other run's
    env = suite_env(locks)
    holder = subprocess.Popen([pytest_command()[0], "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        json_path = tmp_path / "run.json"
        out = run_pytest("benchmarks/test_inference.py", *SMALL, "--odperf-batch-sizes=1", "--odperf-images=1",
                         "--odperf-timeout=0.5", f"--odperf-expectations={no_rules}",
                         f"--benchmark-json={json_path}", env=locks)
    finally:
        holder.stdin.close()
        holder.wait()
    warnings = [line for line in out.stdout.splitlines() if "another odperf run measures on cpu" in line]
    assert len(warnings) == 1 and f"pid {holder.pid}" in warnings[0], out.stdout
    data = json.loads(json_path.read_text())
    assert [h["pid"] for h in data["machine_info"]["odperf"]["device_shared_with"]["cpu"]] == [holder.pid]
    assert [h["pid"] for h in data["odperf"]["records"][0]["device_shared_with"]] == [holder.pid]
    assert load_run(json_path).records[0].outcome == "timeout"  # the extra key does not disturb reading

    out = run_pytest("benchmarks/test_inference.py", *SMALL, "--odperf-batch-sizes=1", "--odperf-images=1",
                     "--odperf-timeout=0.5", f"--odperf-expectations={no_rules}",
                     f"--benchmark-json={json_path}", env=locks)
    assert "another odperf run" not in out.stdout  # the other run has ended
    data = json.loads(json_path.read_text())
    assert "device_shared_with" not in data["machine_info"]["odperf"]
    assert "device_shared_with" not in data["odperf"]["records"][0]


def test_runs_with_different_temp_dirs_meet_and_the_running_one_says_when_another_joins(tmp_path: Path,
                                                                                          no_rules: Path):
    """The lock folder is system-wide (never $TMPDIR): a run and a newcomer started with another TMPDIR see each
    other, and the run already measuring says so while its one case runs, not only at its end."""
    json_path = tmp_path / "run.json"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cmd = pytest_command("benchmarks/test_inference.py", *SMALL, "-v", "--odperf-batch-sizes=64", "--odperf-images=8",
                         f"--odperf-expectations={no_rules}", f"--benchmark-json={json_path}")
    run = subprocess.Popen(cmd, cwd=ROOT, env=suite_env({"TMPDIR": str(tmp_path / "a"), "PYTHONUNBUFFERED": "1"}),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder = None
    try:
        _worker_of(psutil.Process(run.pid))  # the run holds its lock and its case is starting
        holder = subprocess.Popen([pytest_command()[0], "-c", _HOLDER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=suite_env({"TMPDIR": str(tmp_path / "b")}))
        assert holder.stdout.readline().strip() == "held"
        text = run.communicate(timeout=900)[0]
    finally:
        run.kill()
        if holder is not None:
            holder.stdin.close()
            holder.wait()
    warned = [line for line in text.splitlines() if f"another odperf run measures on cpu (pid {holder.pid} " in line]
    assert warned, text
    lines = text.splitlines()
    case_ends = next(i for i, line in enumerate(lines) if "PASSED" in line or "FAILED" in line)  # its status
    assert lines.index(warned[0]) < case_ends, text  # said while the case ran, not only at the end
    data = json.loads(json_path.read_text())
    assert holder.pid in [h["pid"] for h in data["odperf"]["records"][0]["device_shared_with"]]
