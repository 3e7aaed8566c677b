"""``odperf gate``: each kind of regression fails on its own; identical runs pass; bad files never pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.errors import ResultsError
from odperf.expectations import load as load_expectations
from odperf.report.gate import GateConfig, run_gate
from odperf.results import load_run


Bench = mr.Bench

BASE = [
    Bench("ssd", 1, [1.0, 1.0, 1.1, 1.0, 1.0], peak_mb=1000.0, map=0.30, group="low"),
    Bench("ssd", 8, [0.5, 0.5, 0.55, 0.5, 0.5], peak_mb=2000.0, map=0.30, group="low"),
    Bench("nas", 1, [30.0, 30.0, 30.0], peak_mb=9000.0, map=0.55, group="highest", meta_arch="faster_rcnn"),
    Bench("nas", 4, outcome="oom", map=0.55, group="highest", meta_arch="faster_rcnn"),
]


def _with(changes: dict[tuple[str, int], dict]) -> list[Bench]:
    return [replace(b, **changes.get((b.model, b.batch), {})) for b in BASE]


def gate(tmp_path: Path, current: list[Bench], **config) -> list:
    base = load_run(mr.write_run(tmp_path / "base.json", "cpu", BASE))
    cur = load_run(mr.write_run(tmp_path / "cur.json", "cpu", current))
    return run_gate(base, cur, GateConfig(**config)).failures


def test_identical_runs_pass(tmp_path: Path):
    assert gate(tmp_path, BASE) == []


def test_changes_within_thresholds_pass(tmp_path: Path):
    current = _with({("ssd", 1): {"times": [1.05] * 5, "peak_mb": 1080.0, "map": 0.295}})
    assert gate(tmp_path, current) == []


@pytest.mark.parametrize(
    ("changes", "kind", "words"),
    [
        ({("ssd", 8): {"times": [0.6] * 5}}, "time", "median time per image 0.5 s -> 0.6 s (+20.0%"),
        ({("nas", 1): {"peak_mb": 10500.0}}, "memory", "peak memory 9000 MB -> 10500 MB (+16.7%"),
        ({("nas", 1): {"peak_mb": None}}, "memory", "no peak memory figure"),
        ({("ssd", 1): {"map": 0.25}, ("ssd", 8): {"map": 0.25}}, "map", "mAP 0.300 -> 0.250"),
        ({("ssd", 8): {"outcome": "oom", "times": []}}, "outcome", "new oom (was ok in the baseline)"),
        ({("nas", 1): {"outcome": "crash", "times": []}}, "outcome", "new crash"),
        ({("ssd", 1): {"outcome": "timeout", "times": []}}, "outcome", "new timeout"),
        ({("ssd", 8): {"outcome": "skipped", "times": []}}, "missing", "is skipped in the current run"),
    ],
)
def test_each_regression_fails_alone(tmp_path: Path, changes, kind, words):
    failures = gate(tmp_path, _with(changes))
    assert [f.kind for f in failures] == [kind]
    assert words in str(failures[0])


def test_a_benchmark_missing_from_current_fails(tmp_path: Path):
    failures = gate(tmp_path, [b for b in BASE if (b.model, b.batch) != ("ssd", 8)])
    assert [(f.kind, f.model, f.batch_size) for f in failures] == [("missing", "ssd", 8)]


def test_mean_or_median_is_configurable(tmp_path: Path):
    one_slow_round = _with({("ssd", 1): {"times": [1.0, 1.0, 1.0, 1.0, 3.0]}})
    assert gate(tmp_path, one_slow_round) == []  # median: unmoved
    failures = gate(tmp_path, one_slow_round, time_metrics=("mean", "median"))
    assert [f.kind for f in failures] == ["time"] and "mean time" in str(failures[0])
    assert gate(tmp_path, _with({("ssd", 8): {"times": [0.6] * 5}}), time_threshold=0.25) == []


def test_map_floor_from_expectations_file(tmp_path: Path):
    floors = tmp_path / "expect.toml"
    floors.write_text('[[rule]]\nprofiles = ["cpu"]\nmodels = ["group:low"]\nmap_floor = 0.35\n')
    failures = gate(tmp_path, BASE, floors=load_expectations(floors))
    assert [(f.kind, f.model) for f in failures] == [("map", "ssd")]
    assert "below its floor 0.350" in str(failures[0])


def test_fixed_oom_is_not_a_failure_and_profile_change_is_refused(tmp_path: Path):
    assert gate(tmp_path, _with({("nas", 4): {"outcome": "ok", "times": [20.0], "peak_mb": 15000.0}})) == []
    base = load_run(mr.write_run(tmp_path / "a.json", "cpu", BASE))
    other = load_run(mr.write_run(tmp_path / "b.json", "v100_sxm2", BASE))
    with pytest.raises(ResultsError, match="use `odperf compare`"):
        run_gate(base, other)
    assert run_gate(base, other, GateConfig(allow_profile_change=True)).passed
    with pytest.raises(ResultsError, match="time-threshold must be >= 0"):
        GateConfig(time_threshold=-0.1)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "odperf.cli", "gate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_gate_exit_codes_and_messages(tmp_path: Path):
    base = mr.write_run(tmp_path / "base.json", "cpu", BASE)
    same = _cli("--baseline", str(base), "--current", str(base))
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().count("\n") == 0 and same.stdout.startswith("odperf gate: pass")

    slow = mr.write_run(tmp_path / "slow.json", "cpu", _with({("ssd", 8): {"times": [0.6] * 5},
                                                             ("nas", 1): {"peak_mb": 12000.0}}))
    done = _cli("--baseline", str(base), "--current", str(slow))
    assert done.returncode == 1
    assert "FAIL time: ssd batch 8" in done.stdout and "FAIL memory: nas batch 1" in done.stdout
    assert "2 failures" in done.stdout
    assert _cli("--baseline", str(base), "--current", str(slow), "--time-threshold", "0.5",
                "--memory-threshold", "0.5").returncode == 0

    (tmp_path / "empty.json").write_text("")
    (tmp_path / "corrupt.json").write_text(base.read_text()[:500])
    (tmp_path / "foreign.json").write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": []}))
    for name, message in [("absent.json", "xdist"), ("empty.json", "empty"), ("corrupt.json", "not valid JSON"),
                          ("foreign.json", "no odperf measurements")]:
        done = _cli("--baseline", str(base), "--current", str(tmp_path / name))
        assert done.returncode == 2, name
        assert name in done.stderr and message in done.stderr and "Traceback" not in done.stderr

    helped = subprocess.run([sys.executable, "-m", "odperf.cli", "gate", "--help"], capture_output=True, text=True)
    assert "default: 0.1" in helped.stdout and "default: 0.01" in helped.stdout
