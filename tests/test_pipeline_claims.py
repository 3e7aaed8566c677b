"""README claims about the pipeline, the stream records' verdicts and saved runs holding stream records,
each tested for real: the `odperf pipeline` command in a subprocess (its own local redis-server), passes
through a redis-server the test starts itself (``LocalRedis``, as in tests/test_pipeline.py), the saved
stream run in tests/data/runs/stream, and `odperf compare` / `odperf gate` in subprocesses.

Passes are sized as tests/test_pipeline.py sizes them (the embedded ``centernet_tiny`` at batch 64, one or
a few cameras, a few images). No test bounds a time: every verdict is about images, records and files.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis

from child_env import child_env
from odperf.pipeline.codec import decode_image, encode_image
from odperf.pipeline.figures import summarize
from odperf.pipeline.redis_broker import LocalRedis
from odperf.pipeline.run import measure_request, run_pipeline
from odperf.pipeline.settings import PipelineSettings
from odperf.results import load_run
from odperf.stream.cases import line_for
from odperf.stream.record import check_stream
from odperf.suite.expectations import Expectation
from test_pipeline import BATCH, MODEL, ROOT

RUNS = ROOT / "tests" / "data" / "runs"
STREAM_RUN = RUNS / "stream" / "cpu.json"
TIMING_RUN = RUNS / "real" / "cpu.json"  # the same profile, models and batch 8 as the stream run


def odperf_cli(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``odperf ARGS`` in a child process of this checkout, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "odperf.cli", *args], cwd=cwd or ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


# --- 1, 2: odperf pipeline --compare-stream and --instances-per-device K -------------------------------
SHOTS, INTERVAL, DEADLINE, DEVICE_MB = 2, 4.0, 25.0, 6000.0


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory):
    """One `odperf pipeline` with the camera search (at most 1 camera), the stream comparison and 1..2
    instances per device: the README's own command line, made small."""
    out = tmp_path_factory.mktemp("pipeline-capacity")
    done = odperf_cli("pipeline", "--model", MODEL, "--batch-size", str(BATCH), "--cameras", "1",
                      "--shots", str(SHOTS), "--car-interval", str(INTERVAL), "--deadline", str(DEADLINE),
                      "--arrivals", "fixed", "--images", "2", "--search-cameras", "1", "--compare-stream",
                      "--instances-per-device", "2", "--device-memory-mb", str(DEVICE_MB), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "pipeline.json").read_text())
    return out, record, (out / "pipeline.md").read_text(), done


def test_compare_stream_runs_loadgens_peak_search_on_the_same_line_and_states_the_ratio(capacity_run):
    out, record, md, _ = capacity_run
    found, c = record["camera_search"], record["stream_comparison"]
    # LoadGen's Server scenario really ran, a step per rate tried, each with the pipeline's deadline
    steps = sorted((out / "loadgen" / "peak").glob("rate-*"))
    assert steps, sorted(p.name for p in out.rglob("*"))
    for step in steps:
        summary = (step / "mlperf_log_summary.txt").read_text()
        assert "Scenario : Server" in summary
        assert f"target_latency (ns): {int(DEADLINE * 1e9)}" in summary
    # the peak is the highest rate held among those tried, and the capacity is counted on the pipeline's line
    assert c["peak_rate"] is not None and f"rate-{c['peak_rate']:.4g}" in {p.name for p in steps}
    camera_rate = SHOTS / INTERVAL  # one camera of the pipeline's line: shots per car interval
    assert c["cameras_per_device"] == math.floor(c["peak_rate"] / camera_rate + 1e-9)
    # "states how close the two are": the pipeline's most cameras held against the stream's
    assert found["cameras"] == c["pipeline_cameras"] == 1
    assert c["ratio"] == pytest.approx(c["pipeline_cameras"] / c["cameras_per_device"])
    assert f"Stream pass's peak (LoadGen Server, same model, batch {BATCH}, line and deadline)" in md
    assert f"the pipeline held 1 with 1 instance(s): ratio {c['ratio']:.2f}" in md


