"""``odperf report``: tables, figures and the index page from saved runs of two hardware profiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.errors import ResultsError
from odperf.report.index import build_report, write_report
from odperf.report.rows import device_memory_mb, latest_named, load_runs, rows_of
from odperf.report.selection import best_batches, deadline_choices, pareto_front
from odperf.results import load_run


Bench = mr.Bench


def odperf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "odperf.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def two_profiles(tmp_path: Path) -> Path:
    mr.main(tmp_path / "runs")
    return tmp_path / "runs"


def test_report_writes_every_table_and_figure(two_profiles: Path, tmp_path: Path):
    runs = load_runs([two_profiles])
    report = build_report(runs, deadlines_s=[2.0])
    index = write_report(report, tmp_path / "out")

    # one row per (device, model, batch): a timing and an accuracy record of one batch share it
    assert len(report.table("measurements").rows) == len({r.key[:3] for run in runs for r in run.records})
    assert sum(len(r.records) for r in runs) > len(report.table("measurements").rows)
    ssd64 = next(row for row in report.table("measurements").rows if row[:3] == ["v100_sxm2", "ssd_mobilenet_v2", 64])
    headers = report.table("measurements").headers
    side = dict(zip(headers, ssd64))
    assert side["mAP"] == 0.22 and side["mAP from"] == "accuracy" and side["times from"] == "stats"
    assert side["mean s/img"] == pytest.approx(0.743, rel=0.05)  # the timed run's, not the accuracy pass's
    # one best batch per (profile, model) that ran ok at least once
    pairs = {(r.profile, r.model) for run in runs for r in rows_of(run) if r.ok}
    assert {(row[0], row[1]) for row in report.table("best_batch").rows} == pairs
    deadlines = {(row[0], row[1]) for row in report.table("deadlines").rows}
    assert deadlines == {(p, d) for p in ("cpu", "v100_sxm2") for d in (1.0, 2.0, 4.0, 32.0)}

    names = {"time_vs_batch_cpu.png", "time_vs_batch_v100_sxm2.png", "memory_vs_batch_cpu.png",
             "memory_vs_batch_v100_sxm2.png", "best_time_vs_memory.png", "time_by_map_group.png", "pareto.png"}
    assert {p.path.name for p in report.plots} == names
    text = index.read_text()
    for name in names:
        image = matplotlib.image.imread(tmp_path / "out" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({name})" in text
    for table in report.tables:
        assert table.title in text
        assert table.title in (tmp_path / "out" / "tables.md").read_text()
    # a failed measurement is listed with its outcome, not dropped
    assert any(row[1] == "faster_rcnn_nas" and row[2] == 4 and row[3] == "oom"
               for row in report.table("measurements").rows)


def test_best_batch_instances_and_deadlines_follow_the_figures(tmp_path: Path):
    benches = [
        Bench("fast", 1, [1.0] * 3, peak_mb=1000.0, map=0.20, group="lowest"),
        Bench("fast", 8, [0.5] * 3, peak_mb=3000.0, map=0.20, group="lowest"),
        Bench("slow", 1, [6.0] * 3, peak_mb=5000.0, map=0.40, group="medium"),
        Bench("slow", 2, [3.0] * 3, peak_mb=7000.0, map=0.40, group="medium"),
        Bench("slow", 4, outcome="oom", map=0.40, group="medium"),
        Bench("worse", 1, [2.0] * 3, peak_mb=500.0, map=0.10, group="lowest"),
    ]
    path = mr.write_run(tmp_path / "g.json", "gpu_x", benches, memory_mb=16000.0)
    run = load_run(path)
    bests = {b.row.model: b for b in best_batches(rows_of(run), {"gpu_x": device_memory_mb(run)})}
    assert (bests["fast"].row.batch_size, bests["fast"].row.peak_mb, bests["fast"].instances) == (8, 3000.0, 5)
    assert (bests["slow"].row.batch_size, bests["slow"].instances) == (2, 2)
    choices = {c.deadline_s: c for c in deadline_choices(list(bests.values()), [1.0, 4.0, 0.1])}
    assert choices[0.1].most_accurate is None and not choices[0.1].meeting
    assert choices[1.0].most_accurate.row.model == "fast"
    assert choices[4.0].most_accurate.row.model == "slow"
    assert {b.row.model for b in choices[4.0].meeting} == {"fast", "slow", "worse"}
    # "worse" is slower and less accurate than "fast": off the front
    assert [b.row.model for b in pareto_front(list(bests.values()))] == ["fast", "slow"]


def test_an_emulated_cpu_device_states_its_cap_and_peaks_in_the_models_own_terms(tmp_path: Path):
    """Its cap is set above the runtime: a 400 MB device fits copies of a model whose own memory is 150 MB,
    though the worker's whole peak (runtime included) is 1000 MB."""
    cap = {"profile": None, "memory_limit_mb": 400, "how": "rlimit_data_above_runtime"}
    benches = [Bench("m", 8, [0.5] * 3, peak_mb=1000.0, model_mb=150.0, emulated=cap),
               Bench("m", 64, outcome="oom", peak_mb=1100.0, model_mb=390.0, emulated=cap)]
    run = load_run(mr.write_run(tmp_path / "e.json", "cpu_400mb", benches))
    [best] = best_batches(rows_of(run), {"cpu_400mb": device_memory_mb(run)})
    assert (best.capacity_mb, best.footprint_mb, best.instances) == (400.0, 150.0, 2)
    report = build_report([run])
    table = report.table("measurements")
    column = table.headers.index("model MB")
    assert [row[column] for row in table.rows] == [150.0, 390.0]
    real = load_run(mr.write_run(tmp_path / "r.json", "cpu", [Bench("m", 8, [0.5] * 3, peak_mb=1000.0,
                                                                     model_mb=150.0)], memory_mb=4000.0))
    [best] = best_batches(rows_of(real), {"cpu": device_memory_mb(real)})
    assert best.instances == 4  # a real device holds each copy's runtime too


