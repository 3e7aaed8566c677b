"""Memory probes: NVML (through a stand-in for pynvml), Jetson memory (jtop through a stand-in, meminfo for real),
host RSS, and probe selection."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from pathlib import Path

import psutil
import pytest

import jtop_standin
from nvml_standin import FakeGpu, FakeMig, NvmlStandIn, gpu_uuid
from odperf.measure import probes
from odperf.measure.kinds import Jetson, NvidiaGpu, external_probes
from odperf.measure.probes import JetsonSharedProbe, JtopProbe, NvmlDeviceProbe, NvmlProcessProbe, RssProbe, jetson_probe

GIB = 1024**3
MB = 1_000_000
MIG = "MIG-0c0c0c0c-0000-5000-8000-00000000000c"


def test_nvml_process_probe_counts_only_the_workers_pid():
    gpu = FakeGpu("NVIDIA A100-SXM4-80GB", 80 * GIB, used_bytes=9 * GIB, processes={111: 2 * GIB, 222: 5 * GIB})
    nvml = NvmlStandIn([gpu])
    probe = NvmlProcessProbe(nvml, 0, pid=222)
    assert probe.read() == 5 * GIB
    gpu.processes[222] = 6 * GIB
    assert probe.read() == 6 * GIB
    assert NvmlProcessProbe(nvml, 0, pid=333).read() == 0.0  # no CUDA context yet: holds nothing
    gpu.processes[333] = None  # a driver that hides per-process figures
    assert NvmlProcessProbe(nvml, 0, pid=333).read() == 0.0
    assert NvmlDeviceProbe(nvml, 0).read() == 9 * GIB


def test_nvml_errors_read_as_unavailable():
    class Broken(NvmlStandIn):
        def nvmlDeviceGetComputeRunningProcesses(self, gpu):
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

        def nvmlDeviceGetMemoryInfo(self, gpu):
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    nvml = Broken([FakeGpu("Tesla T4", 16 * GIB)])
    assert NvmlProcessProbe(nvml, 0, pid=1).read() is None
    assert NvmlDeviceProbe(nvml, 0).read() is None


def test_jetson_probe_reads_used_shared_memory(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        7859256 kB\nMemFree:          123 kB\nMemAvailable:    5859256 kB\n")
    assert JetsonSharedProbe(meminfo).read() == 2_000_000 * 1024
    meminfo.write_text("garbage\n")
    assert JetsonSharedProbe(meminfo).read() is None


RAM_KB = {"tot": 7_859_256, "used": 2_500_000, "free": 1_000_000, "buffers": 50_000, "cached": 4_000_000,
          "shared": 700_000}


def test_jetson_memory_comes_from_jtop_where_its_service_answers(monkeypatch):
    ram = dict(RAM_KB)
    stand_in = jtop_standin.module(ram)
    monkeypatch.setitem(sys.modules, "jtop", stand_in)
    probe = jetson_probe()
    assert isinstance(probe, JtopProbe) and probe.name == "jetson_jtop" and probe.scope == "system"
    assert probe.read() == 2_500_000 * 1024  # jtop's kB
    ram["used"] = 3_000_000
    assert probe.read() == 3_000_000 * 1024
    (session,) = stand_in.opened
    probe.close()
    assert session.closed and probe.read() is None
    assert [p.name for p in external_probes("gpu:0", os.getpid(), kind=Jetson())] == ["jetson_jtop", "host_rss"]


def test_jetson_memory_falls_back_to_meminfo_without_jtop_or_its_service(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", jtop_standin.module(RAM_KB, service=False))
    stopped = jetson_probe()  # installed, service not running
    monkeypatch.setitem(sys.modules, "jtop", None)  # not installed: `import jtop` raises ImportError
    absent = jetson_probe()
    for probe in (stopped, absent):
        assert isinstance(probe, JetsonSharedProbe) and probe.name == "jetson_shared"
        used = probe.read()  # this machine's own /proc/meminfo
        assert used is not None and 0 < used < psutil.virtual_memory().total
    assert [p.name for p in external_probes("gpu:0", os.getpid(), kind=Jetson())] == ["jetson_shared", "host_rss"]


def test_nvml_is_nvidia_ml_py():
    """odperf imports NVIDIA's maintained bindings (nvidia-ml-py's ``pynvml`` module); without a driver
    (as here) NVML is simply absent."""
    dist = importlib.metadata.distribution("nvidia-ml-py")
    assert Path(dist.locate_file("pynvml.py")) == Path(importlib.import_module("pynvml").__file__)
    nvml = probes.import_nvml()
    assert nvml is None or nvml.__file__ == str(dist.locate_file("pynvml.py"))


def test_rss_probe_reads_a_live_process_and_none_once_it_is_gone():
    probe = RssProbe(os.getpid())
    import psutil

    assert probe.read() == pytest.approx(psutil.Process().memory_info().rss, rel=0.05)
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = RssProbe(child.pid)
    child.wait()
    assert dead.read() is None


def test_probe_selection_by_device(monkeypatch):
    me = os.getpid()
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, processes={me: GIB})
    nvml = NvmlStandIn([FakeGpu("Tesla T4", 16 * GIB), gpu])
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    assert [p.name for p in external_probes("cpu", os.getpid())] == ["host_rss"]
    nvidia, jetson = NvidiaGpu(), Jetson()
    chosen = external_probes("gpu:1", me, env={}, kind=nvidia)  # nothing inherited: every GPU
    assert [p.name for p in chosen] == ["nvml_process", "nvml_device", "host_rss"]
    assert chosen[0].read() == GIB  # the second GPU, by NVML index
    assert [p.name for p in external_probes("gpu:0", os.getpid(), kind=jetson)] == ["jetson_shared", "host_rss"]
    monkeypatch.setattr(probes, "import_nvml", lambda: None)  # a GPU request where NVML is absent
    assert [p.name for p in external_probes("gpu:0", os.getpid(), kind=nvidia)] == ["host_rss"]


def test_probes_read_the_card_the_scheduler_gave_not_nvml_index_n(monkeypatch):
    """gpu:N under CUDA_VISIBLE_DEVICES is the N-th given card: both NVML probes read that card only."""
    me = os.getpid()
    mig = FakeMig("NVIDIA A100-SXM4-40GB MIG 2g.10gb", 10 * GIB, MIG, gpu_instance_id=3,
                  used_bytes=3 * GIB, processes={me: 2 * GIB})
    gpus = [FakeGpu(f"Tesla T4 #{i}", 16 * GIB, used_bytes=i * GIB, processes={me: i * 100 * MB}) for i in range(3)]
    gpus.append(FakeGpu("NVIDIA A100-SXM4-40GB", 40 * GIB, used_bytes=30 * GIB, processes={me: 25 * GIB},
                        migs={2: mig}))
    nvml = NvmlStandIn(gpus)
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)

    def readings(device, visible):
        process, device_probe, _ = external_probes(device, me, env={"CUDA_VISIBLE_DEVICES": visible},
                                                   kind=NvidiaGpu())
        return process.index, process.read(), device_probe.read()

    assert readings("gpu:0", "2,1") == (2, 200 * MB, 2 * GIB)  # not NVML's index 0
    assert readings("gpu:1", "2,1") == (1, 100 * MB, 1 * GIB)
    assert readings("gpu:1", f"{gpu_uuid(0)},{gpu_uuid(2)}") == (2, 200 * MB, 2 * GIB)
    assert readings("gpu:0", MIG) == (3, 2 * GIB, 3 * GIB)  # the MIG slice, not the whole A100
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # by default the list odperf itself was given
    assert [p.read() for p in external_probes("gpu:0", me, kind=NvidiaGpu())[:2]] == [100 * MB, 1 * GIB]


def test_nvml_process_probe_says_when_it_never_saw_the_worker():
    gpu = FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, used_bytes=5 * GIB, processes={1: 4 * GIB})
    probe = NvmlProcessProbe(NvmlStandIn([gpu]), 0, pid=222)
    assert probe.read() == 0.0 and probe.missed() == "worker not listed by NVML, e.g. a container's PID namespace"
    gpu.processes[222] = None
    assert probe.read() == 0.0 and probe.missed() == "NVML lists the worker without a memory figure"
    gpu.processes[222] = GIB
    assert probe.read() == GIB and probe.missed() is None
    del gpu.processes[222]  # the worker released its context: a real 0, and it was seen
    assert probe.read() == 0.0 and probe.missed() is None


def test_import_nvml_is_none_without_a_driver():
    # No NVIDIA driver on a CPU machine: NVML fails to initialise, which is an answer, not an error.
    nvml = probes.import_nvml()
    if nvml is not None:
        pytest.skip("this machine has an NVIDIA driver")
    assert nvml is None
