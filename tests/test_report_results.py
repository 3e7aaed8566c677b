"""Reading saved runs back: every measurement read once, by what it measured; schemas; paths that are wrong.

The committed ``data/runs/v1/centernet_tiny_b64.json`` is what the suite wrote at schema 1 for
``pytest benchmarks -p no:xdist --odperf-models=centernet_tiny --odperf-batch-sizes=64 --odperf-images=2
--odperf-devices=cpu``: the accuracy benchmark's record and the timing record of batch 64 with one (old) key.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.errors import ResultsError
from odperf.report.index import build_report, write_report
from odperf.report.rows import load_runs, rows_of
from odperf.results import ACCURACY, SCHEMA_VERSION, TIMING, RunRecord, load_run, migrate_record

Bench = mr.Bench
DATA = Path(__file__).parent / "data" / "runs"
V1_COLLISION = DATA / "v1" / "centernet_tiny_b64.json"
REAL = DATA / "real"


def odperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "odperf.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _timed_and_scored() -> list[Bench]:
    """batch 64 timed (no mAP) and scored by the accuracy benchmark, whose own image times are slower."""
    return [Bench("m", 8, [1.0, 1.0, 1.0], peak_mb=900.0), Bench("m", 64, [0.5, 0.5, 0.5], peak_mb=1000.0),
            Bench("m", 64, [3.0, 3.0], kind=ACCURACY, map=0.534, repairs={"clipped": 2})]


# --- kinds ---------------------------------------------------------------------------------------------
def test_a_timing_and_an_accuracy_record_of_one_batch_are_both_read_and_shown_side_by_side(tmp_path: Path):
    run = load_run(mr.write_run(tmp_path / "run.json", "cpu", _timed_and_scored()))
    assert sorted((r.batch_size, r.kind) for r in run.records) == [(8, TIMING), (64, ACCURACY), (64, TIMING)]
    rows = {r.batch_size: r for r in rows_of(run)}
    assert len(rows) == 2
    r64 = rows[64]
    assert (r64.mean_s, r64.time_source, r64.peak_mb) == (0.5, "stats", 1000.0)  # the timed run's
    assert (r64.map, r64.map_source, r64.repairs) == (0.534, ACCURACY, {"clipped": 2})
    assert rows[8].map is None  # not measured at batch 8: not shown there ...
    report = build_report([run])
    assert report.bests[0].row.batch_size == 64 and report.bests[0].map == 0.534
    accuracy = dict(zip(report.table("accuracy").headers, report.table("accuracy").rows[0]))
    assert accuracy["mAP"] == "0.534" and accuracy["mAP from"] == "accuracy b64"
    assert accuracy["repairs"] == "clipped 2"


def test_best_batch_takes_the_models_map_from_the_accuracy_run_at_another_batch(tmp_path: Path):
    benches = [Bench("m", 8, [0.2] * 3, peak_mb=900.0), Bench("m", 64, [0.5] * 3, peak_mb=1000.0),
               Bench("m", 64, [3.0], kind=ACCURACY, map=0.4, group="low"),
               Bench("k", 8, [0.3] * 3, peak_mb=900.0, map=0.2, group="lowest")]
    report = build_report([load_run(mr.write_run(tmp_path / "run.json", "cpu", benches))], deadlines_s=[0.25])
    best = {b.row.model: b for b in report.bests}
    assert best["m"].row.batch_size == 8 and best["m"].map == 0.4  # mAP is the model's, time the batch's
    assert [b.row.model for b in report.front] == ["m"]  # faster and more accurate than k
    choice = next(row for row in report.table("deadlines").rows if row[1] == 0.25)
    assert choice[4:6] == ["m", 0.4]


def test_a_later_accuracy_run_never_hides_an_earlier_runs_times(tmp_path: Path):
    mr.write_run(tmp_path / "runs" / "a.json", "cpu", [Bench("m", 64, [0.5] * 3, peak_mb=1000.0)],
                 when="2024-05-01T10:00:00+00:00")
    mr.write_run(tmp_path / "runs" / "b.json", "cpu", [Bench("m", 64, [9.0], kind=ACCURACY, map=0.3)],
                 when="2024-05-02T10:00:00+00:00")
    (row,) = build_report(load_runs([tmp_path / "runs"])).rows
    assert (row.outcome, row.mean_s, row.map, row.map_source) == ("ok", 0.5, 0.3, ACCURACY)


def test_an_accuracy_only_row_is_not_timed(tmp_path: Path):
    run = load_run(mr.write_run(tmp_path / "run.json", "cpu", [Bench("m", 1, [1.0] * 3, peak_mb=1.0),
                                                                 Bench("m", 64, [9.0], kind=ACCURACY, map=0.3)]))
    row = next(r for r in rows_of(run) if r.batch_size == 64)
    assert (row.outcome, row.timed, row.ok, row.failed, row.mean_s) == (None, False, False, False, None)
    text = build_report([run]).table("measurements").render(markdown=False)
    assert "not timed" in text


# --- duplicates ------------------------------------------------------------------------------------------
def test_the_same_record_in_a_benchmark_and_the_odperf_block_is_read_once(tmp_path: Path):
    data = mr.run_json("cpu", [Bench("m", 1, [1.0] * 3, peak_mb=1.0)])
    assert data["benchmarks"][0]["extra_info"] == data["odperf"]["records"][0]
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert len(load_run(tmp_path / "run.json").records) == 1


@pytest.mark.parametrize("where", ["block", "benchmark and block", "benchmarks"])
def test_two_different_records_of_one_measurement_are_an_error_naming_both(tmp_path: Path, where: str):
    data = mr.run_json("cpu", _timed_and_scored())
    if where == "block":
        twin = copy.deepcopy(next(r for r in data["odperf"]["records"] if r["kind"] == ACCURACY))
        twin["map"] = 0.01
        data["odperf"]["records"].append(twin)
        named = ["record #3 of the odperf block", "record #4 of the odperf block"]
    elif where == "benchmark and block":
        data["odperf"]["records"][1]["peak_memory_mb"] = 5.0  # the block's copy of test_inference[m-b64]
        named = ["benchmark 'test_inference[m-b64]'", "record #2 of the odperf block"]
    else:
        twin = copy.deepcopy(data["benchmarks"][1])
        twin["name"] = "test_other[m-b64]"
        data["benchmarks"].append(twin)
        named = ["benchmark 'test_inference[m-b64]'", "benchmark 'test_other[m-b64]'"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="two different records of one measurement") as err:
        load_run(tmp_path / "run.json")
    for name in named:
        assert name in str(err.value)
    kind = ACCURACY if where == "block" else TIMING
    assert f"{kind} record of m batch 64 on cpu" in str(err.value)


# --- schemas ---------------------------------------------------------------------------------------------
def test_committed_v1_collision_is_migrated_into_a_timing_and_an_accuracy_record():
    run = load_run(V1_COLLISION)
    assert run.schema == 1 and SCHEMA_VERSION == 3
    by_kind = {r.kind: r for r in run.records}
    assert set(by_kind) == {TIMING, ACCURACY}
    assert all(r.odperf_schema == SCHEMA_VERSION for r in run.records)
    timing, accuracy = by_kind[TIMING], by_kind[ACCURACY]
    assert timing.map is None and timing.protocol_overhead_s is not None and run.stats[timing.key]["rounds"] == 2
    assert accuracy.map == pytest.approx(0.4522488) and accuracy.key not in run.stats
    (row,) = rows_of(run)
    assert row.mean_s == pytest.approx(run.stats[timing.key]["mean"])  # time from the timing record only
    assert row.mean_s != pytest.approx(accuracy.time_per_image_s["mean"])
    assert (row.map, row.map_source) == (accuracy.map, ACCURACY)


def test_committed_v1_runs_of_the_main_job_read_as_timing_records():
    for path in (REAL / "cpu.json", REAL / "cpu_400mb.json"):
        run = load_run(path)
        assert run.schema == 1 and {r.kind for r in run.records} == {TIMING}
    oom = [r for r in load_run(REAL / "cpu_400mb.json").records if r.outcome == "oom"]
    assert len(oom) == 3


@pytest.mark.parametrize(
    ("raw", "has_stats", "kind"),
    [
        ({"outcome": "ok", "batch_size": 64, "map": 0.5}, False, ACCURACY),  # the accuracy benchmark's
        ({"outcome": "ok", "batch_size": 64, "map": 0.5}, True, TIMING),  # timed with --odperf-accuracy
        ({"outcome": "ok", "batch_size": 64, "map": None}, False, TIMING),  # timed, saved without stats
        ({"outcome": "oom", "batch_size": 64, "map": 0.5}, False, TIMING),  # a timing run that failed
        ({"outcome": "ok", "batch_size": 8, "map": 0.5}, False, TIMING),  # v1 scored at batch 64 only
    ],
)
def test_v1_to_v2_migration_infers_the_kind(raw: dict, has_stats: bool, kind: str):
    base = {"model": "m", "device_profile": "cpu", "odperf_schema": 1}
    out = migrate_record({**base, **raw}, 1, has_stats=has_stats)
    assert (out["kind"], out["odperf_schema"]) == (kind, SCHEMA_VERSION)
    assert RunRecord.from_extra_info(out).kind == kind


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d["odperf"].update(schema=SCHEMA_VERSION + 1), f"written by a newer odperf (schema {SCHEMA_VERSION + 1}"),
        (lambda d: d["benchmarks"][0]["extra_info"].update(odperf_schema=7), "written by a newer odperf (schema 7"),
        (lambda d: d["odperf"].update(schema="two"), "unknown odperf schema 'two'"),
        (lambda d: d["odperf"]["records"][0].update(odperf_schema=0), "unknown odperf schema 0"),
    ],
)
def test_a_newer_or_unknown_schema_is_refused_with_one_clear_line(tmp_path: Path, edit, words: str):
    data = mr.run_json("cpu", [Bench("m", 1, [1.0] * 3, peak_mb=1.0), Bench("m", 2, outcome="oom")])
    edit(data)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=words.replace("(", r"\(")) as err:
        load_run(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    if "newer" in words:
        assert "upgrade odperf" in str(err.value)
    # inside a folder too: an odperf file it cannot read is never skipped like another suite's file
    done = odperf("report", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


# --- one run, two files --------------------------------------------------------------------------------
def test_the_saved_copy_and_the_json_of_one_run_are_read_once(tmp_path: Path):
    benches = [Bench("m", 1, [1.0, 2.0, 3.0], peak_mb=1.0), Bench("m", 64, [9.0], kind=ACCURACY, map=0.3)]
    mr.write_run(tmp_path / "runs" / "main.json", "cpu", benches, when="2024-05-01T10:00:00.100000+00:00")
    mr.write_run(tmp_path / "runs" / "cpu" / "0001_main.json", "cpu", benches, include_data=False,
                 when="2024-05-01T10:00:00.300000+00:00")
    mr.write_run(tmp_path / "runs" / "cpu" / "0002_main.json", "cpu", [Bench("m", 1, [4.0] * 3, peak_mb=1.0)],
                 when="2024-05-02T10:00:00+00:00")
    runs = load_runs([tmp_path / "runs"])
    assert sorted(r.path.name for r in runs) == ["0002_main.json", "main.json"]
    kept = next(r for r in runs if r.path.name == "main.json")
    assert kept.has_raw_data and [p.name for p in kept.also_saved_as] == ["0001_main.json"]
    index = write_report(build_report(runs), tmp_path / "out").read_text()
    assert "same run also in" in index and "0001_main.json" in index
    assert "1 measurement(s) of earlier runs are replaced" in index  # m b1 of the older run, said so
    # the same file named twice, or through a folder and by name, is one run as well
    assert len(load_runs([tmp_path / "runs" / "main.json", tmp_path / "runs" / "main.json"])) == 1


# --- paths ---------------------------------------------------------------------------------------------
def test_missing_paths_say_what_is_really_wrong(tmp_path: Path):
    run = mr.write_run(tmp_path / "main.json", "cpu", [Bench("m", 1, [1.0], peak_mb=1.0)])
    (tmp_path / "empty_folder").mkdir()
    cases = [
        (["report", str(tmp_path / "no_such_folder" / "main.json")], "the folder", "does not exist"),
        (["report", str(tmp_path / "mian.json")], "did you mean", str(run)),
        (["report", str(tmp_path / "*.jsno")], "the pattern matched no file", ""),
        (["report", str(tmp_path / "empty_folder")], "a folder with no JSON files", ""),
        (["gate", "--baseline", str(run), "--current", str(tmp_path)], "is a folder, not a results file", ""),
        (["gate", "--baseline", str(run), "--current", str(tmp_path / "never_written.json")],
         "never wrote it", "xdist"),
    ]
    for args, words, more in cases:
        done = odperf(*args, *(["--out", str(tmp_path / "out")] if args[0] == "report" else []))
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and more in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert ("xdist" in done.stderr) == (more == "xdist"), done.stderr  # only where it can be the cause


def test_a_quoted_glob_is_expanded(tmp_path: Path):
    mr.write_run(tmp_path / "a" / "cpu.json", "cpu", [Bench("m", 1, [1.0], peak_mb=1.0)])
    mr.write_run(tmp_path / "b" / "l4.json", "l4", [Bench("m", 1, [0.1], peak_mb=1.0)])
    assert {r.profile for r in load_runs([str(tmp_path / "*" / "*.json")])} == {"cpu", "l4"}


# --- the suite itself ----------------------------------------------------------------------------------
def test_the_suite_saves_timing_and_accuracy_of_batch_64_as_two_records(tmp_path: Path):
    """test_inference and test_accuracy in one run, as users run them: both records reach the JSON and
    the report shows time and mAP in one row."""
    json_path, expect = tmp_path / "run.json", tmp_path / "expect.toml"
    expect.write_text('[[rule]]\nmodels = ["centernet_tiny"]\nmap_floor = 0.05\n')  # no deadline: a loaded machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "--odperf-models=centernet_tiny", "--odperf-batch-sizes=64", "--odperf-images=2",
         "--odperf-devices=cpu", f"--odperf-expectations={expect}", f"--benchmark-json={json_path}"],
        cwd=Path(__file__).resolve().parents[1], env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(json_path.read_text())
    assert data["odperf"]["schema"] == SCHEMA_VERSION
    assert sorted(r["kind"] for r in data["odperf"]["records"]) == [ACCURACY, TIMING]
    run = load_run(json_path)
    (row,) = rows_of(run)
    assert row.time_source == "stats" and row.map_source == ACCURACY and 0 < row.map <= 1
    assert row.repairs is not None  # the accuracy record says what scoring repaired (here: nothing)
