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
from odperf.suite.expectations import load as load_expectations
from odperf.report.gate import GateConfig, run_gate
from odperf.results import load_run


Bench = mr.Bench
QUIET = mr.noise()  # a machine whose processes hardly differ: any change beyond a threshold is significant
QUIET_CLI = ("--time-noise", "0.01", "--memory-noise", "0.01")

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
    return run_gate(base, cur, GateConfig(**{"noise": QUIET, **config})).failures


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
    on_v100 = replace(QUIET, profile="v100_sxm2", probe="nvml")  # the current run's profile's noise applies
    assert run_gate(base, other, GateConfig(allow_profile_change=True, noise=on_v100)).passed
    with pytest.raises(ResultsError, match="time-threshold must be >= 0"):
        GateConfig(time_threshold=-0.1)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "odperf.cli", "gate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_gate_exit_codes_and_messages(tmp_path: Path):
    base = mr.write_run(tmp_path / "base.json", "cpu", BASE)
    same = _cli("--baseline", str(base), "--current", str(base), *QUIET_CLI)
    assert same.returncode == 0, same.stderr
    lines = same.stdout.strip().splitlines()
    assert lines[-1].startswith("odperf gate: pass") and lines[-2].startswith("noise: noise of profile cpu")
    assert sum(line.startswith("time: ") for line in lines) == 3 and len(lines) == 8  # and 3 memory lines
    assert "nas batch 1: median time per image 30 s -> 30 s (+0.0%" in same.stdout
    assert "ratio 1.000 (upper 95% bound 1.02" in same.stdout and "+25% ruled out: within the threshold" in same.stdout

    slow = mr.write_run(tmp_path / "slow.json", "cpu", _with({("ssd", 8): {"times": [0.6] * 5},
                                                             ("nas", 1): {"peak_mb": 12000.0}}))
    done = _cli("--baseline", str(base), "--current", str(slow), *QUIET_CLI)
    assert done.returncode == 1
    assert "FAIL time: ssd batch 8" in done.stdout and "FAIL memory: nas batch 1" in done.stdout
    assert "2 failures" in done.stdout
    assert _cli("--baseline", str(base), "--current", str(slow), "--time-threshold", "0.5",
                "--memory-threshold", "0.5", *QUIET_CLI).returncode == 0

    (tmp_path / "empty.json").write_text("")
    (tmp_path / "corrupt.json").write_text(base.read_text()[:500])
    (tmp_path / "foreign.json").write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": []}))
    for name, message in [("absent.json", "xdist"), ("empty.json", "empty"), ("corrupt.json", "not valid JSON"),
                          ("foreign.json", "no odperf measurements")]:
        done = _cli("--baseline", str(base), "--current", str(tmp_path / name))
        assert done.returncode == 2, name
        assert name in done.stderr and message in done.stderr and "Traceback" not in done.stderr

    helped = subprocess.run([sys.executable, "-m", "odperf.cli", "gate", "--help"], capture_output=True, text=True)
    assert "default: 0.1" in helped.stdout and "default: 0.01" in helped.stdout and "exit" not in helped.stderr
    assert "3: undecided" in " ".join(helped.stdout.split()) and "run `odperf ab`" in helped.stdout
    memory_help = " ".join(helped.stdout.rsplit("--memory-threshold FRACTION", 1)[1].split("--map-tolerance")[0].split())
    assert memory_help.startswith("largest allowed growth of the model's own memory")  # what _check_memory compares


# --- mAP of the accuracy benchmark -------------------------------------------------------------------------
V1_COLLISION = Path(__file__).parent / "data" / "runs" / "v1" / "centernet_tiny_b64.json"
FLOORS = Path(__file__).resolve().parents[1] / "fixtures" / "expectations.toml"


def test_a_map_drop_measured_by_the_accuracy_benchmark_fails_the_gate(tmp_path: Path):
    """The suite's own v1 file: test_inference and test_accuracy both ran at batch 64. The accuracy record's
    mAP falls from 0.452 to 0.01 (floor 0.43): the gate must see it, not the timing record's empty mAP."""
    data = json.loads(V1_COLLISION.read_text())
    scored = next(r for r in data["odperf"]["records"] if r["map"] is not None)
    scored["map"] = scored["accuracy"]["AP"] = 0.01
    current = tmp_path / "current.json"
    current.write_text(json.dumps(data))
    result = run_gate(load_run(V1_COLLISION), load_run(current), GateConfig(floors=load_expectations(FLOORS)))
    assert [(f.kind, f.model) for f in result.failures] == [("map", "centernet_tiny")] * 2
    assert "mAP 0.452 -> 0.010" in str(result.failures[0]) and "below its floor 0.430" in str(result.failures[1])
    done = _cli("--baseline", str(V1_COLLISION), "--current", str(current), "--floors", str(FLOORS))
    assert done.returncode == 1 and "below its floor 0.430" in done.stdout