def test_times_prefer_benchmark_stats_and_p95_comes_from_raw_data(tmp_path: Path):
    data = json.loads(json.dumps(mr.run_json("cpu", [Bench("m", 1, [1.0, 2.0, 3.0, 4.0, 10.0], peak_mb=1.0)])))
    bench = data["benchmarks"][0]
    for rec in (bench["extra_info"], data["odperf"]["records"][0]):  # one record, saved in both places
        rec["time_per_image_s"] = {"mean": 99.0, "median": 99.0, "p95": 99.0}
    (tmp_path / "a.json").write_text(json.dumps(data))
    row = rows_of(load_run(tmp_path / "a.json"))[0]
    assert (row.mean_s, row.median_s, row.time_source) == (4.0, 3.0, "stats")
    assert row.p95_s == pytest.approx(8.8)  # numpy's linear percentile of the five rounds
    assert row.tiles_per_s == pytest.approx(64 / 4.0)

    del bench["stats"]["data"]  # saved without --benchmark-save-data: p95 from the record
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert rows_of(load_run(tmp_path / "b.json"))[0].p95_s == 99.0

    data["benchmarks"] = []  # never timed by pytest-benchmark: the record's own times
    (tmp_path / "c.json").write_text(json.dumps(data))
    row = rows_of(load_run(tmp_path / "c.json"))[0]
    assert (row.mean_s, row.time_source) == (99.0, "record")


def test_device_memory_from_machine_info_else_emulated_limit_else_unknown(tmp_path: Path):
    with_info = load_run(mr.write_run(tmp_path / "a.json", "p_x", [Bench("m", 1, [1.0], peak_mb=1.0)],
                                      memory_mb=12000.0))
    assert device_memory_mb(with_info) == 12000.0
    data = mr.run_json("no_such_device_profile", [Bench("m", 1, [1.0], peak_mb=1.0)])
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert device_memory_mb(load_run(tmp_path / "b.json")) is None
    for rec in (data["benchmarks"][0]["extra_info"], data["odperf"]["records"][0]):
        rec["emulated"] = {"profile": "p100", "memory_limit_mb": 12288}
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert device_memory_mb(load_run(tmp_path / "c.json")) == 12288.0
    # the suite's own machine_info lists each target device with its memory
    data["machine_info"]["odperf"]["targets"] = [
        {"device": "cpu", "label": "cpu", "profile": "cpu", "markers": ["cpu"], "memory_mb": 25000.0},
        {"device": "gpu:0", "label": "gpu", "profile": "no_such_device_profile", "markers": [], "memory_mb": 8000.0},
    ]
    (tmp_path / "d.json").write_text(json.dumps(data))
    assert device_memory_mb(load_run(tmp_path / "d.json")) == 8000.0


