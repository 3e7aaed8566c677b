"""The pipeline through a real redis-server on 127.0.0.1 and real embedded detectors as instances.

The tests start their own redis-server and nats-server (``bash tasks.sh test`` installs them with apt where
they are missing).
Faults: an instance SIGKILLed mid-image (its image taken over by the other instance with XAUTOCLAIM) and
the broker killed -9 and started again mid-run. No test bounds a time: every verdict is about images.
"""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest

import odperf
from child_env import child_env
from odperf.errors import WorkloadError
from odperf.pipeline.broker import BrokerError, check_address
from odperf.pipeline.brokers import open_broker
from odperf.pipeline.figures import markdown, summarize
from odperf.pipeline.nats_broker import LocalNats
from odperf.pipeline.producer import schedule
from odperf.pipeline.record import settings_from_text
from odperf.pipeline.redis_broker import LocalRedis, free_port
from odperf.pipeline.run import ImageOutcome, PipelineRun, run_pipeline
from odperf.pipeline.search import most_held
from odperf.pipeline.settings import PipelineSettings
from odperf.report.pipeline import pipeline_tables
from odperf.results import load_run

MODEL, BATCH = "centernet_tiny", 64  # the fastest embedded model, one call per camera image
ROOT = Path(odperf.__file__).resolve().parents[2]


# --- pieces without a model -----------------------------------------------------------------------------
def test_schedule_offers_the_lines_rate_and_every_shot_once():
    s = PipelineSettings(cameras=7, cameras_per_line=5, shots=3, cars=2, car_interval_s=10.0, arrivals="fixed")
    lines = schedule(s)
    assert [len(x) for x in lines] == [5 * 3 * 2, 2 * 3 * 2] and s.lines == 2
    seqs = sorted(shot.seq for shots in lines for shot in shots)
    assert seqs == list(range(s.published))
    first_car = [shot.at_s for shot in lines[1] if shot.car == 0]
    assert sorted(set(first_car)) == pytest.approx([0.0, 10 / 3, 20 / 3])  # both cameras fire together
    assert s.rate == pytest.approx(7 * 3 / 10.0)
    poisson = schedule(PipelineSettings(cameras=5, shots=19, car_interval_s=120.0))[0]
    assert len(poisson) == 95 and all(0 <= shot.at_s <= 120.0 for shot in poisson)


def test_settings_refuse_what_no_pass_could_do():
    with pytest.raises(WorkloadError, match="--instances 2"):
        PipelineSettings(instances=1, kill_instance_at_s=1.0)
    with pytest.raises(WorkloadError, match="arrivals"):
        PipelineSettings(arrivals="bursty")
    spread = PipelineSettings(instances=3, devices=("cpu", "gpu:1"))
    assert [spread.instance_device(i) for i in range(3)] == ["cpu", "gpu:1", "cpu"]
    with pytest.raises(WorkloadError, match="device must be 'cpu' or 'gpu:N'"):
        run_pipeline(PipelineSettings(instances=2, devices=("cpu", "tpu:0")))  # before any broker or worker


def test_latency_parts_add_up_and_the_verdict_names_what_failed():
    s = PipelineSettings(cameras=1, shots=2, car_interval_s=10.0, deadline_s=2.0)
    run = PipelineRun(settings=s, broker="redis://127.0.0.1:1/0", local_broker=True, t0=100.0)
    run.images = [
        ImageOutcome(seq=0, line=0, car=0, camera=0, t_capture=100.0, status="detected", t_published=100.1,
                     instance="instance-0", deliveries=1, t_received=100.4, t_decoded=100.5, infer_s=0.3,
                     t_done=100.85, t_collected=100.9),
        ImageOutcome(seq=1, line=0, car=0, camera=0, t_capture=105.0, status="lost", t_published=105.1,
                     reason="pending at instance-0 (delivered 1 times), not back within the drain time"),
    ]
    summary = summarize(run)
    parts = summary.latency_s
    assert parts["total"]["p50"] == pytest.approx(0.9)
    assert sum(parts[p]["p50"] for p in ("transfer", "queueing", "decode", "inference", "result")) == pytest.approx(0.9)
    assert parts["queueing"]["p50"] == pytest.approx(0.3) and parts["result"]["p50"] == pytest.approx(0.1)
    assert not summary.holds and summary.lost == 1 and summary.detected == 1
    assert summary.why_not[0] == "1 of 2 images lost" and "1 of 1 cars not done" in summary.why_not[-1]
    assert summary.cars[0].completion_s is None and summary.cars[0].back == 1


