"""Device time apart from wall time: CUDA events around each model call (a GPU's), reported by the
detector per image, summed into the record with the host's share; nothing at all where nothing was timed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odperf.backends.pytorch.convert import make_run
from odperf.backends.pytorch.device_time import CudaEventClock
from odperf.engine.measurement import Measurement
from odperf.engine.request import MeasureRequest
from odperf.backends.contract import Detections, Detector


class ScriptedEvent:
    """Stands in for torch.cuda.Event(enable_timing=True) (no GPU here): ``record`` stamps the next
    scripted GPU time (ms); ``elapsed_time`` refuses an event not yet synchronised, as CUDA does."""

    def __init__(self, stamps: list[float]) -> None:
        self.stamps, self.at, self.synced = stamps, None, False

    def record(self) -> None:
        self.at = self.stamps.pop(0)

    def synchronize(self) -> None:
        self.synced = True

    def elapsed_time(self, end: "ScriptedEvent") -> float:
        if not end.synced:
            raise RuntimeError("CUDA error: device not ready")
        return end.at - self.at


def test_clock_sums_the_calls_since_the_last_take_and_has_nothing_without_calls():
    stamps = [0.0, 30.0, 31.0, 51.0, 100.0, 105.5]
    clock = CudaEventClock(lambda: ScriptedEvent(stamps))
    assert clock.take() is None  # no call: nothing, not zero
    for _ in range(2):  # one camera image, two batches
        clock.end(clock.begin())
    assert clock.take() == pytest.approx(0.050)
    assert clock.take() is None  # taken: the next image starts from nothing
    clock.end(clock.begin())
    assert clock.take() == pytest.approx(0.0055)


def test_a_stream_that_never_takes_keeps_few_events_and_loses_no_time(monkeypatch):
    from odperf.backends.pytorch import device_time

    monkeypatch.setattr(device_time, "MAX_PENDING", 4)
    stamps = [float(x) for k in range(10) for x in (10 * k, 10 * k + 2)]  # ten calls of 2 ms each
    clock = CudaEventClock(lambda: ScriptedEvent(stamps))
    for _ in range(10):
        clock.end(clock.begin())
        assert len(clock._pending) <= 4
    assert clock.take() == pytest.approx(0.020) and clock.take() is None


def tiny_model() -> torch.nn.Module:
    class Boxes(torch.nn.Module):
        def forward(self, images):
            return [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "scores": img.mean().reshape(1),
                     "labels": torch.tensor([1])} for img in images]
    return Boxes()


def test_a_cpu_model_has_no_device_clock_and_reports_none():
    run = make_run(tiny_model(), "cpu")
    assert run.device_clock is None
    det = Detector("tiny", source=".", format="architecture", run=run, backend="torch",
                   device_clock=run.device_clock)
    out = det(np.zeros((2, 30, 30, 3), np.uint8))
    assert len(out) == 2 and det.take_device_seconds() is None


def test_tile_by_tile_counts_every_call_of_the_image():
    class CountingClock:
        def __init__(self) -> None:
            self.calls = 0

        def take(self) -> float | None:
            calls, self.calls = self.calls, 0
            return 0.01 * calls if calls else None

    clock = CountingClock()

    def one(batch: np.ndarray) -> Detections:
        clock.calls += 1
        return Detections(np.zeros((1, 1, 4)), np.zeros((1, 1)), np.ones((1, 1)), np.ones(1))

    det = Detector("b1", source=".", format="saved_model", run=one, batch_mode="tile_by_tile", max_batch=1,
                   device_clock=clock)
    det(np.zeros((3, 8, 8, 3), np.uint8))
    assert det.take_device_seconds() == pytest.approx(0.03) and det.take_device_seconds() is None


def test_the_record_splits_device_and_host_time():
    req = MeasureRequest(model="m", backend="torch", device="gpu:0", batch_size=64, images=3)
    m = Measurement(request=req, worker_times_s=[0.10, 0.12, 0.14], parent_times_s=[0.11, 0.13, 0.15],
                    device_times_s=[0.06, 0.09, 0.09])
    rec = m.to_record(device_profile="h200")
    assert rec.device_time_per_image_s == pytest.approx({"mean": 0.08, "median": 0.09, "min": 0.06, "max": 0.09,
                                                             "wall_mean": 0.12})
    assert rec.host_share == pytest.approx(1 - 0.24 / 0.36)
    cpu = Measurement(request=req, worker_times_s=[0.1], parent_times_s=[0.1]).to_record(device_profile="cpu")
    assert cpu.device_time_per_image_s is None and cpu.host_share is None
    partial = Measurement(request=req, worker_times_s=[0.1, 0.1], device_times_s=[0.05])  # an image untimed
    assert partial.device_split() is None
