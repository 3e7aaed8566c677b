"""GPU selection under schedulers: ``gpu:N`` is the N-th GPU odperf was given through CUDA_VISIBLE_DEVICES,
mapped to the NVML handle of that same card (indices, UUIDs, MIG ids), and the worker sees that one entry."""

from __future__ import annotations

import re

import pytest

from nvml_standin import FakeGpu, FakeMig, NvmlStandIn, gpu_uuid
from odperf.engine import MeasureRequest, WorkerSession, client
from odperf.engine.runtime import worker_env
from odperf.errors import OdperfError
from odperf.measure import kinds, probes
from odperf.measure.devices import DeviceError
from odperf.measure.visible_gpus import (
    inherited_entries,
    resolve_entry,
    select_gpu,
    visible_gpus,
    worker_entry,
)

GIB = 1024**3
MIG_A = "MIG-aaaaaaaa-0000-5000-8000-00000000000a"
MIG_B = "MIG-bbbbbbbb-0000-5000-8000-00000000000b"


def host() -> NvmlStandIn:
    """Four GPUs as NVML numbers them; the third is an A100 split into two MIG instances."""
    a100 = FakeGpu("NVIDIA A100-SXM4-40GB", 40 * GIB, migs={
        0: FakeMig("NVIDIA A100-SXM4-40GB MIG 3g.20gb", 20 * GIB, MIG_A, gpu_instance_id=1),
        3: FakeMig("NVIDIA A100-SXM4-40GB MIG 1g.5gb", 5 * GIB, MIG_B, gpu_instance_id=9),
    })
    return NvmlStandIn([
        FakeGpu("Tesla V100-SXM2-16GB", 16 * GIB), FakeGpu("Tesla T4", 15 * GIB), a100,
        FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, mig_capable=True),
    ])


def env(value: str | None) -> dict[str, str]:
    return {} if value is None else {"CUDA_VISIBLE_DEVICES": value}


def seen(nvml: NvmlStandIn, value: str | None) -> list[tuple[str, str, int, str]]:
    return [(g.device, g.entry, g.nvml_index, g.uuid) for g in visible_gpus(nvml, env(value))]


def test_unset_means_every_gpu_in_nvml_order():
    nvml = host()
    assert inherited_entries({}) is None
    assert seen(nvml, None) == [(f"gpu:{i}", str(i), i, gpu_uuid(i)) for i in range(4)]


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles", " "])
def test_empty_or_hidden_means_no_gpu(value):
    assert inherited_entries(env(value)) == [] and seen(host(), value) == []


def test_indices_in_a_non_trivial_order_keep_that_order():
    nvml = host()
    assert seen(nvml, "3,0,1") == [("gpu:0", "3", 3, gpu_uuid(3)), ("gpu:1", "0", 0, gpu_uuid(0)),
                                   ("gpu:2", "1", 1, gpu_uuid(1))]
    assert inherited_entries(env(" 3, 0 ,1,")) == ["3", "0", "1"]  # spaces and a trailing comma
    assert inherited_entries(env("1,-1,2")) == ["1"]  # as in CUDA: a negative index ends the list


def test_uuids_map_through_nvml_to_their_cards():
    nvml = host()
    got = visible_gpus(nvml, env(f"{gpu_uuid(3)},{gpu_uuid(1)}"))
    assert [(g.nvml_index, g.handle.name) for g in got] == [(3, "NVIDIA H100 80GB HBM3"), (1, "Tesla T4")]
    # CUDA accepts the start of a UUID when it names one GPU; NVML itself does not, so it is scanned for.
    assert seen(nvml, "GPU-00000001") == [("gpu:0", "GPU-00000001", 1, gpu_uuid(1))]


def test_mig_ids_map_to_the_instance_and_its_parent_gpu():
    nvml = host()
    got = visible_gpus(nvml, env(f"{MIG_B},{MIG_A}"))
    assert [(g.device, g.nvml_index, g.uuid, g.mig, g.handle.name) for g in got] == [
        ("gpu:0", 2, MIG_B, True, "NVIDIA A100-SXM4-40GB MIG 1g.5gb"),
        ("gpu:1", 2, MIG_A, True, "NVIDIA A100-SXM4-40GB MIG 3g.20gb"),
    ]
    legacy = f"MIG-{gpu_uuid(2)}/9/0"  # CUDA 11's form: parent GPU, GPU instance, compute instance
    assert seen(nvml, legacy) == [("gpu:0", legacy, 2, MIG_B)]
    with pytest.raises(DeviceError, match=r"has no MIG instance 4/0"):
        visible_gpus(nvml, env(f"MIG-{gpu_uuid(2)}/4/0"))


