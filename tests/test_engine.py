"""The engine with real worker processes and real (small) TensorFlow models: ok, crash, oom, timeout."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time

import psutil
import pytest

from odperf.suite.judging import check_run
from odperf.engine import MeasureRequest, WorkerFailed, WorkerSession, measure
from odperf.errors import ModelError
from odperf.suite.expectations import Expectation


def request(model, dataset, **kw) -> MeasureRequest:
    base = dict(model=str(model), batch_size=64, images=3, dataset_root=str(dataset), dataset_split="val2017")
    return MeasureRequest(**{**base, **kw})


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary folder of its own for this process and its workers: whatever they leave there is seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_measure_end_to_end_gives_plausible_figures(engine_models, engine_dataset, tmp_path, private_tmp):
    results = tmp_path / "results.json"
    m = measure(request(engine_models["tiny"], engine_dataset, batch_size=16, keep_detections=True,
                        results_path=str(results)))
    assert m.outcome == "ok", m.error
    d = m.deploy
    assert d.batch_mode == "batched" and d.model_format == "tf2_saved_model"
    assert d.import_s > 0 and d.load_s > 0 and d.first_inference_s > 0
    assert d.total_s >= d.spawn_s + d.import_s + d.load_s
    assert len(m.worker_times_s) == len(m.parent_times_s) == 3
    # The parent's clock wraps the worker's timed region plus the pipe round trip.
    assert all(0 < w <= p for w, p in zip(m.worker_times_s, m.parent_times_s))
    assert 0 < m.protocol_overhead_s and m.protocol_overhead_iqr_s[0] <= m.protocol_overhead_s <= m.protocol_overhead_iqr_s[1]
    mem = m.memory
    assert mem.probe == "host_rss" and mem.peak_mb > 100  # a process holding TensorFlow
    assert mem.samples > 10 and len(mem.timeline) <= 200
    # One detection per image tile, none for the blank tile: 3 images x 63 tiles.
    assert m.accuracy["n_detections"] == 3 * 63 and 0 <= m.accuracy["AP"] <= 1
    assert m.accuracy["scorer"] == "faster-coco-eval"  # the default; the record names it
    # ... kept as COCO results in camera-image coordinates, and scored after the worker left.
    coco = json.loads(results.read_text())
    assert len(coco) == 3 * 63 and {r["image_id"] for r in coco} == {1, 2, 3}
    assert all(0 <= r["bbox"][0] < 2100 and 0 <= r["bbox"][1] < 2700 for r in coco)
    rec = m.to_record(device_profile="cpu")
    assert rec.outcome == "ok" and rec.images_timed == 3 and rec.batch_size == 16
    assert rec.time_per_image_s["mean"] == pytest.approx(sum(m.parent_times_s) / 3)
    assert rec.car_time_s == pytest.approx(rec.time_per_image_s["mean"] * 95)
    assert rec.deploy_s["import"] == d.import_s and rec.host_rss_peak_mb == mem.peak_mb
    assert rec.sample_period_ms["requested"] == 10.0 and rec.map == m.accuracy["AP"]
    assert not gone(os.getpid()) and gone(d.pid)
    assert list(private_tmp.iterdir()) == []  # the detections handed over for scoring had no name to leave


def test_unscorable_detections_keep_the_times_and_memory_and_say_why(engine_models, engine_dataset):
    # The model answers class 42, which the dataset does not have: scoring fails, measuring did not.
    m = measure(request(engine_models["alien"], engine_dataset, images=2, keep_detections=True))
    assert m.outcome == "ok" and m.accuracy is None
    assert m.accuracy_error.startswith("AccuracyError: ") and "returns class ids [42]" in m.accuracy_error
    assert len(m.worker_times_s) == 2 and m.memory.peak_mb > 100
    rec = m.to_record(device_profile="cpu")
    assert rec.outcome == "ok" and rec.time_per_image_s["mean"] > 0 and rec.peak_memory_mb == m.memory.peak_mb
    assert rec.map is None and rec.error == f"accuracy: {m.accuracy_error}"
    (failure,) = check_run(rec, Expectation())  # the case still fails, on the scorer's own words
    assert "returns class ids [42]" in failure


def test_killed_worker_is_a_crash_and_the_next_measurement_works(engine_models, engine_dataset, private_tmp):
    req = request(engine_models["tiny"], engine_dataset, images=2, keep_detections=True)
    with WorkerSession(req) as session:
        session.start()
        session.run_image(0)
        os.kill(session.pid, signal.SIGKILL)
        with pytest.raises(WorkerFailed) as failed:
            session.run_image(1)
    f = failed.value
    assert f.outcome == "crash" and f.exit_signal == signal.SIGKILL and f.exit_code is None
    assert f.message == "worker killed by signal SIGKILL (9) during camera image 1"
    assert f.measurement.error.split("\n")[0] == f"crash: {f.message}" == str(f)
    assert f.measurement.worker_times_s and f.measurement.memory.samples > 0  # figures so far
    rec = f.measurement.to_record()
    assert rec.outcome == "crash" and rec.exit_signal == 9
    assert list(private_tmp.iterdir()) == []  # the detections file it would have written had no name
    again = measure(req)
    assert again.outcome == "ok" and len(again.worker_times_s) == 2 and again.accuracy["n_detections"] == 2 * 63


def test_out_of_memory_under_a_cap_is_oom_and_the_caller_goes_on(engine_models, engine_dataset):
    # The model allocates 500 MB per call; a 200 MB cap on the CPU worker makes that a real OOM.
    m = measure(request(engine_models["ballast"], engine_dataset, images=1, memory_limit_mb=200))
    assert m.outcome == "oom", m.error
    # First line: the allocator's own error and its message, though the loader wrapped it in a ModelError;
    # then the whole exception, then the worker's log, each labelled.
    first, rest = m.error.split("\n", 1)
    assert first.startswith("oom: ResourceExhaustedError: OOM when allocating tensor with shape[125000000]")
    assert rest.index("--- exception ---\nModelError: ") < rest.index("--- worker output (stdout and stderr")
    assert m.emulated["memory_limit_mb"] == 200 and m.emulated["how"] == "rlimit_data_above_runtime"
    rec = m.to_record()
    assert rec.outcome == "oom" and rec.emulated["memory_limit_mb"] == 200
    assert m.memory is not None and m.memory.samples > 0


def test_a_hanging_worker_times_out_and_is_killed(engine_models, engine_dataset):
    req = request(engine_models["tiny"], engine_dataset, images=2, timeout_s=5, start_timeout_s=600)
    with WorkerSession(req) as session:
        session.start()
        pid = session.pid
        os.kill(pid, signal.SIGSTOP)  # a real hang: the worker never answers
        t0 = time.monotonic()
        with pytest.raises(WorkerFailed) as failed:
            session.run_image(0)
        waited = time.monotonic() - t0
        assert failed.value.outcome == "timeout"
        assert failed.value.measurement.error.split("\n")[0] == (
            "timeout: no answer within 5 s during camera image 0; worker killed")
        assert gone(pid)
    assert waited >= 5  # it waited the step's whole timeout, not less
    with pytest.raises(WorkerFailed):  # the session stays failed
        session.run_image(1)


def test_a_missing_model_raises_the_users_error_and_leaves_no_worker(tmp_path, engine_dataset):
    req = request(tmp_path / "no-such-model", engine_dataset, images=1, timeout_s=120)
    with WorkerSession(req) as session:
        with pytest.raises(ModelError) as refused:
            session.start()
        pid = session.pid
    assert str(refused.value).splitlines()[0] == f"{tmp_path / 'no-such-model'}: no such model file or folder"
    assert gone(pid)


def test_a_worker_killed_by_a_fatal_signal_says_which_and_what_its_log_says(engine_models, engine_dataset):
    with WorkerSession(request(engine_models["tiny"], engine_dataset, images=2)) as session:
        session.start()
        session.run_image(0)
        os.kill(session.pid, signal.SIGSEGV)
        with pytest.raises(WorkerFailed) as failed:
            session.run_image(1)
    f = failed.value
    assert f.outcome == "crash" and f.exit_signal == signal.SIGSEGV
    assert str(f) == "crash: worker killed by signal SIGSEGV (11) during camera image 1: Fatal Python error: Segmentation fault"
    first, log = f.measurement.error.split("\n", 1)
    assert log.startswith("--- worker output") and "Segmentation fault" in log
    (verdict,) = check_run(f.measurement.to_record(), Expectation())
    assert verdict.endswith("(signal 11): worker killed by signal SIGSEGV (11) during camera image 1: "
                            "Fatal Python error: Segmentation fault")


def test_a_steady_warm_up_runs_until_the_times_settle_and_says_so(engine_models, engine_dataset):
    """Where asked, the worker warms up on until three images in a row agree; the record's runtime settings
    say how many it took and whether they settled. A tolerance no three real times can meet ends at the
    bound, unsettled; without the option, the fixed warm-up and nothing said."""
    settled = measure(request(engine_models["tiny"], engine_dataset, images=2, steady_warmup=0.9))
    never = measure(request(engine_models["tiny"], engine_dataset, images=2, steady_warmup=1e-12,
                            max_warmup_images=5))
    fixed = measure(request(engine_models["tiny"], engine_dataset, images=2))
    assert settled.ok and never.ok and fixed.ok
    warm = settled.to_record().runtime_settings["warmup"]
    assert warm["steady"] is True and 3 <= warm["images"] < 30 and warm["within"] == 0.9 and warm["window"] == 3
    assert never.to_record().runtime_settings["warmup"] == {"images": 5, "steady": False, "within": 1e-12,
                                                            "window": 3, "at_most": 5}
    assert "warmup" not in fixed.to_record().runtime_settings
    assert len(never.worker_times_s) == 2  # the timed images are what they were asked to be


@pytest.mark.parametrize(("fields", "words"), [
    ({"steady_warmup": 0.0}, "steady_warmup must be a fraction between 0 and 1"),
    ({"steady_warmup": 1.5}, "steady_warmup must be a fraction between 0 and 1"),
    ({"steady_warmup": True}, "steady_warmup must be a fraction between 0 and 1"),
    ({"steady_warmup": 0.05, "warmup_images": 4, "max_warmup_images": 3}, "max_warmup_images must be an integer >= 4"),
])
def test_a_steady_warm_up_asked_wrongly_is_refused_before_any_worker(fields, words):
    from odperf.errors import WorkloadError

    with pytest.raises(WorkloadError, match=words):
        MeasureRequest(model="tiny", batch_size=8, images=1, **fields)


def test_steady_means_the_last_three_agree():
    from odperf.engine.portable import steady

    assert not steady([1.0, 1.0], 0.5)  # too few to say
    assert steady([5.0, 1.0, 1.02, 0.99], 0.05)  # the slow first image is behind the window
    assert not steady([1.0, 1.2, 1.0], 0.05) and steady([1.0, 1.2, 1.0], 0.25)
