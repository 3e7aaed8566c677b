"""The GPU's state beside its memory: clocks, power, temperature and clock-event reasons through NVML
(the stand-in: no GPU here), read in the memory sampler's thread and summarised into the record."""

from __future__ import annotations

import subprocess
import sys
import time

import pynvml
import pytest

from nvml_standin import FakeGpu, FakeMig, NvmlStandIn, gpu_uuid
from odperf.engine.measurement import Measurement
from odperf.engine.request import MeasureRequest
from odperf.measure import kinds, probes
from odperf.measure.gpu_state import GpuStateReader, core_list, decode, local_cores, reason_names
from odperf.measure.memory import MemorySampler
from odperf.measure.probes import RssProbe
from odperf.results import RunRecord, migrate_record

GIB = 1024**3
POWER_CAP = pynvml.nvmlClocksThrottleReasonSwPowerCap
IDLE = pynvml.nvmlClocksThrottleReasonGpuIdle


def h200(**kw) -> FakeGpu:
    return FakeGpu("NVIDIA H200", 141 * GIB, compute_capability=(9, 0), **kw)


def test_reader_gives_figures_in_their_units_and_reasons_by_name():
    gpu = h200(sm_clock_mhz=1755, memory_clock_mhz=3201, power_mw=612_345, temperature_c=57,
               reasons=POWER_CAP | IDLE)
    reader = GpuStateReader(NvmlStandIn([gpu]), gpu)
    sample = reader.read()
    assert (sample.sm_clock_mhz, sample.memory_clock_mhz, sample.temperature_c) == (1755, 3201, 57)
    assert sample.power_w == pytest.approx(612.345)  # NVML's milliwatts
    assert decode(sample.reasons, reader.names) == ["gpu_idle", "sw_power_cap"]
    assert sample.utilization_pct == 60
    assert reader.reasons_call == "nvmlDeviceGetCurrentClocksEventReasons"
    assert reader.settings() == {
        "applications_sm_clock_mhz": 1980, "applications_memory_clock_mhz": 2619, "max_sm_clock_mhz": 1980,
        "max_memory_clock_mhz": 2619, "power_limit_w": 700.0, "persistence_mode": "enabled", "local_cpus": "0-1"}


def test_every_reason_bit_of_the_binding_has_a_name_and_an_unknown_bit_still_shows():
    names = reason_names(pynvml)
    assert names[pynvml.nvmlClocksThrottleReasonHwThermalSlowdown] == "hw_thermal_slowdown"
    assert names[pynvml.nvmlClocksThrottleReasonHwPowerBrakeSlowdown] == "hw_power_brake_slowdown"
    assert names[pynvml.nvmlClocksThrottleReasonApplicationsClocksSetting] == "applications_clocks_setting"
    assert all(bit & (bit - 1) == 0 for bit in names)  # masks ("All") and "None" are not bits
    assert decode(0x1 | 0x8000, names) == ["gpu_idle", "bit_0x8000"]  # a newer driver's bit
    assert decode(0, names) == []


def test_a_binding_without_the_newer_call_uses_the_throttle_reasons():
    gpu = h200(reasons=POWER_CAP)
    old = NvmlStandIn([gpu], missing=("nvmlDeviceGetCurrentClocksEventReasons",
                                      *(n for n in dir(pynvml) if n.startswith("nvmlClocksEventReason"))))
    with pytest.raises(AttributeError):
        old.nvmlDeviceGetCurrentClocksEventReasons  # noqa: B018  (as the older module: no such attribute)
    reader = GpuStateReader(old, gpu)
    assert reader.reasons_call == "nvmlDeviceGetCurrentClocksThrottleReasons"
    assert decode(reader.read().reasons, reader.names) == ["sw_power_cap"]  # named from the older constants


def test_a_driver_without_the_newer_call_falls_back_once_and_stays_there():
    gpu = h200(reasons=IDLE)
    nvml = NvmlStandIn([gpu], driver="525.60.13", driver_lacks=("nvmlDeviceGetCurrentClocksEventReasons",))
    reader = GpuStateReader(nvml, gpu)
    assert reader.reasons_call == "nvmlDeviceGetCurrentClocksEventReasons"  # the binding has it
    assert reader.read().reasons == IDLE and reader.reasons_call == "nvmlDeviceGetCurrentClocksThrottleReasons"
    both = NvmlStandIn([gpu], driver_lacks=("nvmlDeviceGetCurrentClocksEventReasons",
                                            "nvmlDeviceGetCurrentClocksThrottleReasons"))
    none = GpuStateReader(both, gpu)
    assert none.read().reasons is None and none.reasons_call is None