def test_folders_skip_foreign_files_and_latest_named_keeps_newest(two_profiles: Path, tmp_path: Path):
    (two_profiles / "other_suite.json").write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    assert {r.profile for r in load_runs([two_profiles])} == {"cpu", "v100_sxm2"}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.json").write_text("{}")
    with pytest.raises(ResultsError, match="no odperf results file"):
        load_runs([empty])

    store = tmp_path / "store"
    mr.write_run(store / "cpu" / "0001_main.json", "cpu", [Bench("m", 1, [1.0])], when="2024-01-01T00:00:00")
    mr.write_run(store / "cpu" / "0002_main.json", "cpu", [Bench("m", 1, [2.0])], when="2024-02-01T00:00:00")
    mr.write_run(store / "cpu" / "0003_other.json", "cpu", [Bench("m", 1, [3.0])], when="2024-03-01T00:00:00")
    chosen = latest_named(load_runs([store]), "main")
    assert [r.path.name for r in chosen] == ["0002_main.json"]


def test_cli_report_and_its_errors(two_profiles: Path, tmp_path: Path):
    out = tmp_path / "reports" / "x"
    done = odperf("report", str(two_profiles), "--out", str(out), "--deadline", "2.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ssd_mobilenet_v2" in done.stdout and "2.5" in done.stdout
    assert (out / "index.md").is_file() and (out / "pareto.png").is_file()

    (tmp_path / "corrupt.json").write_text('{"machine_info": {}, "benchmarks": [')
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "foreign.json").write_text(json.dumps({"machine_info": {}, "benchmarks": [
        {"name": "test_x", "fullname": "t.py::test_x", "extra_info": {}, "stats": {"mean": 1.0}}]}))
    for name, message in [("corrupt.json", "not valid JSON"), ("empty.json", "empty"),
                          ("foreign.json", "no odperf measurements"), ("absent.json", "no such results file")]:
        done = odperf("report", str(tmp_path / name), "--out", str(tmp_path / "r"), cwd=tmp_path)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert name in done.stderr and message in done.stderr
        assert "Traceback" not in done.stderr


def test_report_of_runs_with_no_success_and_no_accuracy(tmp_path: Path, recwarn):
    mr.write_run(tmp_path / "runs" / "a.json", "tx2", [Bench("m", 1, outcome="oom"), Bench("m", 2, outcome="crash")])
    mr.write_run(tmp_path / "runs" / "b.json", "l4", [Bench("m", 1, [1.0]), Bench("k", 2, [2.0], peak_mb=3.0)])
    report = build_report(load_runs([tmp_path / "runs"]))
    write_report(report, tmp_path / "out")
    assert not [w for w in recwarn if "matplotlib" in str(w.filename)]
    for plot in report.plots:
        assert matplotlib.image.imread(plot.path).ndim == 3
    rows = report.table("deadlines").rows
    assert [(r[0], r[1], r[2]) for r in rows if r[0] == "tx2"] == [("tx2", 1.0, 0), ("tx2", 4.0, 0), ("tx2", 32.0, 0)]
    assert report.table("pareto").rows == []


def test_invented_runs_say_so_where_a_reader_of_the_file_looks(two_profiles: Path):
    """tests/data/runs/{cpu,v100_sxm2}.json name real devices but hold invented figures: their machine_info
    says so first, in the committed files and in what tests/make_runs.py writes."""
    committed = Path(__file__).parent / "data" / "runs"
    for folder in (committed, two_profiles):
        for name in ("cpu.json", "v100_sxm2.json"):
            machine = json.loads((folder / name).read_text())["machine_info"]
            assert next(iter(machine)) == "synthetic" and "invented test data" in machine["synthetic"], folder / name
            assert machine["node"] == "synthetic-test-data" and machine["odperf"]["synthetic"] is True
def test_figures_taken_under_load_are_flagged_in_the_measurements_table():
    from odperf.report.rows import rows_from
    from odperf.report.tables import measurements_table
    from odperf.results import RunRecord

    def record(batch: int, share: float | None, steal: float | None = None) -> RunRecord:
        load = None if share is None else {"cores": 2, "others_cores": 2 * share, "others_share": share,
                                           "loaded": share > 0.1, "threshold_share": 0.1, "steal_cores": steal}
        return RunRecord(model="m", device_profile="cpu", batch_size=batch, images_timed=3,
                         time_per_image_s={"mean": 1.0, "median": 1.0, "p95": 1.0}, load=load)

    table = measurements_table(rows_from((r, None) for r in (
        record(1, 0.9), record(8, 0.02, steal=0.0), record(16, 0.3, steal=0.5), record(64, None))))
    cells = [dict(zip(table.headers, row))["others' CPU"] for row in table.rows]
    assert cells == ["90% of 2 cores, UNDER LOAD", "2% of 2 cores",
                     "30% of 2 cores (25% stolen by the hypervisor), UNDER LOAD", None]
    assert "UNDER LOAD marks a figure taken on a busy machine" in table.note