def test_accuracy_and_timing_records_of_one_batch_are_gated_each_on_its_own(tmp_path: Path):
    base = [Bench("m", 64, [0.5] * 5, peak_mb=1000.0), Bench("m", 64, [3.0] * 2, kind=mr.ACCURACY, map=0.534)]
    slow_scoring = [base[0], Bench("m", 64, [30.0] * 2, kind=mr.ACCURACY, map=0.534)]  # untimed pass: not gated
    assert gate_runs(tmp_path, base, slow_scoring).passed
    worse = [base[0], Bench("m", 64, [3.0] * 2, kind=mr.ACCURACY, map=0.01)]
    assert [f.kind for f in gate_runs(tmp_path, base, worse).failures] == ["map"]
    no_accuracy_run = [base[0]]
    failures = gate_runs(tmp_path, base, no_accuracy_run).failures
    assert [f.kind for f in failures] == ["map"] and "no mAP in the current run (baseline 0.534" in str(failures[0])


def gate_runs(tmp_path: Path, base: list[Bench], current: list[Bench], profile: str = "cpu", **config):
    b = load_run(mr.write_run(tmp_path / "b.json", profile, base))
    c = load_run(mr.write_run(tmp_path / "c.json", profile, current))
    return run_gate(b, c, GateConfig(**{"noise": QUIET, **config}))


# --- a gate that compared nothing never passes ----------------------------------------------------------
def _without_times(path: Path) -> Path:
    data = json.loads(path.read_text())
    data["benchmarks"] = []
    for rec in data["odperf"]["records"]:
        rec["time_per_image_s"] = {}
    path.write_text(json.dumps(data))
    return path


def _without_median(path: Path) -> Path:
    data = json.loads(path.read_text())
    for rec in [b["extra_info"] for b in data["benchmarks"]] + data["odperf"]["records"]:
        rec["time_per_image_s"].pop("median", None)
    for bench in data["benchmarks"]:
        del bench["stats"]["median"]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("make_baseline", "words"),
    [
        (lambda p: _without_times(mr.write_run(p, "cpu", BASE)), "ran ok carry no time per image"),
        (lambda p: mr.write_run(p, "cpu", [Bench("ssd", 64, [3.0], kind=mr.ACCURACY, map=0.3)]),
         "holds no timed measurement (only accuracy records)"),
        (lambda p: mr.write_run(p, "cpu", [Bench("other", 1, [1.0] * 3, peak_mb=5.0)]),
         "no ok measurement of the baseline (other b1) is timed in the current run (nas b1, nas b4, ssd b1, ssd b8)"),
        (lambda p: _without_median(mr.write_run(p, "cpu", BASE)), "none of the baseline's 3 ok measurements has a median"),
        (lambda p: mr.write_run(p, "cpu", [Bench("ssd", 1, outcome="oom"), Bench("ssd", 8, outcome="crash")]),
         "no measurement of the baseline ran ok (outcomes: crash, oom)"),
    ],
)
def test_a_gate_that_compared_no_time_fails_saying_why(tmp_path: Path, make_baseline, words: str):
    base = make_baseline(tmp_path / "base.json")
    cur = mr.write_run(tmp_path / "cur.json", "cpu", BASE)
    result = run_gate(load_run(base), load_run(cur))
    assert not result.passed and result.compared.times == {"median": 0}
    nothing = [str(f) for f in result.failures if f.kind == "nothing"]
    assert nothing and nothing[0].startswith("FAIL nothing: no median time per image compared: ") and words in nothing[0]
    done = _cli("--baseline", str(base), "--current", str(cur))
    assert done.returncode == 1 and words in done.stdout and "compared 0 median times" in done.stdout