def test_figures_a_card_does_not_give_are_none_not_zero():
    gpu = h200(power_mw=None, temperature_c=None, reasons=None, applications_clocks_mhz=None, persistence=None,
               utilization_pct=None)
    reader = GpuStateReader(NvmlStandIn([gpu]), gpu)
    sample = reader.read()
    assert sample.power_w is None and sample.temperature_c is None and sample.reasons is None
    assert sample.utilization_pct is None
    assert sample.sm_clock_mhz == 1980
    settings = reader.settings()
    assert settings["applications_sm_clock_mhz"] is None and settings["persistence_mode"] is None
    unsaid = h200(local_cpus=None)
    assert GpuStateReader(NvmlStandIn([unsaid]), unsaid).settings()["local_cpus"] is None


def test_the_cores_near_the_gpu_come_from_nvmls_affinity_words():
    """NVML gives 64-bit words, bit k of word w for core 64w + k: a two-socket host's second socket."""
    gpu = h200(local_cpus=(*range(48, 72), 100))
    nvml = NvmlStandIn([gpu])
    assert local_cores(nvml, gpu, cpu_count=128) == {*range(48, 72), 100}
    assert core_list(local_cores(nvml, gpu, cpu_count=128)) == "48-71,100"
    assert local_cores(nvml, gpu, cpu_count=64) == set(range(48, 64))  # words for the cores asked about only
    assert core_list({3}) == "3" and core_list(set()) is None


def test_a_mig_instance_reads_its_parent_gpu_and_a_cpu_reads_nothing(monkeypatch):
    mig = FakeMig("NVIDIA H200 MIG 1g.18gb", 18 * GIB, "MIG-aaaaaaaa-1111-2222-3333-444444444444", 9)
    gpu = h200(migs={0: mig}, sm_clock_mhz=1410)
    nvml = NvmlStandIn([gpu])
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    reader = kinds.state_reader("gpu:0", env={"CUDA_VISIBLE_DEVICES": mig.uuid}, kind=kinds.NvidiaGpu())
    assert reader.handle is gpu and reader.read().sm_clock_mhz == 1410
    assert "parent GPU" in reader.settings()["of"]
    assert kinds.state_reader("cpu") is None
    monkeypatch.setattr(probes, "import_nvml", lambda: None)  # no driver: no reader, not an error
    assert kinds.state_reader("gpu:0", env={}, kind=kinds.NvidiaGpu()) is None


def wait_states(sampler: MemorySampler, more: int = 3) -> None:
    """Until the sampler's thread read the GPU's state ``more`` times after now."""
    target = len(sampler._states) + more
    deadline = time.monotonic() + 60
    while len(sampler._states) < target and time.monotonic() < deadline:
        time.sleep(0.005)


def test_sampler_summarises_the_timed_images_only(monkeypatch):
    """Idle at 345 MHz while loading; the timed images at 1755-1980 MHz under a power cap; idle again."""
    gpu = h200(sm_clock_mhz=345, power_mw=75_000, reasons=IDLE)
    nvml = NvmlStandIn([FakeGpu("Tesla T4", 16 * GIB), gpu])
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    env = {"CUDA_VISIBLE_DEVICES": gpu_uuid(1)}
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        reader = kinds.state_reader("gpu:0", env=env, kind=kinds.NvidiaGpu())
        sampler = MemorySampler([RssProbe(worker.pid)], period_ms=5, state=reader, state_period_ms=10)
        assert sampler.state_every == 2
        with sampler:
            wait_states(sampler)
            sampler.mark_timed(start=time.monotonic())
            gpu.sm_clock_mhz, gpu.power_mw, gpu.reasons, gpu.utilization_pct = 1980, 690_000, POWER_CAP, 35
            wait_states(sampler)
            gpu.sm_clock_mhz = 1755
            wait_states(sampler)
            sampler.mark_timed(end=time.monotonic())
            gpu.sm_clock_mhz, gpu.power_mw, gpu.reasons = 345, 75_000, IDLE
            wait_states(sampler)
        state = sampler.stop().gpu_state
    finally:
        worker.kill()
        worker.wait()
    assert state["window"] == "timed images" and state["samples"] >= 4
    assert state["sm_clock_mhz"]["min"] == 1755 and state["sm_clock_mhz"]["max"] == 1980
    assert state["power_w"]["min"] == pytest.approx(690.0)
    assert state["utilization_pct"] == {"min": 35.0, "median": 35.0, "max": 35.0}
    assert state["clock_event_reasons"] == {"sw_power_cap": 1.0}  # idle only outside the window
    assert state["period_ms"] == 10 and state["settings"]["power_limit_w"] == 700.0
    assert state["reasons_call"] == "nvmlDeviceGetCurrentClocksEventReasons"


