"""pytest-benchmark's own tools on odperf's files: ``--benchmark-histogram`` in a run, then ``pytest-benchmark
compare --group-by=param:model --histogram`` on the saved runs, as the README promises. A real suite run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from suite_runs import ROOT, run_pytest

CASES = ["test_inference[centernet_tiny-b8-cpu]", "test_inference[centernet_tiny-b64-cpu]"]


def test_histogram_and_compare_read_odperfs_saved_runs(tmp_path: Path):
    rules = tmp_path / "rules.toml"
    rules.write_text("# no deadlines: this test is about the files\n")
    store = tmp_path / "store"
    run = run_pytest("benchmarks/test_inference.py", "-p", "no:xdist", "--odperf-devices=cpu",
                     "--odperf-models=centernet_tiny", "--odperf-batch-sizes=8,64", "--odperf-images=2",
                     f"--odperf-expectations={rules}", "--benchmark-save=run", f"--benchmark-storage={store}",
                     f"--benchmark-histogram={tmp_path / 'hist' / 'run'}", timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    run_svg = (tmp_path / "hist" / "run.svg").read_text()
    assert all(case in run_svg for case in CASES)
    [saved] = store.glob("*/0001_run.json")
    assert [b["params"]["model"] for b in json.loads(saved.read_text())["benchmarks"]] == ["centernet_tiny"] * 2
    shutil.copy(saved, saved.with_name("0002_again.json"))  # a second saved run to compare with

    done = subprocess.run([str(Path(sys.executable).with_name("pytest-benchmark")), "--storage", f"file://{store}",
                           "compare", "0001", "0002", "--group-by=param:model", "--columns=min,median,rounds",
                           f"--histogram={tmp_path / 'hist' / 'cmp'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "benchmark 'model=centernet_tiny': 4 tests" in done.stdout  # grouped by odperf's plain params
    rows = [line.split()[0] + " " + line.split()[1] for line in done.stdout.splitlines()
            if line.startswith("test_inference[")]
    assert sorted(rows) == sorted(f"{case} ({name})" for case in CASES for name in ("0001_run", "0002_again"))
    cmp_svg = (tmp_path / "hist" / "cmp-model=centernet_tiny.svg").read_text()
    assert all(f"{case} (0002_again)" in cmp_svg for case in CASES)
