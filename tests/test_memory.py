"""The memory sampler: achieved period, its own cost, the timeline, and RSS tracking a real allocation."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from engine_models import BALLAST_MB
from odperf.engine import MeasureRequest, measure
from odperf.measure.memory import MemorySampler, MemoryStats, _downsample
from odperf.measure.probes import RssProbe


class Scripted:
    """A probe that replays given byte values (then repeats the last): for the sampler's arithmetic."""

    def __init__(self, name: str, scope: str, values: list[float | None]) -> None:
        self.name, self.scope, self.values, self.i = name, scope, values, 0

    def read(self) -> float | None:
        v = self.values[min(self.i, len(self.values) - 1)]
        self.i += 1
        return v

    def wait_replayed(self) -> None:
        """Until every scripted value was read once (however slowly a busy machine schedules the thread)."""
        deadline = time.monotonic() + 60
        while self.i <= len(self.values) and time.monotonic() < deadline:
            time.sleep(0.01)


def test_sampler_keeps_its_period_and_reports_its_cost():
    with MemorySampler([RssProbe(os.getpid())], period_ms=10) as sampler:
        time.sleep(1.0)
    stats = sampler.stop()
    assert stats.probe == "host_rss" and stats.peak_mb > 0
    # Under 200 samples the timeline holds every sample: the gaps are the achieved periods.
    gaps = np.diff([t for t, _ in stats.timeline]) * 1000
    assert len(gaps) == stats.samples - 1
    assert 5 <= np.median(gaps) <= 20  # most wake-ups on time even on a busy machine
    assert gaps.min() >= 5  # absolute deadlines: never faster than asked, no catch-up bursts
    assert stats.period_mean_ms == pytest.approx(gaps.mean(), rel=1e-2) and stats.period_p99_ms >= np.median(gaps)
    assert stats.period_mean_ms == pytest.approx(stats.duration_s * 1000 / stats.samples, rel=0.2)
    assert 0 < stats.sampler_cpu_fraction < 0.05  # measured ~0.005 of a core on an idle machine
    assert MemoryStats.from_dict(stats.to_dict()) == stats


ALLOCATE = """
import sys, time
import numpy as np
print("ready", flush=True)
time.sleep(0.3)
block = np.ones(int(sys.argv[1]) * 1_000_000 // 8)  # every page written
time.sleep(0.3)
del block
time.sleep(0.3)
"""


def test_rss_peak_of_another_process_rises_by_what_it_allocates():
    """Sampled from outside, as the engine samples its workers: a process allocates 500 MB."""
    n_mb = 500
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATE, str(n_mb)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        with MemorySampler([RssProbe(proc.pid)], period_ms=10) as sampler:
            proc.wait(timeout=60)
        stats = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    before = stats.timeline[0][1]
    # Tolerance 5% of the allocation: the interpreter's own pages move a little around it.
    assert stats.peak_mb - before == pytest.approx(n_mb, abs=0.05 * n_mb)


def test_device_probes_are_relative_to_their_start_and_the_headline_prefers_nvml():
    rss = Scripted("host_rss", "process", [1e9, 1.2e9])
    device = Scripted("nvml_device", "device", [5e9, 5e9, 7e9])  # first read is the baseline
    with MemorySampler([rss, device], period_ms=5) as sampler:
        device.wait_replayed()
    stats = sampler.stop()
    assert stats.probe == "nvml_device" and stats.peak_mb == pytest.approx(2000)
    assert stats.probes["nvml_device"].baseline_mb == pytest.approx(5000)
    assert stats.probes["host_rss"].peak_mb == pytest.approx(1200)


def test_unavailable_samples_are_skipped_not_zero():
    probe = Scripted("nvml_process", "process", [None, 3e8, None, 1e8])
    with MemorySampler([probe], period_ms=5) as sampler:
        probe.wait_replayed()
    stats = sampler.stop()
    assert stats.peak_mb == pytest.approx(300) and stats.probes["nvml_process"].samples < stats.samples


def test_timeline_is_downsampled_keeping_the_peak():
    t = np.arange(10_000) * 0.01
    mb = np.zeros(10_000)
    mb[4321] = 999.0
    line = _downsample(t, mb, points=200)
    assert len(line) == 200 and max(v for _, v in line) == 999.0


def test_worker_rss_peak_rises_by_at_least_what_the_model_holds_at_once(engine_models, engine_dataset):
    """Two workers, same images; one model holds a 500 MB tensor during each call.

    Only a lower bound holds: TensorFlow's allocator keeps freed memory and may grow again rather than
    reuse a fragmented region, so the held memory (what RSS and nvidia-smi see) can exceed live tensors.
    """
    peaks = {}
    for name in ("tiny", "ballast"):
        m = measure(MeasureRequest(model=str(engine_models[name]), batch_size=64, images=1, bare_loop=False,
                                   dataset_root=str(engine_dataset), dataset_split="val2017"))
        assert m.outcome == "ok", m.error
        peaks[name] = m.memory.peak_mb
        assert m.memory.samples > 10 and m.memory.period_mean_ms >= 9
    assert peaks["ballast"] - peaks["tiny"] >= 0.9 * BALLAST_MB
