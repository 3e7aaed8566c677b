"""``odperf compare``: runs of two devices side by side, on figures whose ratios are known."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.report.compare import compare_runs, render
from odperf.results import load_run


Bench = mr.Bench


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = mr.write_run(tmp_path / "p100.json", "p100", [
        Bench("m", 1, [2.0, 2.0, 2.0], peak_mb=1000.0),
        Bench("m", 2, [1.0, 1.0, 1.0], peak_mb=1500.0),
        Bench("n", 1, [8.0, 8.0], peak_mb=4000.0),
        Bench("n", 4, outcome="oom"),
        Bench("only_a", 1, [1.0], peak_mb=10.0),
    ])
    b = mr.write_run(tmp_path / "a100.json", "a100", [
        Bench("m", 1, [1.0, 1.0, 1.0], peak_mb=1200.0),
        Bench("m", 2, [0.25, 0.25, 0.25], peak_mb=1500.0),
        Bench("n", 1, [16.0, 16.0], peak_mb=2000.0),
        Bench("n", 4, [5.0, 5.0], peak_mb=9000.0),
    ])
    return a, b


def test_ratios_geometric_mean_and_oom_changes(pair):
    c = compare_runs(load_run(pair[0]), load_run(pair[1]))
    rows = {(r.model, r.batch_size): r for r in c.rows}
    assert rows[("m", 1)].time_ratio == pytest.approx(0.5)
    assert rows[("m", 2)].time_ratio == pytest.approx(0.25)
    assert rows[("n", 1)].time_ratio == pytest.approx(2.0)
    assert rows[("m", 1)].memory_ratio == pytest.approx(1.2)
    assert rows[("n", 1)].memory_ratio == pytest.approx(0.5)
    assert [rows[k].faster for k in [("m", 1), ("n", 1), ("n", 4), ("only_a", 1)]] == ["B", "A", None, None]
    # speedup of B over A over the three rows both ran ok: (2 * 4 * 0.5) ** (1/3)
    assert c.rows_both_ok == 3
    assert c.speedup == pytest.approx(4 ** (1 / 3))
    assert [(ch.model, ch.oom_a, ch.oom_b) for ch in c.oom_changes] == [("n", (4,), ())]
    text = render(c)
    assert "faster than" in text and "OOM changed: n" in text and "only_a" in text


def test_no_common_rows_says_so(tmp_path: Path):
    a = load_run(mr.write_run(tmp_path / "a.json", "x", [Bench("m", 1, [1.0])]))
    b = load_run(mr.write_run(tmp_path / "b.json", "y", [Bench("k", 1, [1.0])]))
    c = compare_runs(a, b)
    assert c.speedup is None and "nothing to compare" in c.summary()


def test_median_metric(tmp_path: Path):
    a = load_run(mr.write_run(tmp_path / "a.json", "x", [Bench("m", 1, [1.0, 1.0, 10.0])]))
    b = load_run(mr.write_run(tmp_path / "b.json", "y", [Bench("m", 1, [2.0, 2.0, 2.0])]))
    assert compare_runs(a, b, "mean").speedup == pytest.approx(2.0)
    assert compare_runs(a, b, "median").speedup == pytest.approx(0.5)


def test_cli_compare_writes_markdown_and_csv(pair, tmp_path: Path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    md, out_csv = tmp_path / "o" / "cmp.md", tmp_path / "o" / "cmp.csv"
    done = subprocess.run(
        [sys.executable, "-m", "odperf.cli", "compare", str(pair[0]), str(pair[1]), "--markdown", str(md),
         "--csv", str(out_csv)], capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "a100:a100 is 1.59x faster than p100:p100" in done.stdout
    assert "| m " in md.read_text() and "OOM changed: n" in md.read_text()
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    m1 = next(r for r in rows if r["model"] == "m" and r["batch"] == "1")
    assert math.isclose(float(m1["time B/A"]), 0.5) and m1["faster"] == "B"

    done = subprocess.run([sys.executable, "-m", "odperf.cli", "compare", str(pair[0])],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "at least two runs" in done.stderr


def test_a_ratio_taken_under_load_or_held_clocks_carries_a_caveat(tmp_path: Path):
    """Two GPUs compared: B's batch 8 ran with its clocks held by a power cap, A's batch 1 on a busy host;
    the rows that ran idle at full clocks (an idle share of samples is no cap) carry nothing."""
    capped = {"clock_event_reasons": {"gpu_idle": 0.1, "sw_power_cap": 0.75}}
    idle_only = {"clock_event_reasons": {"gpu_idle": 0.2}}
    busy = {"cores": 16, "others_cores": 6.4, "others_share": 0.4, "loaded": True, "threshold_share": 0.1}
    quiet = {"cores": 16, "others_cores": 0.16, "others_share": 0.01, "loaded": False, "threshold_share": 0.1}
    a = load_run(mr.write_run(tmp_path / "a.json", "h100", [
        Bench("m", 1, [1.0, 1.0], extra={"load": busy, "gpu_state": idle_only}),
        Bench("m", 8, [0.5, 0.5], extra={"load": quiet, "gpu_state": idle_only}),
        Bench("m", 64, [0.4, 0.4], extra={"load": quiet, "gpu_state": idle_only})]))
    b = load_run(mr.write_run(tmp_path / "b.json", "h200", [
        Bench("m", 1, [0.8, 0.8], extra={"load": quiet, "gpu_state": idle_only}),
        Bench("m", 8, [0.6, 0.6], extra={"load": quiet, "gpu_state": capped}),
        Bench("m", 64, [0.3, 0.3], extra={"load": quiet, "gpu_state": idle_only})]))
    text = render(compare_runs(a, b))
    caveats = [ln for ln in text.splitlines() if ln.startswith("CAVEAT")]
    assert caveats == [
        "CAVEAT: m batch 1: A: others used 6.40 of 16 cores (40%) while it was timed",
        "CAVEAT: m batch 8: B: clocks held (sw_power_cap 75% of the GPU's samples)",
    ]
    assert "- CAVEAT: m batch 8" in render(compare_runs(a, b), markdown=True)
