"""The gate on two saved runs, one process per side: a change beyond the threshold fails only beyond the
known noise between processes, is ``undecided: run `odperf ab``` within it (exit 3, never a pass), and the
noise comes from a file with its provenance, measured from saved runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.errors import ResultsError
from odperf.report import gate_noise as gn
from odperf.report.gate import EXIT_UNDECIDED, GateConfig, run_gate
from odperf.results import load_run

Bench = mr.Bench


def gate(tmp_path: Path, base: list[Bench], current: list[Bench], **config):
    b = load_run(mr.write_run(tmp_path / "b.json", "cpu", base))
    c = load_run(mr.write_run(tmp_path / "c.json", "cpu", current))
    return run_gate(b, c, GateConfig(**config))


def test_a_slowdown_within_the_noise_between_processes_is_undecided_never_a_pass(tmp_path: Path):
    base = [Bench("m", 8, [1.0, 1.01, 0.99, 1.0, 1.0], peak_mb=900.0)]
    slower = [Bench("m", 8, [1.15, 1.16, 1.14, 1.15, 1.15], peak_mb=900.0)]  # +15%: what one process can do
    result = gate(tmp_path, base, slower, noise=mr.noise(time_sd=0.08))
    assert not result.passed and not result.failures and result.exit_code == EXIT_UNDECIDED == 3
    [line] = result.undecided
    assert line.startswith("UNDECIDED time: m batch 8: median time per image 1 s -> 1.15 s (+15.0%, threshold +10%)")
    assert "between-process noise 8.0% and 8.0% (log sd, 49 degrees of freedom)" in line
    assert line.endswith("undecided: run `odperf ab`")
    assert result.summary().startswith("odperf gate: UNDECIDED (1 figures within the noise between processes, "
                                       "which one run per side cannot tell from a regression: run `odperf ab`)")
    quiet = gate(tmp_path, base, slower, noise=mr.noise(time_sd=0.01))  # the same change on a quiet machine
    [failure] = quiet.failures
    assert failure.kind == "time" and "significant, ratio 1.150 (upper 95% bound 1.178), between-process noise 1.0% and " \
        "1.0%" in str(failure)
    assert quiet.exit_code == 1
    within = gate(tmp_path, base, [Bench("m", 8, [1.05] * 5, peak_mb=900.0)], noise=mr.noise(time_sd=0.03))
    assert within.passed and within.exit_code == 0 and "+25% ruled out: within the threshold" in within.times[0]


def test_a_pass_rules_out_the_regression_it_must_catch_so_a_slow_baseline_hides_nothing(tmp_path: Path):
    """A +25% slowdown measured against a baseline process that happened to run 20% slow shows as 1.04: on
    a machine whose processes spread by 8%, that cannot rule out +25%, so it is undecided, not a pass."""
    base = [Bench("m", 8, [1.2] * 5, peak_mb=900.0)]
    planted = [Bench("m", 8, [1.25] * 5, peak_mb=900.0)]
    result = gate(tmp_path, base, planted, noise=mr.noise(time_sd=0.08))
    assert result.exit_code == EXIT_UNDECIDED and not result.failures
    assert "ratio 1.042 (upper 95% bound 1.2" in result.undecided[0]
    assert result.undecided[0].endswith("+25% not ruled out: undecided: run `odperf ab`")
    wider = gate(tmp_path, base, planted, noise=mr.noise(time_sd=0.08), detect=0.5)  # a coarser promise
    assert wider.passed and "+50% ruled out" in wider.times[0]


def test_a_runs_own_sampling_error_of_its_median_counts_when_larger_than_the_noise(tmp_path: Path):
    noisy = [0.7, 1.4, 0.9, 1.3, 1.0, 1.2, 0.8, 1.1]  # its median is known to about +-10% from 8 rounds
    shifted = [t * 1.15 for t in noisy]
    result = gate(tmp_path, [Bench("m", 8, noisy, peak_mb=900.0)], [Bench("m", 8, shifted, peak_mb=900.0)],
                  noise=mr.noise(time_sd=0.01))
    assert result.exit_code == EXIT_UNDECIDED, result.failures
    own = gn.median_log_sd(noisy)
    assert 0.08 < own < 0.12 and f"between-process noise {own:.1%} and {own:.1%}" in result.undecided[0]


def test_memory_is_judged_against_the_noise_and_the_runs_own_floor(tmp_path: Path):
    """Each measurement is one worker process: the spread of the runtime's memory before the model loaded
    across them is a floor of the memory's noise that the run measures itself."""
    def runs(runtimes: list[float], grown: float) -> tuple[list[Bench], list[Bench]]:
        base = [Bench(f"m{k}", 8, [1.0] * 5, peak_mb=r + 200.0, model_mb=200.0) for k, r in enumerate(runtimes)]
        cur = [replace(b, peak_mb=b.peak_mb - 200.0 + 200.0 * grown, model_mb=200.0 * grown) for b in base]
        return base, cur

    steady = gate(tmp_path, *runs([800.0, 801.0, 799.0], 1.3), noise=mr.noise())
    assert [f.kind for f in steady.failures] == ["memory"] * 3
    assert "model's own memory 200 MB -> 260 MB (+30.0%" in str(steady.failures[0])
    wobbly = gate(tmp_path, *runs([700.0, 800.0, 900.0], 1.3), noise=mr.noise())  # sd 100 MB over 3 processes
    assert not wobbly.failures and len(wobbly.undecided) == 3
    assert all(u.startswith("UNDECIDED memory: m") and "70.7%" in u for u in wobbly.undecided)
    assert gn.runtime_floor_mb(load_run(tmp_path / "b.json")) == pytest.approx((100.0, 3))


