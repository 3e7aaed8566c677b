"""The device-kind registry and the one reader of device strings: which kind a device string reaches,
what a worker on it sees, which probes read it, detection once per run, and a new kind added as one entry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nvml_standin import FakeGpu, NvmlStandIn
from odperf.engine.request import MeasureRequest
from odperf.engine.runtime import worker_env
from odperf.errors import WorkloadError
from odperf.measure import kinds, probes
from odperf.measure.devices import DeviceError, DeviceProfile, DeviceRef, load_table, parse_device
from odperf.util.names import slug
from odperf.measure.kinds import DeviceKind, detect_profiles, detected, external_probes, get_profile, kind_of
from odperf.measure.probes import RssProbe
from odperf.suite.targets import build_targets

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "ref", "label"),
    [("cpu", DeviceRef("cpu"), "cpu"), ("gpu", DeviceRef("gpu", 0), "gpu"), ("gpu:0", DeviceRef("gpu", 0), "gpu"),
     (" GPU:3 ", DeviceRef("gpu", 3), "gpu3")],
)
def test_device_strings_read_one_way(text, ref, label):
    assert parse_device(text) == ref and ref.label == label
    assert str(ref) == ("cpu" if ref.slot == "cpu" else f"gpu:{ref.index}")


@pytest.mark.parametrize("text", ["tpu:0", "gpu:-1", "gpu:x", "cpu:0", "", "gpu:1:2"])
def test_other_device_strings_are_refused_naming_the_forms(text):
    with pytest.raises(DeviceError, match=r"name it as cpu, gpu \(= gpu:0\) or gpu:N"):
        parse_device(text)


def test_every_reader_of_device_strings_agrees():
    """The request, the targets and the worker's environment take the same forms and refuse the same."""
    assert MeasureRequest(model="m", batch_size=1, images=1, device="GPU").device == "gpu:0"
    with pytest.raises(WorkloadError, match="device must be 'cpu' or 'gpu:N', got 'tpu:0'"):
        MeasureRequest(model="m", batch_size=1, images=1, device="tpu:0")
    profiles = [DeviceProfile("cpu", "cpu", "cpu", "cpu", 1000.0, ["cpu"]),
                DeviceProfile("t4", "gpu", "gpu:1", "Tesla T4", 16000.0, ["gpu", "t4"])]
    assert [t.label for t in build_targets("GPU:1,cpu", profiles, None)] == ["gpu1", "cpu"]
    with pytest.raises(Exception, match="no device 'tpu:0' on this machine .*use cpu, gpu"):
        build_targets("tpu:0", profiles, None)
    with pytest.raises(DeviceError, match="is not one odperf knows"):
        worker_env("tpu:0", {})