def test_search_doubles_then_bisects_to_the_most_held():
    for limit in (0, 1, 5, 6, 13, 64):
        tried: list[int] = []

        def held(n: int) -> bool:
            tried.append(n)
            return n <= limit

        assert most_held(held, 64) == limit
        assert len(tried) == len(set(tried))  # no pass run twice
    assert most_held(lambda n: True, 10) == 10


def test_bad_addresses_and_absent_brokers_are_one_line():
    with pytest.raises(BrokerError, match="nobody answers"):
        open_broker(f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(BrokerError, match="redis://HOST:PORT"):
        check_address("localhost:6379")
    with pytest.raises(BrokerError, match="port"):
        check_address("redis://127.0.0.1:notaport")
    with pytest.raises(BrokerError, match="nobody answers"):
        open_broker(f"redis://127.0.0.1:{free_port()}/0")
    for args, expect in ((["--broker", "tcp://x:1"], "give redis://"),
                         (["--broker", f"redis://127.0.0.1:{free_port()}"], "nobody answers"),
                         (["--model", "nosuch"], "no model named 'nosuch'"),
                         (["--compare-stream"], "give --search-cameras MAX with it"),
                         (["--search-cameras", "0"], "--search-cameras 0: give 1 or more"),
                         (["--instances-per-device", "-1"], "--instances-per-device -1: give 1 or more")):
        done = subprocess.run([sys.executable, "-m", "odperf.cli", "pipeline", *args, "--out", "."],
                              capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and expect in lines[0], done.stderr


def test_streams_survive_a_broker_killed_and_restarted():
    with LocalRedis() as server:
        broker = open_broker(server.address, retry_s=10.0)
        broker.ensure_group("s", "g")
        first = broker.publish("s", {"seq": 0})
        taken = broker.read("s", "g", "a", 1, 0.1)
        assert [e.id for e in taken] == [first]
        server.restart(down_s=0.5)
        second = broker.publish("s", {"seq": 1})  # retried until the server is back
        assert broker.pending_ids("s", "g") == {first: ("a", 1)}  # a delivered, unacknowledged entry kept
        claimed = broker.claim_stale("s", "g", "b", 0.0, 10)
        assert [(e.id, e.deliveries) for e in claimed] == [(first, 2)]
        assert [e.id for e in broker.read("s", "g", "b", 5, 0.1)] == [second]
        broker.close()


def test_jetstream_survives_its_server_killed_and_restarted():
    with LocalNats() as server:
        broker = open_broker(server.address, retry_s=15.0)
        broker.ensure_group("s", "g", 30.0)
        first = broker.publish("s", {"seq": 0, "data": b"a"})
        server.restart(down_s=0.5)
        second = broker.publish("s", {"seq": 1, "data": b"b"})  # retried until the server is back
        taken = broker.read("s", "g", "a", 5, 1.0)
        assert [(e.id, e.fields["seq"], e.fields["data"]) for e in taken] == [(first, b"0", b"a"), (second, b"1", b"b")]
        for entry in taken:
            broker.ack("s", "g", entry.id)
        assert broker.state("s", "g").backlog == 0
        broker.close()


# --- a real pass ---------------------------------------------------------------------------------------
def test_pass_accounts_for_every_image_through_a_killed_instance_and_a_broker_restart():
    """Two cameras fire together, so each instance holds one image when instance 0 is killed; the broker
    is killed and restarted while later images are being published and detected."""
    settings = PipelineSettings(model=MODEL, batch_size=BATCH, instances=2, cameras=2, shots=3, car_interval_s=6.0,
                                arrivals="fixed", deadline_s=600.0, images=2, claim_idle_s=2.0,
                                kill_instance_at_s=0.15, restart_broker_at_s=2.5, broker_down_s=1.0)
    run = run_pipeline(settings)
    summary = summarize(run)
    assert summary.published == 6 and summary.lost == 0 and summary.errors == 0, summary.lost_reasons
    assert summary.detected == 6 and {i.status for i in run.images} == {"detected"}
    killed, survivor = run.instances
    assert killed.outcome == "killed" and survivor.outcome == "ok"
    # the image instance 0 held was taken over (XAUTOCLAIM) and counted as a retry
    assert survivor.claimed >= 1 and summary.retried >= 1
    assert all(i.instance == "instance-1" for i in run.images if i.deliveries > 1)
    assert [f["fault"] for f in sorted(run.faults, key=lambda f: f["at_s"])] == ["kill instance", "restart broker"]
    assert survivor.peak_memory_mb and survivor.peak_memory_mb > 0
    assert run.accuracy is not None and 0.0 <= run.accuracy["AP"] <= 1.0
    parts = summary.latency_s
    assert parts["total"]["p50"] > 0 and parts["inference"]["p50"] > 0
    report = markdown(run, summary)
    assert "6 published, 6 detected" in report and "killed" in report and "restart broker" in report


def test_nats_jetstream_redelivers_a_killed_instances_image():
    """The second broker: JetStream's own redelivery after the ack wait takes the place of XAUTOCLAIM."""
    settings = PipelineSettings(model=MODEL, batch_size=BATCH, instances=2, cameras=2, shots=2, car_interval_s=4.0,
                                arrivals="fixed", deadline_s=600.0, images=2, claim_idle_s=3.0, kill_instance_at_s=0.15)
    with LocalNats() as server:
        run = run_pipeline(settings, server.address)
    summary = summarize(run)
    assert summary.published == summary.detected == 4 and summary.lost == 0, summary.lost_reasons
    assert [r.outcome for r in run.instances] == ["killed", "ok"] and summary.retried >= 1
    assert run.accuracy is not None


def test_the_pipeline_benchmark_saves_a_pipeline_record(tmp_path):
    """benchmarks/test_pipeline.py, named on the command line, runs a pass per case and saves it like the others."""
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_pipeline.py"), "-p", "no:xdist",
         "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT), f"--odperf-models={MODEL}", "--odperf-devices=cpu",
         f"--odperf-batch-sizes={BATCH}", "--odperf-pipeline=cameras=1,shots=2,car_interval_s=4,images=2",
         f"--benchmark-json={out}"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = load_run(out)
    (record,) = saved.records
    assert record.kind == "pipeline" and record.model == MODEL and record.batch_size == BATCH
    summary = record.pipeline["summary"]
    assert summary["published"] == summary["detected"] == 2 and summary["lost"] == 0
    assert record.pipeline["settings"]["car_interval_s"] == 4.0 and record.map is not None
    assert record.peak_memory_mb and record.peak_memory_mb > 0
    (table,) = pipeline_tables([saved])  # odperf report's pipeline table
    (row,) = table.rows
    assert row[1:5] == [MODEL, BATCH, 1, 1] and row[13] == "2/2" and row[14] == 0 and row[16] in ("holds", "misses")


def test_benchmark_settings_name_a_bad_key_in_one_line():
    with pytest.raises(WorkloadError, match="KEY=VALUE with KEY one of"):
        settings_from_text("lanes=2")
    with pytest.raises(WorkloadError, match="instances must be int"):
        settings_from_text("instances=two")
    assert settings_from_text("instances=2,car_interval_s=4.5,arrivals=fixed", model="x").instances == 2