def test_the_false_alarm_chance_is_shared_by_every_figure_tested(tmp_path: Path):
    base = [Bench(f"m{k}", b, [1.0] * 3, peak_mb=500.0, model_mb=100.0) for k in range(3) for b in (1, 64)]
    result = gate(tmp_path, base, base, noise=mr.noise(), noise_alpha=0.06)
    assert result.passed and result.config.noise_alpha_each == pytest.approx(0.06 / 12)  # 6 times, 6 memories
    edge = [Bench("m", 1, [1.0] * 3, peak_mb=500.0, model_mb=100.0)]
    slower = [replace(edge[0], times=[1.2] * 3)]  # t = ln 1.2 / (0.08 sqrt 2) = 1.61 on 49 dof: p = 0.057
    assert gate(tmp_path, edge, slower, noise=mr.noise(time_sd=0.08), noise_alpha=0.2).exit_code == 1
    assert gate(tmp_path, edge, slower, noise=mr.noise(time_sd=0.08), noise_alpha=0.1).exit_code == 3


def test_no_noise_known_for_the_runs_profile_leaves_a_growth_undecided(tmp_path: Path):
    base = [Bench("m", 8, [1.0] * 5, peak_mb=900.0, model_mb=300.0)]
    doubled = [Bench("m", 8, [2.0] * 5, peak_mb=1500.0, model_mb=900.0)]
    result = gate(tmp_path, base, doubled, noise=mr.noise(profile="v100_sxm2"))
    assert not result.failures and [u.split(":")[0] for u in result.undecided] == ["UNDECIDED time", "UNDECIDED memory"]
    assert ("no between-process noise known for it (give --noise from `odperf gate --calibrate N` on this machine): "
            "undecided: run `odperf ab`") in result.undecided[0]


def test_mean_stays_a_plain_ratio_and_map_and_outcomes_stay_exact(tmp_path: Path):
    tf = ("tensorflow", "2.21.0")
    base = [Bench("m", 8, [1.0] * 5, peak_mb=900.0, map=0.5, runtime=tf), Bench("m", 64, [1.0] * 5, peak_mb=9.0)]
    worse = [replace(base[0], map=0.4999), replace(base[1], outcome="crash", times=[])]
    result = gate(tmp_path, base, worse, noise=mr.noise(time_sd=0.5, memory_sd=0.5))  # noise excuses no mAP
    assert sorted(f.kind for f in result.failures) == ["map", "outcome"]


def _noisy_runs(tmp_path: Path, n: int, sd: float, profile: str = "cpu") -> list:
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        level, mem = float(rng.lognormal(0.0, sd)), float(rng.lognormal(0.0, sd))
        benches = [Bench("m", b, [level * b] * 4, peak_mb=800.0 + 200.0 * mem, model_mb=200.0 * mem) for b in (1, 64)]
        out.append(load_run(mr.write_run(tmp_path / f"r{k}.json", profile, benches)))
    return out


def test_a_noise_is_measured_from_saved_runs_and_kept_with_its_provenance(tmp_path: Path):
    runs = _noisy_runs(tmp_path, 12, 0.05)
    noise = gn.measure(runs, "12 runs of the test")
    assert noise.profile == "cpu" and noise.probe == "rss" and noise.machine == "synthetic-test-data"
    assert [(s.model, s.batch_size, s.runs) for s in noise.cases] == [("m", 1, 12), ("m", 64, 12)]
    sd, dof = noise.spread("m", 64, "time")
    assert 0.03 < sd < 0.08 and dof == 11
    assert noise.spread("other", 8, "memory")[1] == 22  # a case not measured: every case pooled
    path = tmp_path / "noise.json"
    path.write_text(json.dumps(noise.to_json()))
    assert gn.load(path) == noise
    assert "measured" in noise.describe() and "12 runs of the test" in noise.describe()
    with pytest.raises(ResultsError, match="at least 3 runs"):
        gn.measure(runs[:2], "x")
    with pytest.raises(ResultsError, match="one device profile"):
        gn.measure(runs[:3] + _noisy_runs(tmp_path / "v", 1, 0.05, "v100_sxm2"), "x")
    for text, words in [("{}", "not an odperf gate noise file"), ("[", "not readable JSON")]:
        path.write_text(text)
        with pytest.raises(ResultsError, match=words):
            gn.load(path)
    with pytest.raises(ResultsError, match="no such file"):
        gn.load(tmp_path / "absent.json")
    with pytest.raises(ResultsError, match="--time-noise is a log standard deviation"):
        noise.overridden(5.0, None)
    given = noise.overridden(0.2, None)
    assert given.spread("m", 1, "time") == (0.2, 11) and "--time-noise 0.2 given" in given.source