def test_instances_per_device_runs_one_to_k_instances_beside_the_memory_arithmetic(capacity_run):
    _, record, md, _ = capacity_run
    m = record["instances_per_device"]
    assert m["asked"] == 2 and m["device_mb"] == DEVICE_MB
    assert [s["instances"] for s in m["steps"]] == [1, 2]
    for step in m["steps"]:  # a pass per step, with that many instances, each one's memory measured
        assert len(step["outcomes"]) == len(step["peak_mb"]) == step["instances"]
        assert step["up"] == sum(o == "ok" for o in step["outcomes"]) == step["instances"]
        assert all(p and p > 0 for p in step["peak_mb"])
        assert step["summed_peak_mb"] == pytest.approx(sum(step["peak_mb"]))
        assert step["achieved_rate"] and step["achieved_rate"] > 0
    one = m["steps"][0]["peak_mb"][0]
    assert m["arithmetic"] == math.floor(DEVICE_MB / one)
    assert m["measured"] == (2 if m["steps"][1]["summed_peak_mb"] <= DEVICE_MB else 1)
    assert (f"Measured: {m['measured']} of the 2 instance(s) tried ran together; memory arithmetic "
            f"floor({DEVICE_MB:.0f} MB / one instance's peak): {m['arithmetic']}.") in md


# --- 3: exit 1 when any image is lost -------------------------------------------------------------------
def test_pipeline_exits_0_with_nothing_lost(capacity_run):
    _, record, _, done = capacity_run
    assert done.returncode == 0 and record["summary"]["lost"] == 0
    assert record["summary"]["detected"] == record["summary"]["published"] == SHOTS


def test_pipeline_exits_1_when_an_image_is_lost(tmp_path):
    """Three cameras fire together into one instance, and the run waits 0.01 s for results after the last
    capture: the instance is stopped after at most the image it holds, the others stay queued (lost)."""
    done = odperf_cli("pipeline", "--model", MODEL, "--batch-size", str(BATCH), "--cameras", "3", "--shots", "1",
                      "--car-interval", "2", "--arrivals", "fixed", "--images", "1", "--deadline", "30",
                      "--drain", "0.01", "--out", str(tmp_path))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "pipeline.json").read_text())  # written all the same
    summary, images = record["summary"], record["run"]["images"]
    assert summary["published"] == len(images) == 3 and summary["lost"] >= 1
    assert summary["lost"] + summary["detected"] + summary["errors"] == 3
    lost = [i for i in images if i["status"] == "lost"]
    assert len(lost) == summary["lost"] and all(i["reason"] for i in lost)
    assert any("still queued in the broker" in i["reason"] for i in lost), [i["reason"] for i in lost]
    assert f"{summary['lost']} lost" in done.stdout


# --- 4, 5: a duplicate result dropped; --encoding png carries exact pixels --------------------------------
PNG_SETTINGS = PipelineSettings(model=MODEL, batch_size=BATCH, instances=1, cameras=1, shots=3, car_interval_s=3.0,
                                arrivals="fixed", deadline_s=600.0, images=2, encoding="png")


def _camera_images(settings: PipelineSettings) -> list[np.ndarray]:
    from odperf.engine.worker import open_camera_set

    request = measure_request(settings)
    camera_set = open_camera_set(request, request.camera_grid)
    return [camera_set.image(i) for i in range(settings.images)]


