"""What a run says about its own cost: images chosen by the statistics, the machine's load, where time went."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from odperf.engine.measurement import Deployment, Measurement
from odperf.engine.request import MeasureRequest
from odperf.errors import WorkloadError
from odperf.measure.breakdown import STEPS, TimeBreakdown, job_breakdowns, job_lines
from odperf.measure.load import LoadMeter
from odperf.measure.sampling import SamplingPlan, plan_images, relative_ci


# --- sampling ---------------------------------------------------------------------------------------
def test_relative_ci_is_students_t_over_the_mean():
    # mean 1.0, sd 0.1, n 4: t(0.975, 3) = 3.182 -> 3.182 * 0.1 / 2 = 0.159
    times = [0.9, 1.0, 1.0, 1.1]
    sd = (sum((t - 1.0) ** 2 for t in times) / 3) ** 0.5
    assert relative_ci(times) == pytest.approx(3.1824 * sd / 2, rel=1e-3)
    assert relative_ci([1.0]) is None


def test_plan_stops_at_the_target_never_below_the_floor_never_above_the_ceiling():
    plan = SamplingPlan(floor=3, ceiling=6, target=0.03)
    steady = [1.0, 1.001, 0.999]
    assert not plan.enough(steady[:2])  # below the floor, however tight
    assert plan.enough(steady) and plan.outcome(steady)["stopped_by"] == "target"
    noisy = [1.0, 2.0, 0.5, 1.5, 0.7]
    assert not plan.enough(noisy) and plan.enough(noisy + [1.2])
    assert plan.outcome(noisy + [1.2])["stopped_by"] == "ceiling"
    fixed = SamplingPlan.fixed(4)
    assert not fixed.enough(steady) and fixed.enough(steady + [1.0]) and fixed.outcome(steady)["stopped_by"] == "fixed"


def test_plan_from_options_and_its_user_errors():
    assert plan_images(5, None, None, None, default_ceiling=95) == SamplingPlan.fixed(5)
    assert plan_images(None, None, None, None, default_ceiling=95) == SamplingPlan(3, 95, 0.03)
    assert plan_images(None, None, 2, None, default_ceiling=95) == SamplingPlan(2, 2, 0.03)
    with pytest.raises(WorkloadError, match="drop --odperf-max-images"):
        plan_images(5, None, 10, None, default_ceiling=95)
    with pytest.raises(WorkloadError, match="floor .4. is above the ceiling .2."):
        plan_images(None, 4, 2, None, default_ceiling=95)
    with pytest.raises(WorkloadError, match="--odperf-target-ci must be a fraction"):
        plan_images(None, None, None, 3.0, default_ceiling=95)


# --- load -------------------------------------------------------------------------------------------
def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_load_counts_the_workers_cpu_apart_from_everyone_elses():
    """A busy process named as the worker counts as the worker's; the same process not named counts as
    another's. (The machine may be shared: only lower bounds are asserted.)"""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    spun = psutil.Process(busy.pid)

    def cpu() -> float:
        t = spun.cpu_times()
        return t.user + t.system

    try:
        time.sleep(0.3)
        as_worker = LoadMeter(busy.pid)
        c0 = cpu()
        as_worker.begin()
        time.sleep(1.0)
        as_worker.end()
        mine, spent_as_worker = as_worker.result(), cpu() - c0
        as_other = LoadMeter(None)
        c0 = cpu()
        as_other.begin()
        time.sleep(1.0)
        as_other.end()
        theirs, spent_as_other = as_other.result(), cpu() - c0
    finally:
        busy.kill()
        busy.wait()
    tick = 0.03  # the kernel's counters move in 10 ms ticks
    assert spent_as_worker > 0 and mine.worker_cores * mine.wall_s == pytest.approx(spent_as_worker, abs=tick)
    assert theirs.worker_cores == 0.0
    assert theirs.others_cores * theirs.wall_s >= spent_as_other - tick  # the spinning process, now nobody's
    rec = theirs.to_record()
    assert rec["others_share"] == pytest.approx(theirs.others_cores / theirs.cores, abs=1e-3)
    assert rec["loaded"] == (rec["others_share"] > rec["threshold_share"])


