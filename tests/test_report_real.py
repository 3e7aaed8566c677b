"""Reports, compare and gate on JSON the real suite wrote: the main job on this project's reference CPU
and its pass on the emulated 400 MB device (two hardware profiles), kept in tests/data/runs/real/.
Regenerate with `bash tasks.sh bench` and copy .benchmarks/main.json and main-cpu_400mb.json there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image

from odperf.report.compare import compare_runs
from odperf.report.index import build_report, write_report
from odperf.report.rows import load_runs
from odperf.results import load_run

REAL = Path(__file__).parent / "data" / "runs" / "real"
CPU, SMALL = REAL / "cpu.json", REAL / "cpu_400mb.json"
MODELS = {"centernet_tiny", "ssd_fpn", "faster_rcnn_fpn"}


def odperf(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "odperf.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_saved_runs_are_the_suites_own():
    cpu, small = load_run(CPU), load_run(SMALL)
    assert (cpu.profile, small.profile) == ("cpu", "cpu_400mb")
    assert {(r.model, r.batch_size) for r in cpu.records} == {(m, b) for m in MODELS for b in (1, 2, 4, 8, 16, 32, 64)}
    assert all(r.outcome == "ok" and r.map and r.images_timed == 10 for r in cpu.records)
    assert {(r.batch_size, r.outcome) for r in small.records} == {(1, "ok"), (8, "ok"), (64, "oom")}
    assert all(r.emulated["memory_limit_mb"] == 400 for r in small.records)


def test_report_of_two_real_profiles(tmp_path: Path):
    report = build_report(load_runs([REAL]), deadlines_s=[0.2])
    index = write_report(report, tmp_path / "out")
    assert len(report.table("measurements").rows) == 21 + 9
    best = {(row[0], row[1]): row[2] for row in report.table("best_batch").rows}
    assert set(best) == {(p, m) for p in ("cpu", "cpu_400mb") for m in MODELS}
    assert all(best[("cpu_400mb", m)] in (1, 8) for m in MODELS)  # batch 64 ran out of memory there
    deadlines = {(row[0], row[1]) for row in report.table("deadlines").rows}
    assert deadlines == {(p, d) for p in ("cpu", "cpu_400mb") for d in (0.2, 1.0, 4.0, 32.0)}
    names = {"time_vs_batch_cpu.png", "time_vs_batch_cpu_400mb.png", "memory_vs_batch_cpu.png",
             "memory_vs_batch_cpu_400mb.png", "best_time_vs_memory.png", "time_by_map_group.png", "pareto.png"}
    assert {p.path.name for p in report.plots} == names
    for name in names:
        assert matplotlib.image.imread(tmp_path / "out" / name).shape[0] > 100
        assert f"]({name})" in index.read_text()


def test_compare_and_gate_on_real_runs(tmp_path: Path):
    c = compare_runs(load_run(CPU), load_run(SMALL))
    assert {ch.model for ch in c.oom_changes} == MODELS
    out = odperf("compare", str(CPU), str(SMALL))
    assert out.returncode == 0, out.stderr
    assert "faster_rcnn_fpn" in out.stdout and "oom" in out.stdout.lower()
    same = odperf("gate", "--baseline", str(CPU), "--current", str(CPU), "--time-noise", "0.05", "--memory-noise", "0.05")
    assert same.returncode == 0, same.stdout + same.stderr
    missing = odperf("gate", "--baseline", str(CPU), "--current", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "xdist" in missing.stderr