class Meddler(threading.Thread):
    """Beside a real pass on the test's redis-server: once the first result is on the results stream, publish
    it again under another instance's name (what an instance killed between publishing and acknowledging,
    and the instance that took its image over, leave behind); and keep a copy of every published image."""

    def __init__(self, address: str, images: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(address)
        self.images = images
        self.duplicated: dict[bytes, bytes] | None = None
        self.published: dict[int, tuple[int, bytes]] = {}  # seq -> (camera_index, data)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and (self.duplicated is None or len(self.published) < self.images):
            if self.duplicated is None:
                for key in self.client.keys("odperf:*:results"):
                    first = self.client.xrange(key, count=1)
                    if first:
                        fields = dict(first[0][1])
                        fields[b"instance"] = b"instance-duplicate"
                        self.client.xadd(key, fields)
                        self.duplicated = fields
            for key in self.client.keys("odperf:*:images"):
                for _, f in self.client.xrange(key):
                    self.published[int(f[b"seq"])] = (int(f[b"camera_index"]), f[b"data"])
            time.sleep(0.02)
        self.client.close()


@pytest.fixture(scope="module")
def png_pass():
    with LocalRedis() as server:
        meddler = Meddler(server.address, PNG_SETTINGS.published)
        meddler.start()
        try:
            run = run_pipeline(PNG_SETTINGS, server.address)
        finally:
            meddler.stop.set()
            meddler.join(timeout=10)
    return run, meddler


def test_a_result_published_twice_is_counted_and_dropped(png_pass):
    run, meddler = png_pass
    assert meddler.duplicated is not None, "the first result never reached the results stream"
    summary = summarize(run)
    assert run.duplicates == summary.duplicates == 1
    assert summary.published == summary.detected == 3 and summary.lost == 0, summary.lost_reasons
    assert sorted(i.seq for i in run.images) == [0, 1, 2]  # each image once
    twice = next(i for i in run.images if i.seq == int(meddler.duplicated[b"seq"]))
    assert twice.instance == "instance-0"  # the first result counts; the later one is dropped
    assert all(i.instance == "instance-0" for i in run.images)
    assert run.accuracy is not None


def test_png_encoding_carries_the_camera_images_exact_pixels_through_the_broker(png_pass):
    run, meddler = png_pass
    assert run.settings.encoding == "png"
    expected = _camera_images(PNG_SETTINGS)
    assert sorted(meddler.published) == [0, 1, 2], "the test missed images on the images stream"
    for seq, (camera, data) in sorted(meddler.published.items()):
        assert data[:8] == b"\x89PNG\r\n\x1a\n"  # what the camera published is a PNG file
        decoded = decode_image(data)  # as the instance decodes it
        assert decoded.dtype == expected[camera].dtype and np.array_equal(decoded, expected[camera]), seq
    # the test can tell: JPEG, the default, does not give the pixels back
    assert not np.array_equal(decode_image(encode_image(expected[0], "jpeg")), expected[0])


def test_encoding_png_reaches_the_pass_from_the_command_line():
    from odperf.cli import build_parser
    from odperf.pipeline.cli import settings_from

    args = build_parser().parse_args(["pipeline", "--encoding", "png"])
    assert settings_from(args).encoding == "png"
    assert settings_from(build_parser().parse_args(["pipeline"])).encoding == "jpeg"


# --- 6: check_stream's verdicts on stream records --------------------------------------------------------
@pytest.fixture(scope="module")
def stream_records():
    run = load_run(STREAM_RUN)
    return {r.stream["scenario"]: r for r in run.records if r.model == "centernet_tiny"}


def _missed_line(record):
    """The server record as a run that did not hold its line: its p99 over the deadline."""
    block = dict(record.stream)
    deadline = block["line"]["deadline_s"]
    summary = dict(block["summary"], latency_s=dict(block["summary"]["latency_s"], p99=deadline * 2))
    return replace(record, stream=dict(block, holds_line=False, summary=summary))


def test_a_missed_tail_latency_fails_the_line(stream_records):
    held = stream_records["server"]
    assert held.stream["holds_line"] is True
    assert check_stream(held, Expectation(tail_latency_s=5.0)) == []
    (failure,) = check_stream(_missed_line(held), Expectation(tail_latency_s=5.0))
    assert failure.startswith("did not hold the line: centernet_tiny batch 8 on cpu, server")
    assert "p99 latency was 10.000 s > deadline 5.000 s" in failure


def test_line_rate_alone_changes_the_rate_but_does_not_make_the_line_strict(stream_records):
    missed = _missed_line(stream_records["server"])
    assert check_stream(missed, Expectation(line_rate=2.0)) == []
    assert check_stream(missed, Expectation(line_rate=2.0, deadline_image_s=5.0)) == []
    assert check_stream(missed, Expectation(line_rate=2.0, tail_latency_s=5.0))  # the tail latency does
    # what line_rate does: the rate the line asks for (95 images a car), in place of the profile's interval
    assert line_for(Expectation(tail_latency_s=5.0), 120.0).rate == pytest.approx(95 / 120.0)
    line = line_for(Expectation(line_rate=2.0, tail_latency_s=5.0), 120.0)
    assert line.rate == pytest.approx(2.0) and line.deadline_s == 5.0


def test_a_peak_below_its_floor_fails_the_peak(stream_records):
    peak = stream_records["peak"]
    rate = peak.stream["peak"]["rate"]
    assert check_stream(peak, Expectation(peak_rate_floor=rate * 0.9)) == []
    assert check_stream(peak, Expectation()) == []
    (failure,) = check_stream(peak, Expectation(peak_rate_floor=rate * 1.1))
    assert failure.startswith("peak rate below its floor: centernet_tiny batch 8 on cpu, peak")
    assert f"{rate:.3g} images/s held within 5.0 s" in failure
    none_held = replace(peak, stream=dict(peak.stream, peak=dict(peak.stream["peak"], rate=None)))
    (failure,) = check_stream(none_held, Expectation(peak_rate_floor=0.1))
    assert "peak rate below its floor" in failure and "no rate tried" in failure
    # the floor is the peak scenario's: another scenario's record is not held to it
    assert check_stream(stream_records["server"], Expectation(peak_rate_floor=1e6)) == []


# --- 7: odperf compare and odperf gate on saved runs holding stream records ------------------------------
@pytest.fixture
def timing_and_stream(tmp_path):
    """One saved run holding the timing run's records and the stream run's (same profile, and the same
    models at batch 8), as one pytest session of benchmarks/test_inference.py and test_stream.py writes."""
    timing, stream = json.loads(TIMING_RUN.read_text()), json.loads(STREAM_RUN.read_text())
    timing["benchmarks"] += stream["benchmarks"]
    timing["odperf"]["records"] += stream["odperf"]["records"]
    path = tmp_path / "timing-and-stream.json"
    path.write_text(json.dumps(timing))
    saved = load_run(path)
    assert {r.kind for r in saved.records} == {"timing", "stream"}
    return path


def _table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("---")) + 1
    rows = []
    for ln in lines[start:]:
        cells = ln.split()
        if len(cells) != 11 or not cells[1].isdigit():
            break
        rows.append(cells)
    return rows