def test_without_marks_the_whole_run_counts_and_each_reason_keeps_its_share():
    gpu = h200(reasons=IDLE)
    sampler = MemorySampler([], period_ms=5, state=GpuStateReader(NvmlStandIn([gpu]), gpu), state_period_ms=5)
    with sampler:
        wait_states(sampler, 4)
        gpu.reasons = IDLE | POWER_CAP
        wait_states(sampler, 4)
    state = sampler.stop().gpu_state
    assert state["window"] == "whole worker run"
    shares = state["clock_event_reasons"]
    assert shares["gpu_idle"] == 1.0 and 0.0 < shares["sw_power_cap"] < 1.0
    assert MemorySampler([], period_ms=5).start().stop().gpu_state is None  # no reader (CPU): nothing


def test_the_record_carries_the_state_and_older_records_read_as_unknown():
    gpu = h200(reasons=POWER_CAP)
    sampler = MemorySampler([], period_ms=5, state=GpuStateReader(NvmlStandIn([gpu]), gpu))
    with sampler:
        wait_states(sampler, 2)
    m = Measurement(request=MeasureRequest(model="m", backend="torch", device="gpu:0", batch_size=8, images=2),
                    worker_times_s=[0.2, 0.2], parent_times_s=[0.21, 0.21], memory=sampler.stop())
    record = m.to_record(device_profile="h200")
    assert record.gpu_state["clock_event_reasons"] == {"sw_power_cap": 1.0}
    again = RunRecord.from_extra_info(record.to_extra_info())
    assert again.gpu_state == record.gpu_state
    old = migrate_record({"model": "m", "device_profile": "h200", "batch_size": 8, "kind": "timing",
                          "odperf_schema": 2}, 2, has_stats=True)
    migrated = RunRecord.from_extra_info(old)
    assert migrated.odperf_schema == 3
    assert migrated.gpu_state is None and migrated.device_time_per_image_s is None and migrated.host_share is None


def test_a_stream_runs_gpu_state_is_summarised_over_that_run_and_goes_into_its_record():
    """A LoadGen run under a power cap between idle stretches: its own window says so; a window no sample
    fell in says it is the whole run instead; the scenario's record carries its longest run's state."""
    from odperf.results import RunRecord
    from odperf.stream.cases import ScenarioResult
    from odperf.stream.record import fill_record
    from odperf.stream.session import StreamRun

    gpu = h200(sm_clock_mhz=345, reasons=IDLE)
    sampler = MemorySampler([], period_ms=5, state=GpuStateReader(NvmlStandIn([gpu]), gpu), state_period_ms=5)
    with sampler:
        wait_states(sampler)
        gpu.sm_clock_mhz, gpu.reasons, gpu.utilization_pct = 1410, POWER_CAP, 97
        t_start = time.monotonic()  # after the change: every sample from here reads the run's state
        wait_states(sampler)
        t_end = time.monotonic()
        time.sleep(0.3)  # a sample stamped before t_end has been read before the card goes idle again
        gpu.sm_clock_mhz, gpu.reasons, gpu.utilization_pct = 345, IDLE, 0
        wait_states(sampler)
    run_state = sampler.gpu_state_between(t_start, t_end, "LoadGen run")
    assert run_state["window"] == "LoadGen run" and run_state["samples"] >= 3
    assert run_state["sm_clock_mhz"] == {"min": 1410.0, "median": 1410.0, "max": 1410.0}
    assert run_state["clock_event_reasons"] == {"sw_power_cap": 1.0} and run_state["utilization_pct"]["min"] == 97
    late = sampler.gpu_state_between(t_end + 100, t_end + 200, "LoadGen run")
    assert late["window"] == "whole worker run (no sample fell inside the LoadGen run)"
    assert late["sm_clock_mhz"]["min"] == 345 and late["sm_clock_mhz"]["max"] == 1410

    def run(wall_s: float, state: dict | None) -> StreamRun:
        return StreamRun(settings=None, summary=None, log_dir="", wall_s=wall_s, batches=1, model_s=0.1,
                         peak_memory_mb=100.0, gpu_state=state)

    result = ScenarioResult(scenario="server", block={"scenario": "server"},
                            runs=[run(1.0, late), run(5.0, run_state)])
    record = fill_record(RunRecord(model="m", device_profile="h200", batch_size=8, kind="stream",
                                   gpu_state={"window": "timed images"}), result)
    assert record.gpu_state is run_state  # the longest run's, not the timed images' before the stream