def test_load_gives_the_hypervisors_steal_apart_where_the_kernel_counts_it(monkeypatch):
    """Steal is time a virtual machine's cores were taken by another guest: busy, nobody's here, so part of
    the others' figure, and given apart. (Planted through psutil's counters: no hypervisor obeys a test.)"""
    from collections import namedtuple
    from types import SimpleNamespace

    from odperf.measure import load as load_module

    Times = namedtuple("Times", "user system idle steal")
    clock = iter([Times(10.0, 2.0, 100.0, 1.0), Times(10.2, 2.0, 101.0, 1.5)])
    monkeypatch.setattr(load_module.psutil, "cpu_times", lambda: next(clock))
    ticks = iter([50.0, 52.0])
    monkeypatch.setattr(load_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))  # this module's only
    meter = LoadMeter(None)
    monkeypatch.setattr(load_module, "_own_s", lambda process: 0.0)
    meter.begin()
    meter.end()
    got = meter.result()
    assert got.wall_s == 2.0 and got.steal_cores == pytest.approx(0.25)  # 0.5 s stolen over 2 s
    assert got.others_cores == pytest.approx(0.35)  # 0.2 s of user time + the 0.5 s stolen
    Bare = namedtuple("Bare", "user system idle")  # a kernel without the counter (not Linux)
    clock = iter([Bare(1.0, 0.0, 9.0), Bare(1.5, 0.0, 9.5)])
    ticks = iter([0.0, 1.0])
    bare = LoadMeter(None)
    bare.begin()
    bare.end()
    assert bare.result().steal_cores is None and bare.result().to_record()["steal_cores"] is None


def test_load_sums_only_the_regions_it_is_told_of():
    meter = LoadMeter(None)
    assert meter.result() is None  # nothing measured yet
    c0 = time.process_time()
    meter.begin()
    _spin(0.2)  # the harness's own CPU: not the others'
    meter.end()
    spent = time.process_time() - c0
    time.sleep(0.5)  # outside any region
    _spin(0.2)
    load = meter.result()
    assert 0.15 < load.wall_s < 0.45  # the regions only
    assert spent > 0 and load.harness_cores * load.wall_s == pytest.approx(spent, abs=0.03)


# --- breakdown --------------------------------------------------------------------------------------
def _measurement(worker: list[float], parent: list[float], **costs: float) -> Measurement:
    m = Measurement(request=MeasureRequest(model="ssd", batch_size=8, images=len(worker)))
    m.deploy = Deployment(spawn_s=0.2, import_s=2.0, load_s=1.0, first_inference_s=0.5, warmup_s=0.5, total_s=3.7,
                          pid=1, batch_mode="batched", dataset_s=0.3)
    m.worker_times_s, m.parent_times_s = worker, parent
    m.costs.update(costs)
    return m


def test_breakdown_adds_up_to_the_wall_and_gives_the_overhead_ratio():
    b = TimeBreakdown()
    m = _measurement([1.0, 1.0], [1.01, 1.01], start=4.1, prepare=0.2, finish=0.05, exit=0.1, sampler=0.02,
                     scoring=0.4)
    b.note(m)
    b.note(m)  # noted twice (a stream session's records): counted once
    b.close(wall_s=10.0)
    s = b.seconds
    assert b.cases == 1 and set(s) == set(STEPS)
    assert s["timed inference"] == 2.0 and s["deployment"] == pytest.approx(3.2) and s["warm-up"] == 0.5
    assert s["dataset"] == pytest.approx(0.5) and s["scoring"] == 0.4 and s["idle"] == 0.1
    assert s["protocol"] == pytest.approx(0.02 + (4.1 - 3.7 - 0.3) + 0.05)
    assert sum(s.values()) == pytest.approx(10.0)
    assert b.overhead_ratio == pytest.approx(10.0 / (2.0 + 3.7))
    again = TimeBreakdown.from_dict(json.loads(json.dumps(b.to_dict())))
    assert again.seconds == pytest.approx(s) and again.overhead_ratio == pytest.approx(b.overhead_ratio, rel=1e-3)
    assert "overhead ratio 1.75" in b.lines("time")[1]


