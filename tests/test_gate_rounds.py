"""The gate on distributions: the model's own memory is gated, not the runtime's; mAP is exact on one runtime
version; over interleaved pairs (odperf ab) a change must be significant over the pairs. Two single runs
against the between-process noise: tests/test_gate_noise.py."""

from __future__ import annotations

from pathlib import Path

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.report import significance as sig
from odperf.report.gate import GateConfig, run_gate
from odperf.results import load_run

Bench = mr.Bench


def gate(tmp_path: Path, base: list[Bench], current: list[Bench], include_data: bool = True, **config):
    b = load_run(mr.write_run(tmp_path / "b.json", "cpu", base, include_data=include_data))
    c = load_run(mr.write_run(tmp_path / "c.json", "cpu", current, include_data=include_data))
    return run_gate(b, c, GateConfig(**{"noise": mr.noise(), **config}))


def test_memory_is_gated_on_the_models_own_not_the_runtimes(tmp_path: Path):
    base = [Bench("m", 8, [1.0] * 5, peak_mb=1000.0, model_mb=100.0)]
    runtime_grew = [Bench("m", 8, [1.0] * 5, peak_mb=1105.0, model_mb=100.0)]  # +10.5% all runtime
    assert gate(tmp_path, base, runtime_grew).passed
    model_grew = [Bench("m", 8, [1.0] * 5, peak_mb=1030.0, model_mb=130.0)]
    [failure] = gate(tmp_path, base, model_grew).failures
    assert "model's own memory 100 MB -> 130 MB (+30.0%" in str(failure) and "peak 1000 -> 1030 MB" in str(failure)
    older = [Bench("m", 8, [1.0] * 5, peak_mb=1000.0)]  # a file from before the model's own figure
    [failure] = gate(tmp_path, older, runtime_grew).failures
    assert "peak memory 1000 MB -> 1105 MB" in str(failure) and "runtime included" in str(failure)


def test_map_is_exact_on_one_runtime_version_and_tolerant_across_versions(tmp_path: Path):
    tf = ("tensorflow", "2.21.0")
    base = [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.5, runtime=tf)]
    [failure] = gate(tmp_path, base, [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.4999, runtime=tf)]).failures
    assert failure.kind == "map" and "exact: both runs on tensorflow 2.21.0" in str(failure)
    assert gate(tmp_path, base, [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.5, runtime=tf)]).passed
    newer = ("tensorflow", "2.22.0")
    assert gate(tmp_path, base, [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.495, runtime=newer)]).passed
    [failure] = gate(tmp_path, base, [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.48, runtime=newer)]).failures
    assert "tolerance 0.01" in str(failure)


def test_strict_fails_on_any_changed_outcome_or_map_improvements_included(tmp_path: Path):
    tf = ("tensorflow", "2.21.0")
    base = [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.5, runtime=tf), Bench("m", 64, outcome="oom", runtime=tf)]
    better = [Bench("m", 8, [1.0] * 5, peak_mb=9.0, map=0.51, runtime=tf),
              Bench("m", 64, [1.0] * 5, peak_mb=9.0, runtime=tf)]
    assert gate(tmp_path, base, better).passed  # a fixed oom and a better mAP are no regression
    failures = gate(tmp_path, base, better, strict=True).failures
    assert sorted(f.kind for f in failures) == ["map", "outcome"]
    assert "outcome changed: oom -> ok (strict)" in str(failures[0]) + str(failures[1])


def test_pairs_are_tested_one_ratio_each_not_as_pooled_rounds():
    """Interleaved A/B pairs: a consistent slowdown is significant, a noisy equal one is not, two are too few."""
    from odperf.report.significance import REGRESSION, UNDECIDED, WITHIN, NOT_SIGNIFICANT, compare_pairs

    slower = compare_pairs([1.31, 1.27, 1.35, 1.29, 1.33], threshold=0.10)
    assert slower.verdict == REGRESSION and slower.low > 1.0 and 1.27 < slower.ratio < 1.35
    assert "over 5 pairs" in slower.text() and "paired t-test" in slower.text()
    noisy = compare_pairs([0.53, 1.22, 0.95, 1.10, 0.88], threshold=0.10)  # A/A on a loaded machine
    assert noisy.verdict == WITHIN and noisy.low < 1.0 < noisy.high
    one_slow_pair = compare_pairs([1.0, 1.02, 1.9], threshold=0.10)  # one disturbed pair is not a slowdown
    assert one_slow_pair.verdict == NOT_SIGNIFICANT
    too_few = compare_pairs([1.5, 1.6], threshold=0.10)
    assert too_few.verdict == UNDECIDED and "over 2 pairs" in too_few.text() and "Mann-Whitney" not in too_few.text()


def test_memory_over_pairs_is_a_regression_only_when_its_growth_is_significant(tmp_path: Path):
    """odperf ab's memory: one figure of the model's own memory per slot. Slot to slot it moves by several
    percent (the 10 ms sampler catches more or less of a transient peak); one ratio above the threshold
    among A/A pairs is noise, a growth every pair shows is a regression."""
    base = [Bench("m", 64, [1.0] * 5, peak_mb=960.0, model_mb=264.0)]
    cur = [Bench("m", 64, [1.0] * 5, peak_mb=990.0, model_mb=292.0)]  # +10.6%: on a quiet machine, fails
    assert [f.kind for f in gate(tmp_path, base, cur).failures] == ["memory"]
    key = ("cpu", "m", 64)
    aa = gate(tmp_path, base, cur, memory_pair_ratios={key: [1.11, 0.93, 1.02, 1.06, 0.97, 1.08]})
    assert aa.passed, aa.failures
    [line] = [t for t in aa.times if t.startswith("memory:")]
    assert "m batch 64: model's own memory, geometric mean ratio" in line and "over 6 pairs" in line
    grown = gate(tmp_path, base, cur, memory_pair_ratios={key: [1.31, 1.27, 1.35, 1.29, 1.33, 1.30]})
    [failure] = grown.failures
    assert failure.kind == "memory" and "significant, geometric mean ratio 1.3" in str(failure)
    assert "model's own memory 264 MB -> 292 MB" in str(failure)
    few = gate(tmp_path, base, cur, memory_pair_ratios={key: [1.3, 1.32]})  # too few pairs to decide
    assert "run more pairs (--pairs)" in str(few.failures[0])
    # the memory test has its own alpha: p = 0.03 passes at 0.01 and fails at 0.05
    edgy = [1.35, 1.02, 1.28, 1.15]
    p = sig.compare_pairs(edgy, 0.10).p_slower
    assert 0.01 < p < 0.05, p
    assert gate(tmp_path, base, cur, memory_pair_ratios={key: edgy}).passed
    assert not gate(tmp_path, base, cur, memory_pair_ratios={key: edgy}, memory_alpha=0.05).passed


def test_the_geometric_mean_of_ratios_is_taken_in_logs():
    assert sig.geometric_mean([1.25, 0.8]) == 1.0
    assert sig.compare_pairs([1.25, 0.8, 1.1], 0.1).ratio == sig.geometric_mean([1.25, 0.8, 1.1])