def test_a_gpu_slot_reaches_the_jetson_on_a_board_and_nvidia_elsewhere(monkeypatch, tmp_path):
    assert kind_of("cpu").name == "cpu"
    monkeypatch.setattr(kinds, "DEVICE_TREE_MODEL", tmp_path / "absent")
    assert kind_of("gpu:0").name == "gpu"
    tree = tmp_path / "model"
    tree.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr(kinds, "DEVICE_TREE_MODEL", tree)
    assert kind_of("gpu:0").name == "jetson"
    assert [p.name for p in external_probes("gpu:0", os.getpid())] == ["jetson_shared", "host_rss"]
    # A Jetson's GPU is a CUDA device: its worker is narrowed as a discrete card's is.
    assert worker_env("gpu:0", {"CUDA_VISIBLE_DEVICES": "0"})["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_a_cpu_worker_sees_no_gpu_and_is_sampled_by_its_rss(monkeypatch):
    env = worker_env("cpu", {"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/usr/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["PYTHONUNBUFFERED"] == "1" and env["PATH"] == "/usr/bin"
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in env
    assert [p.name for p in external_probes("cpu", os.getpid())] == ["host_rss"]


def test_the_hardware_is_detected_once_per_run(monkeypatch):
    """A run's state and each of its cases ask ``detected()``; the drivers are asked once per table and
    CUDA_VISIBLE_DEVICES, again only when that changes."""
    nvml = NvmlStandIn([FakeGpu("Tesla T4", 16 * GIB), FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB)])
    opened = []
    monkeypatch.setattr(probes, "import_nvml", lambda: opened.append(1) or nvml)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert [p.name for p in detected()] == ["cpu", "h100", "t4"]
    assert kinds.profile_of("gpu:1").name == "t4" and kinds.profile_of("gpu") .name == "h100"
    assert kinds.profile_of("gpu:2") is None and len(opened) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert [p.name for p in detected()] == ["cpu", "t4"] and len(opened) == 2


class Rocm(DeviceKind):
    """A stand-in for AMD GPUs (none can exist here): found in the table's [[rocm]] section, narrowed by
    HIP_VISIBLE_DEVICES, sampled through a probe of its own."""

    name, slot, title = "rocm", "gpu", "AMD GPU"

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def present(self) -> bool:
        return bool(self.names)

    def detect(self, table, env):
        out = []
        for i, name in enumerate(self.names):
            rule = table.match("rocm", name, 64.0)
            out.append(DeviceProfile(rule.name if rule else slug(name), "rocm", f"gpu:{i}", name, 64e3,
                                     list(rule.markers) if rule else ["rocm", slug(name)]))
        return out

    def probes(self, device, pid, env):
        return [RssProbe(pid, name="rocm_process")]

    def worker_env(self, device, env):
        env["HIP_VISIBLE_DEVICES"] = str(device.index)


def test_a_new_kind_of_device_is_one_entry_and_its_profiles(monkeypatch, tmp_path):
    """What the architecture document promises: a kind's entry in DEVICE_KINDS and its [[kind]] profiles in the
    device table reach detection, the targets and their markers, the worker's environment and the probes."""
    table_path = tmp_path / "devices.toml"
    table_path.write_text('[cpu]\nmarkers = ["cpu"]\n'
                          '[[rocm]]\nname = "mi250x"\nmatch = "MI250X"\nmemory_gib = 64\nmarkers = ["rocm", "mi250x"]\n')
    monkeypatch.setenv("ODPERF_FIXTURES", str(tmp_path))
    rocm = Rocm(["AMD Instinct MI250X", "AMD Radeon PRO W7900"])
    monkeypatch.setattr(kinds, "DEVICE_KINDS", (kinds.Cpu(), rocm, *kinds.DEVICE_KINDS[1:]))
    table = load_table(table_path)
    assert [r.kind for r in table.rules] == ["rocm"]
    found = detect_profiles(table)
    assert [(p.name, p.kind, p.device) for p in found] == [
        ("cpu", "cpu", "cpu"), ("mi250x", "rocm", "gpu:0"), ("amd_radeon_pro_w7900", "rocm", "gpu:1")]
    targets = build_targets("all", found, None)
    assert [(t.label, t.markers) for t in targets][1] == ("gpu", ("rocm", "mi250x"))
    assert kind_of("gpu:1") is rocm
    env = worker_env("gpu:1", {})
    assert env["HIP_VISIBLE_DEVICES"] == "1" and "CUDA_VISIBLE_DEVICES" not in env
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        chosen = external_probes("gpu:1", child.pid)
        assert [p.name for p in chosen] == ["rocm_process", "host_rss"] and chosen[0].read() > 0
    finally:
        child.kill()
        child.wait()
    nominal = get_profile("mi250x", table)
    assert nominal.detected and nominal.kind == "rocm"
    assert kinds.none_found() == "no NVIDIA GPU, Jetson or AMD GPU found"
    monkeypatch.setattr(rocm, "names", [])
    assert not get_profile("mi250x", table).detected  # the table's nominal profile where none is present