def test_job_lines_add_each_passs_start_and_the_jobs_own_time(tmp_path):
    b = TimeBreakdown()
    b.note(_measurement([1.0], [1.0], start=3.7))
    b.close(wall_s=6.0)
    saved = json.loads(json.dumps(b.to_dict()))  # as a saved run holds it (SavedRun.time_breakdown)
    parts = job_breakdowns([("main", saved, 8.0), ("lost", None, 1.0)], wall_s=10.0)
    lines = job_lines(parts)
    assert lines[0].startswith("pass main: 8.0 s wall over 1 case(s)")
    assert lines[-2].startswith("whole job: 10.0 s wall over 1 case(s)")
    assert lines[-1] == f"whole job: overhead ratio {10.0 / 4.7:.2f} (wall / (timed inference + deployment + streams))"
    # the same figures as the table the job writes beside its report, which the README's excerpts read
    from odperf.report.readme import tables_of
    from odperf.report.time_spent import write_job_table

    table = tables_of(write_job_table(parts, "main", tmp_path / "job-time.md").read_text())["Where the main job's time went"]
    rows = {r[0]: dict(zip(table.header, r)) for r in table.rows}
    assert list(rows) == ["main", "lost", "whole job"]
    start = 8.0 - 6.0  # the pass's wall beyond its own session's: starting its Python and pytest
    assert rows["main"]["wall s"] == "8.0"
    assert float(rows["main"]["bookkeeping s"]) == pytest.approx(b.seconds["bookkeeping"] + start, abs=0.05)
    assert rows["whole job"]["wall s"] == "10.0" and rows["whole job"]["timed inference s"] == "1.0"
    assert rows["whole job"]["overhead ratio"] == f"{10.0 / 4.7:.2f}"


# --- scoring once per model -------------------------------------------------------------------------
def _detections(tmp_path, name: str, drop_tile: int | None = None, nudge: float = 0.0):
    """Detections of a 1-class model on camera images 0 and 1 at one box per tile, saved as a worker does."""
    import numpy as np

    from odperf.measure.accuracy import TiledDetections

    request = MeasureRequest(model="same", batch_size=64, images=2, dataset_root=None)
    grid = request.camera_grid
    rng = np.random.default_rng(0)
    out = TiledDetections(grid, model="same")
    for camera in (0, 1):
        n = grid.tiles_per_image
        y, x = rng.uniform(0, 0.5, (2, n, 1))
        boxes = np.concatenate([y, x, y + 0.3, x + 0.3], axis=1).reshape(n, 1, 4).astype(np.float32)
        counts = np.ones(n, np.int32)
        if drop_tile is not None:
            counts[drop_tile] = 0  # the model answered nothing for this tile
        scores = rng.uniform(0.3, 1, (n, 1)).astype(np.float32)
        out.add(camera, 0, boxes + np.float32(nudge), scores + np.float32(nudge), np.ones((n, 1), np.int64), counts)
    return out.save(tmp_path / name)


