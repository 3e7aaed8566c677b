"""What a run of the suite says on the terminal and hands pytest-benchmark: each case's progress (live on a
terminal, only a final line elsewhere, nothing under -q), plain parameters in the saved JSON, and one short
line when comparing against a run from another machine. Real pytest subprocesses, real workers."""

from __future__ import annotations

import glob
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from suite_runs import ROOT, pytest_command, run_pytest, suite_env
from zoo_artifacts import write_tf2_saved_model


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return write_tf2_saved_model(tmp_path_factory.mktemp("toy") / "toy_detector")


def _case(toy_model: Path) -> tuple[str, ...]:
    return ("benchmarks/test_inference.py", "-p", "no:xdist", f"--odperf-models={toy_model}",
            "--odperf-batch-sizes=1", "--odperf-devices=cpu", "--odperf-images=3")


COLUMNS = 100  # the terminal's width


def _in_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """pytest's output when its stdout is a terminal (a pseudo-terminal here)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(pytest_command(*args), cwd=ROOT, env={**suite_env(env), "COLUMNS": str(COLUMNS)},
                            stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # the other side closed: the child is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=600) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_progress_is_one_live_line_per_case_on_a_terminal(toy_model: Path, tmp_path: Path):
    # Its own device locks: a suite run that another test starts meanwhile (under -n) would otherwise be
    # announced in the middle of the live line ("another odperf run measures on cpu"), as it should be.
    alone = {"ODPERF_LOCK_DIR": str(tmp_path / "locks")}
    text = re.sub(r"\x1b\[[0-9;]*m", "", _in_terminal(*_case(toy_model), env=alone))  # colours off
    line = next(ln for ln in text.split("\n") if "toy_detector-b1-cpu: 0/3 images" in ln)
    updates = line.rstrip("\r").split("\r")  # the terminal ends a line with \r\n
    assert updates[0].startswith("toy_detector-b1-cpu: 0/3 images, starting")
    assert [u.split(":")[1].split(",")[0].split(" in ")[0].strip() for u in updates] == [
        "0/3 images", "1/3 images", "2/3 images", "3/3 images"]
    assert "s left" in updates[2] and " in " in updates[3]
    assert updates[3].split()[-2:] == [".", "[100%]"]  # pytest's status letter ends the case's line
    assert len(updates[3]) == COLUMNS - 1, updates[3]  # and its progress sits at the right edge, as pytest puts it
    assert "odperf: 1 case(s), 3 camera images timed" in text


def test_off_a_terminal_only_the_final_line_and_under_q_nothing(toy_model: Path, tmp_path: Path):
    out = run_pytest(*_case(toy_model), f"--benchmark-json={tmp_path / 'run.json'}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "images, starting" not in out.stdout and "s left" not in out.stdout
    assert "odperf: 1 case(s), 3 camera images timed" in out.stdout
    (bench,) = json.loads((tmp_path / "run.json").read_text())["benchmarks"]
    assert bench["param"] == "toy_detector-b1-cpu"  # the id is what it always was
    assert bench["params"] == {"model": "toy_detector", "batch": 1, "device": "cpu", "backend": "tensorflow"}
    quiet = run_pytest(*_case(toy_model), "-q")
    assert quiet.returncode == 0 and "camera images timed" not in quiet.stdout, quiet.stdout


def test_compare_with_another_machine_says_so_in_one_line(toy_model: Path, tmp_path: Path):
    storage = f"--benchmark-storage=file://{tmp_path / 'store'}"
    first = run_pytest(*_case(toy_model), storage, "--benchmark-save=elsewhere")
    assert first.returncode == 0, first.stdout + first.stderr
    (saved,) = glob.glob(str(tmp_path / "store" / "*" / "0001_elsewhere.json"))
    data = json.loads(Path(saved).read_text())
    data["machine_info"]["node"] = "gpu-box"
    data["machine_info"]["odperf"]["profile"] = "v100_sxm2"
    Path(saved).write_text(json.dumps(data))
    out = run_pytest(*_case(toy_model), storage, "--benchmark-compare=0001", "--benchmark-group-by=param:model")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "machine_info is different" not in text
    (line,) = [ln for ln in text.splitlines() if "odperf: comparing" in ln]
    assert "odperf: comparing cpu [" in line and "(this run) with v100_sxm2 [" in line and "on gpu-box (saved)" in line
    assert len(line) < 300, line
    assert "model=toy_detector" in text and "0001_elsewhere" in text  # grouped by a plain parameter, compared