def test_a_current_run_without_map_fails_when_floors_ask_for_one(tmp_path: Path):
    floors = tmp_path / "expect.toml"
    floors.write_text('[[rule]]\nmodels = ["ssd"]\nmap_floor = 0.2\n')
    no_map = [replace(b, map=None) for b in BASE]
    result = gate_runs(tmp_path, no_map, no_map, floors=load_expectations(floors))
    assert [(f.kind, f.model) for f in result.failures] == [("map", "ssd")]
    assert "no mAP in the current run (floor 0.200 of" in str(result.failures[0])
    assert gate_runs(tmp_path, no_map, no_map).passed  # nobody asked for a mAP
    both = gate_runs(tmp_path, BASE, no_map, floors=load_expectations(floors)).failures
    assert "baseline 0.300 and floor 0.200 of" in str(next(f for f in both if f.model == "ssd"))


def test_floors_that_set_no_floor_for_this_run_fail(tmp_path: Path):
    floors = tmp_path / "expect.toml"
    floors.write_text('[[rule]]\nmodels = ["some_other_model"]\nmap_floor = 0.2\n')
    result = gate_runs(tmp_path, BASE, BASE, floors=load_expectations(floors))
    assert [f.kind for f in result.failures] == ["nothing"]
    assert "no mAP checked against floors" in str(result.failures[0]) and "profile cpu" in str(result.failures[0])


def test_memory_compared_nowhere_fails(tmp_path: Path):
    base = load_run(mr.write_run(tmp_path / "b.json", "cpu", BASE))
    data = json.loads((tmp_path / "b.json").read_text())
    for rec in [b["extra_info"] for b in data["benchmarks"]] + data["odperf"]["records"]:
        rec["memory_probe"] = "nvml"
    (tmp_path / "c.json").write_text(json.dumps(data))
    result = run_gate(base, load_run(tmp_path / "c.json"))
    assert [f.kind for f in result.failures] == ["nothing"]
    assert "no peak memory compared: the memory probe differs (rss -> nvml)" in str(result.failures[0])


def test_two_devices_of_one_run_are_gated_apart(tmp_path: Path):
    """A GPU machine's run also measures its cpu: the same (model, batch) on two devices is two rows."""

    def two_devices(cpu_times: list[float]) -> dict:
        run = mr.run_json("gpu_x", [Bench("m", 1, [2.0] * 3, peak_mb=10.0)])
        cpu = mr.run_json("cpu", [Bench("m", 1, cpu_times, peak_mb=10.0)])
        run["benchmarks"] += cpu["benchmarks"]
        run["odperf"]["records"] += cpu["odperf"]["records"]
        return run

    (tmp_path / "b.json").write_text(json.dumps(two_devices([1.0] * 3)))
    (tmp_path / "c.json").write_text(json.dumps(two_devices([1.5] * 3)))
    noise = replace(QUIET, profile="gpu_x")  # the gpu's noise: none known for this cpu
    result = run_gate(load_run(tmp_path / "b.json"), load_run(tmp_path / "c.json"), GateConfig(noise=noise))
    assert result.checked == 2 and not result.failures and result.exit_code == 3
    assert result.undecided[0].startswith("UNDECIDED time: m on cpu batch 1: median time per image 1 s -> 1.5 s")
    assert ("no between-process noise known for it (give --noise from `odperf gate --calibrate N` on this machine): "
            "undecided: run `odperf ab`") in result.undecided[0]
    result = run_gate(load_run(tmp_path / "b.json"), load_run(tmp_path / "c.json"), GateConfig(noise=QUIET))
    assert result.checked == 2 and result.compared.times == {"median": 2}
    assert [(f.kind, f.model) for f in result.failures] == [("time", "m on cpu")]


def test_two_accuracy_runs_are_gated_on_map_alone(tmp_path: Path):
    """`pytest benchmarks -m accuracy` on both sides: mAP is what was measured, and what is gated."""
    base = mr.write_run(tmp_path / "b.json", "cpu", [Bench("ssd", 64, [3.0], kind=mr.ACCURACY, map=0.30)])
    same = mr.write_run(tmp_path / "s.json", "cpu", [Bench("ssd", 64, [3.0], kind=mr.ACCURACY, map=0.30)])
    worse = mr.write_run(tmp_path / "w.json", "cpu", [Bench("ssd", 64, [3.0], kind=mr.ACCURACY, map=0.10)])
    passed = run_gate(load_run(base), load_run(same))
    assert passed.passed and passed.compared.maps == 1
    assert [f.kind for f in run_gate(load_run(base), load_run(worse)).failures] == ["map"]