def test_the_shipped_noise_says_where_when_and_how_it_was_measured():
    noise = gn.shipped()
    assert noise.profile == "cpu" and noise.probe == "host_rss"  # the suite's cpu probe
    assert noise.source.startswith("odperf gate --calibrate") and noise.measured[:2] == "20"
    assert {(s.model, s.batch_size) for s in noise.cases} >= {("centernet_tiny", 1), ("centernet_tiny", 64)}
    assert all(s.runs >= gn.MIN_RUNS and 0 < s.time_log_sd < 1 and 0 < s.memory_log_sd < 1 for s in noise.cases)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "odperf.cli", "gate", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_undecided_exits_3_and_says_run_odperf_ab(tmp_path: Path):
    runs = _noisy_runs(tmp_path, 4, 0.05)
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps(gn.measure(runs, "four runs").to_json()))
    base = mr.write_run(tmp_path / "b.json", "cpu", [Bench("m", 64, [64.0] * 4, peak_mb=1000.0, model_mb=200.0)])
    cur = mr.write_run(tmp_path / "c.json", "cpu", [Bench("m", 64, [72.0] * 4, peak_mb=1000.0, model_mb=200.0)])
    done = _cli("--baseline", str(base), "--current", str(cur), "--noise", str(noise))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "UNDECIDED time: m batch 64: median time per image 64 s -> 72 s (+12.5%" in done.stdout
    assert "noise: noise of profile cpu" in done.stdout and "four runs" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("odperf gate: UNDECIDED")
    assert _cli("--baseline", str(base), "--current", str(cur), "--noise", str(noise), "--time-noise",
                "0.001").returncode == 1
    for args, words in [((), "needs --baseline FILE and --current FILE (or --calibrate N)"),
                        (("--calibrate", "1", "--baseline", str(base)), "leave out --baseline/--current"),
                        (("--baseline", str(base), "--current", str(cur), "--noise", str(tmp_path / "x.json")),
                         "x.json: no such file (write one with `odperf gate --calibrate N`)")]:
        done = _cli(*args)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- real saved runs: the calibration's first rounds on the 2-core reference machine, under load ------------
REAL = Path(__file__).parent / "data" / "runs" / "gate"  # pytest --benchmark-json of HEAD, HEAD, planted


def test_real_saved_runs_aa_never_fails_and_a_planted_regression_is_caught_or_undecided(tmp_path: Path):
    """Round 1 of `odperf gate --calibrate` (centernet_tiny and ssd_fpn at batches 1 and 64, 6 images),
    judged with the noise of rounds 2 and 3 (four other HEAD processes of the same code). The time of one
    process moved by more than 3x between runs (ssd_fpn at batch 64 in round 2) on the loaded machine, so no
    time can be decided; memory can."""
    noise = gn.measure([load_run(REAL / f"head-{k}-{s}.json") for k in (2, 3) for s in "ab"], "rounds 2 and 3")
    base = load_run(REAL / "head-1-a.json")
    aa = run_gate(base, load_run(REAL / "head-1-b.json"), GateConfig(noise=noise, strict=True))
    assert aa.failures == [] and aa.exit_code == EXIT_UNDECIDED  # mAP and outcomes exact, and equal
    assert aa.compared.maps == 2 and aa.compared.memory == 4
    assert all(u.startswith("UNDECIDED time: ") and u.endswith("undecided: run `odperf ab`") for u in aa.undecided)
    assert sum("+25% ruled out: within the threshold" in t for t in aa.times if t.startswith("memory:")) == 4

    planted = run_gate(base, load_run(REAL / "planted-1.json"), GateConfig(noise=noise, strict=True))
    assert planted.exit_code == 1 and {f.kind for f in planted.failures} == {"memory"}
    assert "model's own memory 293 MB -> 339 MB (+15.6%" in str(planted.failures[0])
    verdicts = [t.rsplit(": ", 1)[1] for t in planted.times]
    assert len(verdicts) == 8 and gn.WITHIN not in verdicts  # every figure grew: caught or undecided, none passed

    path = tmp_path / "noise.json"
    path.write_text(json.dumps(noise.to_json()))
    done = _cli("--baseline", str(REAL / "head-1-a.json"), "--current", str(REAL / "planted-1.json"), "--noise",
                str(path))
    assert done.returncode == 1 and "FAIL memory: centernet_tiny batch 64" in done.stdout
    done = _cli("--baseline", str(REAL / "head-1-a.json"), "--current", str(REAL / "head-1-b.json"), "--noise",
                str(path))
    assert done.returncode == 3 and done.stdout.strip().splitlines()[-1].startswith("odperf gate: UNDECIDED")
