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

GIB = 1024**3


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
    # Absolute deadlines: never faster than asked and no catch-up bursts after a late wake-up, so never
    # more samples than 10 ms slots (what a loaded machine does to single gaps is the scheduler's business).
    assert np.median(gaps) >= 5 and stats.samples <= stats.duration_s * 1000 / 10 + 2
    assert stats.period_mean_ms == pytest.approx(gaps.mean(), rel=1e-2) and stats.period_p99_ms >= np.median(gaps)
    assert stats.period_mean_ms == pytest.approx(stats.duration_s * 1000 / stats.samples, rel=0.2)
    assert 0 < stats.sampler_cpu_fraction < 0.05  # measured ~0.005 of a core on an idle machine


ALLOCATE = """
import sys
import numpy as np
print("ready", flush=True)
sys.stdin.readline()
block = np.ones(int(sys.argv[1]) * 1_000_000 // 8)  # every page written
print("allocated", flush=True)
sys.stdin.readline()
del block
print("freed", flush=True)
sys.stdin.readline()
"""


def _samples_after(sampler: MemorySampler, count: int, more: int = 5) -> None:
    """Wait until the sampler has taken ``more`` samples beyond ``count`` (however slow a loaded machine)."""
    while len(sampler._times) < count + more:
        time.sleep(0.01)


def test_rss_peak_of_another_process_rises_by_what_it_allocates():
    """Sampled from outside, as the engine samples its workers: a process allocates 500 MB. Each step waits
    for the sampler to have seen the one before (no time windows a loaded machine could close)."""
    n_mb = 500
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATE, str(n_mb)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with MemorySampler([RssProbe(proc.pid)], period_ms=10) as sampler:
            for step in ("allocated", "freed", None):
                _samples_after(sampler, len(sampler._times))
                proc.stdin.write("\n")
                proc.stdin.flush()
                if step:
                    assert proc.stdout.readline().strip() == step
            proc.wait(timeout=120)
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
    peaks, records = {}, {}
    for name in ("tiny", "ballast"):
        m = measure(MeasureRequest(model=str(engine_models[name]), batch_size=64, images=1,
                                   dataset_root=str(engine_dataset), dataset_split="val2017"))
        assert m.outcome == "ok", m.error
        peaks[name], records[name] = m.memory.peak_mb, m.to_record()
        assert m.memory.samples > 10 and m.memory.period_mean_ms >= 9
    assert peaks["ballast"] - peaks["tiny"] >= 0.9 * BALLAST_MB
    # The model's own memory (peak above the runtime's, read before the model loaded) holds the ballast;
    # the runtime's own is most of the tiny model's peak and alike for both.
    tiny, ballast = records["tiny"], records["ballast"]
    assert ballast.model_memory_mb - tiny.model_memory_mb >= 0.9 * BALLAST_MB  # the ballast is the model's own
    assert tiny.runtime_memory_mb > tiny.model_memory_mb
    assert tiny.model_memory_mb == pytest.approx(tiny.peak_memory_mb - tiny.runtime_memory_mb)
    assert 0.8 < ballast.runtime_memory_mb / tiny.runtime_memory_mb < 1.25


# --- NVML inside containers: the worker's PID is not the one NVML lists ------------------------------------
CONTAINER = "nvml_device (worker not listed by NVML, e.g. a container's PID namespace)"


def wait_for_samples(sampler: MemorySampler, more: int = 3) -> None:
    """Until the sampler took ``more`` samples after now (so at least two saw the state set before)."""
    target = sampler.stats().samples + more
    deadline = time.monotonic() + 60
    while sampler.stats().samples < target and time.monotonic() < deadline:
        time.sleep(0.005)


def sample_gpu_run(monkeypatch, listed: bool | None, rise: int, own: int | None) -> MemoryStats:
    """A real process as the worker, sampled through the NVML stand-in while the GPU's memory rises by
    ``rise`` bytes and falls back. ``listed``: NVML lists the worker's PID (with ``own`` bytes), or only
    a foreign PID (another container's process, as NVML sees host PIDs), or (None) the worker's PID
    without a memory figure."""
    from nvml_standin import FakeGpu, NvmlStandIn, gpu_uuid
    from odperf.measure import kinds, probes

    foreign = {4242: 6 * GIB}
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, used_bytes=6 * GIB, processes=dict(foreign))
    nvml = NvmlStandIn([FakeGpu("Tesla T4", 16 * GIB), gpu])
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        chosen = kinds.external_probes("gpu:0", worker.pid, env={"CUDA_VISIBLE_DEVICES": gpu_uuid(1)},
                                       kind=kinds.NvidiaGpu())
        with MemorySampler(chosen, period_ms=5) as sampler:
            wait_for_samples(sampler)
            # The worker creates its context: the device's used memory rises. Each change is one assignment,
            # as the sampler thread reads these between them.
            gpu.used_bytes = 6 * GIB + rise
            if listed is not None:
                gpu.processes = {**foreign, (worker.pid if listed else 4343): own}
            else:
                gpu.processes = {**foreign, worker.pid: None}
            wait_for_samples(sampler)
            gpu.processes, gpu.used_bytes = dict(foreign), 6 * GIB  # ... and releases it
            wait_for_samples(sampler)
        return sampler.stop()
    finally:
        worker.kill()
        worker.wait()


def test_nvml_listing_the_worker_keeps_its_own_figure(monkeypatch):
    stats = sample_gpu_run(monkeypatch, listed=True, rise=2 * GIB, own=int(1.5 * GIB))
    assert stats.probe == "nvml_process" and stats.peak_mb == pytest.approx(1.5 * GIB / 1e6)
    assert stats.probes["nvml_device"].peak_mb == pytest.approx(2 * GIB / 1e6)  # the device counts others too
    assert max(mb for _, mb in stats.timeline) == pytest.approx(1.5 * GIB / 1e6)


def test_worker_unlisted_in_a_container_falls_back_to_the_device_rise(monkeypatch):
    stats = sample_gpu_run(monkeypatch, listed=False, rise=2 * GIB, own=int(1.5 * GIB))
    assert stats.probe == CONTAINER
    # The rise above the device's memory before the worker started, not the 6 GiB other tenants hold.
    assert stats.peak_mb == pytest.approx(2 * GIB / 1e6) and stats.probes["nvml_device"].baseline_mb > 6000
    assert stats.probes["nvml_process"].peak_mb == 0.0  # what was the headline before: a GPU peak of 0 MB
    assert max(mb for _, mb in stats.timeline) == pytest.approx(2 * GIB / 1e6)


def test_worker_listed_without_a_figure_falls_back_and_says_so(monkeypatch):
    stats = sample_gpu_run(monkeypatch, listed=None, rise=GIB, own=None)
    assert stats.probe == "nvml_device (NVML lists the worker without a memory figure)"
    assert stats.peak_mb == pytest.approx(GIB / 1e6)


def test_unlisted_worker_with_a_still_device_keeps_the_process_probe(monkeypatch):
    """A worker that never touched the GPU: nothing moved, so there is nothing better than its 0."""
    stats = sample_gpu_run(monkeypatch, listed=False, rise=0, own=GIB)
    assert stats.probe == "nvml_process" and stats.peak_mb == 0.0