def test_names_and_uuids_as_bytes_from_older_bindings():
    nvml = host()
    nvml.returns_bytes = True
    assert seen(nvml, f"{MIG_A},2") == [("gpu:0", MIG_A, 2, MIG_A), ("gpu:1", "2", 2, gpu_uuid(2))]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("7", r"entry '7' matches no GPU: NVML sees 4 \(indices 0..3\)"),
        ("0,GPU-deadbeef-0000-0000-0000-000000000000", r"entry 'GPU-deadbeef-0000-0000-0000-000000000000' "
                                                        r"matches no GPU of this machine; see `nvidia-smi -L`"),
        ("MIG-ffffffff-0000-5000-8000-000000000000", r"entry 'MIG-ffffffff-.*' matches no GPU"),
        ("GPU-0000000", r"is the start of several GPUs' UUIDs"),
        ("Tesla T4", r"entry 'Tesla T4' is not a GPU index, GPU-<uuid> or MIG-<uuid>"),
        ("1,1", r"lists '1' twice"),
        (f"1,{gpu_uuid(1)}", r"entries '1' and 'GPU-00000001-.*' name the same GPU"),
    ],
)
def test_an_entry_that_matches_no_gpu_is_a_clear_error_naming_it(value, message):
    with pytest.raises(DeviceError, match=message):
        visible_gpus(host(), env(value))


def test_select_gpu_is_the_n_th_given_and_refuses_beyond():
    nvml = host()
    chosen = select_gpu(nvml, "gpu:1", env(f"{gpu_uuid(3)},{MIG_A}"))
    assert (chosen.entry, chosen.nvml_index, chosen.handle.uuid) == (MIG_A, 2, MIG_A)
    assert select_gpu(nvml, "gpu:3", {}).handle is nvml.gpus[3]
    assert resolve_entry(nvml, "2").handle is nvml.gpus[2]  # an index is the whole card, MIG or not
    with pytest.raises(DeviceError, match=r"gpu:2: odperf was given 2 GPU\(s\) \(CUDA_VISIBLE_DEVICES='3,1'\); "
                                          r"use gpu:0..gpu:1"):
        select_gpu(nvml, "gpu:2", env("3,1"))
    with pytest.raises(DeviceError, match="NVML sees 4 GPU"):
        select_gpu(nvml, "gpu:4", {})
    with pytest.raises(DeviceError, match="not a GPU; name one as gpu:N"):
        select_gpu(nvml, "tpu:0", {})


def test_worker_env_narrows_to_the_one_inherited_entry():
    base = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": f"5,{gpu_uuid(3)},{MIG_A}"}
    assert [worker_env(f"gpu:{n}", base)["CUDA_VISIBLE_DEVICES"] for n in range(3)] == ["5", gpu_uuid(3), MIG_A]
    narrowed = worker_env("gpu:1", base)
    assert narrowed["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and narrowed["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert base["CUDA_VISIBLE_DEVICES"] == f"5,{gpu_uuid(3)},{MIG_A}"  # the parent's own list is untouched
    assert worker_env("gpu:2", {})["CUDA_VISIBLE_DEVICES"] == "2"  # nothing inherited: NVML's index
    assert worker_env("cpu", base)["CUDA_VISIBLE_DEVICES"] == ""
    assert worker_entry("gpu", env("4,6")) == "4"


@pytest.mark.parametrize(
    ("value", "device", "message"),
    [
        ("", "gpu:0", r"odperf was given no GPU \(CUDA_VISIBLE_DEVICES=''\); measure on cpu"),
        ("-1", "gpu:0", r"odperf was given no GPU \(CUDA_VISIBLE_DEVICES='-1'\)"),
        ("2,3", "gpu:2", r"device gpu:2: odperf was given 2 GPU\(s\) .*use gpu:0..gpu:1"),
    ],
)
def test_worker_env_refuses_a_gpu_odperf_was_not_given(value, device, message):
    with pytest.raises(DeviceError, match=message):
        worker_env(device, env(value))


def test_a_real_worker_sees_only_its_entry_and_the_parent_reads_that_card(monkeypatch, engine_models, engine_dataset):
    """The whole path with a real worker process: detection, the worker's environment and the probes agree.

    No GPU here, so TensorFlow in the worker finds none and says which CUDA_VISIBLE_DEVICES it was given.
    """
    nvml = host()
    nvml.gpus[1].used_bytes = 3 * GIB
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{gpu_uuid(3)},{gpu_uuid(1)}")
    sampled = []  # the probes the parent samples the worker with

    def spy(*args, **kwargs):
        sampled.extend(kinds.external_probes(*args, **kwargs))
        return list(sampled)

    monkeypatch.setattr(client, "external_probes", spy)
    request = MeasureRequest(model=str(engine_models["tiny"]), device="gpu:1", batch_size=1, images=1,
                             dataset_root=str(engine_dataset), dataset_split="val2017")
    with WorkerSession(request) as session:
        with pytest.raises(OdperfError, match=re.escape(f"TensorFlow sees no GPU here (CUDA_VISIBLE_DEVICES="
                                                        f"{gpu_uuid(1)!r})")):
            session.start()
        info = session.measurement.device_info
    process, device = sampled[:2]
    assert (info["profile"], info["name"]) == ("t4", "Tesla T4")
    assert (process.name, process.index, device.name, device.read()) == ("nvml_process", 1, "nvml_device", 3 * GIB)