def test_compare_skips_stream_records(timing_and_stream):
    done = odperf_cli("compare", str(TIMING_RUN), str(timing_and_stream), timeout=120)
    assert done.returncode == 0, done.stderr
    rows = _table_rows(done.stdout)
    assert len(rows) == 21 and {r[0] for r in rows} == {"centernet_tiny", "faster_rcnn_fpn", "ssd_fpn"}
    b8 = next(r for r in rows if r[:2] == ["centernet_tiny", "8"])  # timed and streamed in the second run
    assert b8[2:4] == ["ok", "ok"] and b8[4] == b8[5] and b8[6] == "1"  # paired with its own time
    assert "over 21 (model, batch) pairs both ran ok" in done.stdout
    # a run holding only stream records: nothing paired with them, nothing fails
    alone = odperf_cli("compare", str(TIMING_RUN), str(STREAM_RUN), timeout=120)
    assert alone.returncode == 0, alone.stderr
    assert {tuple(r[2:4]) for r in _table_rows(alone.stdout)} == {("ok", "absent")}
    assert "no (model, batch) ran ok on both; nothing to compare" in alone.stdout


def test_gate_skips_stream_records(timing_and_stream):
    noise = ("--time-noise", "0.001", "--memory-noise", "0.001")  # identical figures: a pass, not undecided
    done = odperf_cli("gate", "--baseline", str(TIMING_RUN), "--current", str(timing_and_stream), *noise,
                      timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("odperf gate: pass:") and "21 measurements checked" in last
    assert "compared 21 median times, 21 peak memories, 3 mAPs" in last
    # the stream run as the current run: its stream records are not taken for the timing rows
    alone = odperf_cli("gate", "--baseline", str(TIMING_RUN), "--current", str(STREAM_RUN), *noise, timeout=120)
    assert alone.returncode == 1, alone.stdout[-3000:] + alone.stderr  # a regression verdict, not unusable input
    last = alone.stdout.strip().splitlines()[-1]
    assert "21 measurements checked" in last and "compared 0 median times" in last
    fails = [ln for ln in alone.stdout.splitlines() if ln.startswith("FAIL")]
    assert sum(ln.startswith("FAIL missing:") and "not in the current run" in ln for ln in fails) == 21
    assert not any("stream" in ln for ln in fails)