def test_identical_detections_are_scored_once_and_a_dropped_tile_is_scored_on_its_own(tmp_path):
    from odperf.datasets.synthetic import ensure_embedded
    from odperf.engine.detections import ScoreCache, score_detections

    ensure_embedded(n_train=0)
    cache = ScoreCache()
    at = {b: MeasureRequest(model="same", batch_size=b, images=2, against_reference=True) for b in (1, 8, 64)}
    first = score_detections(at[1], _detections(tmp_path, "b1.npz"), [0, 1], cache=cache)
    assert first["scored_batch"] == 1 and "reused_from_batch" not in first
    again = score_detections(at[8], _detections(tmp_path, "b8.npz"), [0, 1], cache=cache)
    assert again["reused_from_batch"] == 1 and again["AP"] == first["AP"]
    dropped = score_detections(at[64], _detections(tmp_path, "b64.npz", drop_tile=3), [0, 1], cache=cache)
    assert dropped["scored_batch"] == 64 and "reused_from_batch" not in dropped
    assert dropped["n_detections"] == first["n_detections"] - 2  # its own figures: one tile fewer per image
    assert first["scored_images"] == 2
    # a case that timed fewer images (the run chose them) with the reference's detections on each of them:
    # the model's mAP over the reference's images, so every batch states it over one image set
    fewer = score_detections(at[8], _detections(tmp_path, "b8-0.npz"), [0], cache=cache)
    assert fewer["reused_from_batch"] == 1 and fewer["checked_images"] == 1 and fewer["scored_images"] == 2
    assert fewer["AP"] == first["AP"]
    # a batched kernel's rounding (1e-6 of a tile's box, of a score) is the same answer; a box moved by a
    # tenth of a tile is not
    rounded = score_detections(at[8], _detections(tmp_path, "b8-r.npz", nudge=1e-6), [0], cache=cache)
    assert rounded["reused_from_batch"] == 1 and rounded["AP"] == first["AP"]
    moved = score_detections(at[8], _detections(tmp_path, "b8-m.npz", nudge=0.1), [0], cache=cache)
    assert "reused_from_batch" not in moved and moved["scored_images"] == 1
    # ... and so is one image that differs in one tile: its own images, its own mAP
    fewer_dropped = score_detections(at[64], _detections(tmp_path, "b64-0.npz", drop_tile=3), [0], cache=cache)
    assert "reused_from_batch" not in fewer_dropped and fewer_dropped["scored_images"] == 1
    assert fewer_dropped["n_detections"] == first["n_detections"] / 2 - 1
    # a request that does not ask (a library caller, a fixed image count) scores its own images
    alone = MeasureRequest(model="same", batch_size=8, images=2)
    own = score_detections(alone, _detections(tmp_path, "b8-own.npz"), [0], cache=cache)
    assert "reused_from_batch" not in own and own["scored_images"] == 1


def test_the_report_shows_where_each_saved_runs_time_went_and_their_total(tmp_path):
    """A report of runs that saved their breakdown has a table of them, one row per run and one for all; runs
    that saved none (older files) give no such table rather than zeros."""
    from odperf.report.index import build_report
    from odperf.report.rows import load_runs

    real = Path(__file__).parent / "data" / "runs" / "real"
    assert "Where each run's time went" not in {t.title for t in build_report(load_runs([real])).tables}
    for name, wall in (("cpu", 100.0), ("cpu_400mb", 50.0)):
        data = json.loads((real / f"{name}.json").read_text())
        b = TimeBreakdown(seconds=dict.fromkeys(STEPS, 0.0) | {"timed inference": wall / 2, "deployment": wall / 4},
                          wall_s=wall, cases=7)
        b.seconds["bookkeeping"] = wall / 4
        data["odperf"]["time_breakdown"] = b.to_dict()
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    table = build_report(load_runs([str(tmp_path)])).table("time_spent")
    rows = {r[0]: dict(zip(table.headers, r)) for r in table.rows}
    assert set(rows) == {"cpu", "cpu_400mb", "all these runs"}
    total = rows["all these runs"]
    assert total["wall s"] == 150.0 and total["cases"] == 14 and total["timed inference s"] == 75.0
    assert total["overhead ratio"] == pytest.approx(150.0 / 112.5)
