"""Device profiles: matching NVML names and Jetson device-tree strings, detection, the CLI."""

from __future__ import annotations

import os

import pytest

from nvml_standin import FakeGpu, FakeMig, NvmlStandIn, gpu_uuid
from odperf.measure import kinds, probes
from odperf.measure.devices import DeviceError, load_table
from odperf.util.names import slug
from odperf.measure.kinds import detect_profiles, get_profile, gpu_profile, jetson_profile

GIB = 1024**3


@pytest.mark.parametrize(
    ("nvml_name", "gib", "profile", "markers"),
    [
        ("Tesla V100-SXM2-16GB", 16, "v100_sxm2", ["gpu", "v100", "v100_sxm2"]),
        ("Tesla V100-PCIE-16GB", 16, "v100_pcie", ["gpu", "v100", "v100_pcie"]),
        ("Tesla P100-PCIE-12GB", 12, "p100", ["gpu", "p100"]),
        ("NVIDIA A100-SXM4-80GB", 80, "a100", ["gpu", "a100"]),
        ("NVIDIA H100 80GB HBM3", 80, "h100", ["gpu", "h100"]),
        ("NVIDIA H200", 141, "h200", ["gpu", "h200"]),
        ("NVIDIA L4", 24, "l4", ["gpu", "l4"]),
        ("Tesla T4", 16, "t4", ["gpu", "t4"]),
        ("NVIDIA GeForce RTX 4090", 24, "nvidia_geforce_rtx_4090", ["gpu", "nvidia_geforce_rtx_4090"]),
    ],
)
def test_gpu_profiles_from_nvml_names(nvml_name, gib, profile, markers):
    p = gpu_profile(nvml_name, gib * GIB, index=2)
    assert (p.name, p.kind, p.device, p.markers) == (profile, "gpu", "gpu:2", markers)
    assert p.memory_mb == pytest.approx(gib * GIB / 1e6)


def test_l4_rule_does_not_match_names_that_merely_contain_l4():
    assert gpu_profile("NVIDIA L40S", 48 * GIB).name == "nvidia_l40s"


@pytest.mark.parametrize(
    ("model", "profile"),
    [
        ("NVIDIA Jetson TX2 Developer Kit", "tx2"),
        ("quill", "tx2"),
        ("NVIDIA Jetson AGX Orin Developer Kit", "agx_orin"),
        ("NVIDIA Jetson Orin Nano Developer Kit", "orin_nano"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "orin_nx"),
        ("NVIDIA Orin Industrial", "orin"),
        ("NVIDIA Jetson Xavier NX Developer Kit", "xavier_nx"),
        ("NVIDIA Jetson AGX Xavier Developer Kit", "agx_xavier"),
        ("NVIDIA Jetson Nano Developer Kit", "nvidia_jetson_nano_developer_kit"),
    ],
)
def test_jetson_profiles_from_device_tree(model, profile):
    p = jetson_profile(model, memory_bytes=8 * GIB)
    assert p.name == profile and p.kind == "jetson" and p.markers[0] == "jetson"
    assert "gpu" not in p.markers  # no NVML, shared memory: not a discrete GPU


def test_memory_bounds_choose_between_rules(tmp_path):
    table = tmp_path / "devices.toml"
    table.write_text(
        '[[gpu]]\nname = "a100_40"\nmatch = "A100"\nmax_memory_gib = 48\nmarkers = ["gpu", "a100"]\n'
        '[[gpu]]\nname = "a100_80"\nmatch = "A100"\nmin_memory_gib = 48\nmarkers = ["gpu", "a100"]\n'
    )
    t = load_table(table)
    assert gpu_profile("NVIDIA A100-PCIE-40GB", 40 * GIB, table=t).name == "a100_40"
    assert gpu_profile("NVIDIA A100-SXM4-80GB", 80 * GIB, table=t).name == "a100_80"


def test_bad_tables_are_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "devices.toml"
    bad.write_text('[[gpu]]\nname = "x"\nmarkers = ["gpu"]\n')
    with pytest.raises(DeviceError, match="lacks match"):
        load_table(bad)
    bad.write_text('[[gpu]]\nname = "x"\nmatch = "("\nmarkers = ["gpu"]\n')
    with pytest.raises(DeviceError, match="bad match regex"):
        load_table(bad)
    with pytest.raises(DeviceError, match="not found"):
        load_table(tmp_path / "missing.toml")


def test_detect_profiles_cpu_first_then_each_nvml_gpu(monkeypatch):
    nvml = NvmlStandIn(
        [FakeGpu("Tesla V100-SXM2-16GB", 16 * GIB, compute_capability=(7, 0)), FakeGpu("Tesla T4", 15 * GIB)],
        driver="535.104.05", cuda=12020,
    )
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = detect_profiles()
    assert [p.name for p in found] == ["cpu", "v100_sxm2", "t4"]
    cpu, v100, t4 = found
    assert cpu.kind == "cpu" and cpu.markers == ["cpu"] and cpu.cores >= 1 and cpu.memory_mb > 0
    assert (v100.device, v100.driver, v100.cuda, v100.compute_capability) == ("gpu:0", "535.104.05", "12.2", "7.0")
    assert t4.device == "gpu:1" and nvml.calls == ["shutdown"]
    assert (t4.nvml_index, t4.uuid, t4.visible_entry) == (1, gpu_uuid(1), "1")
    assert get_profile("t4").detected and get_profile("t4").device == "gpu:1"


def scheduled_host() -> NvmlStandIn:
    """Four GPUs as NVML numbers them; the third is an A100 split into MIG instances."""
    a100 = FakeGpu("NVIDIA A100-SXM4-80GB", 80 * GIB, compute_capability=(8, 0), migs={
        0: FakeMig("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 10 * GIB, MIG, gpu_instance_id=5),
    })
    return NvmlStandIn([FakeGpu("Tesla V100-SXM2-16GB", 16 * GIB, compute_capability=(7, 0)),
                        FakeGpu("Tesla T4", 15 * GIB, compute_capability=(7, 5)), a100,
                        FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, compute_capability=(9, 0))])


MIG = "MIG-5a5a5a5a-0000-5000-8000-000000000005"


def test_detect_profiles_lists_only_the_gpus_a_scheduler_gave_in_its_order(monkeypatch):
    nvml = scheduled_host()
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{gpu_uuid(3)},{MIG},1")
    cpu, h100, mig, t4 = detect_profiles()
    assert [(p.device, p.name, p.nvml_index, p.uuid, p.visible_entry) for p in (h100, mig, t4)] == [
        ("gpu:0", "h100", 3, gpu_uuid(3), gpu_uuid(3)),
        ("gpu:1", "a100_mig_1g_10gb", 2, MIG, MIG),
        ("gpu:2", "t4", 1, gpu_uuid(1), "1"),
    ]
    # Name, size and compute capability come from the card itself, not from NVML's index N.
    assert (h100.memory_mb, h100.compute_capability) == (pytest.approx(80 * GIB / 1e6), "9.0")
    assert (t4.memory_mb, t4.compute_capability) == (pytest.approx(15 * GIB / 1e6), "7.5")
    # A MIG instance is a slice: its own size and name, never filed as the whole card.
    assert mig.memory_mb == pytest.approx(10 * GIB / 1e6) and mig.markers == ["gpu", "mig", "a100_mig_1g_10gb"]
    assert mig.display_name == "NVIDIA A100-SXM4-80GB MIG 1g.10gb" and "NVIDIA A100-SXM4-80GB" in mig.description
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert [p.name for p in detect_profiles()] == ["cpu"]


def test_detect_profiles_names_an_entry_that_matches_no_gpu(monkeypatch):
    nvml = scheduled_host()
    monkeypatch.setattr(probes, "import_nvml", lambda: nvml)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,9")
    with pytest.raises(DeviceError, match=r"CUDA_VISIBLE_DEVICES entry '9' matches no GPU: NVML sees 4"):
        detect_profiles()
    assert nvml.calls == ["shutdown"]  # NVML is still shut down


def test_detect_profiles_on_a_jetson(monkeypatch, tmp_path):
    tree = tmp_path / "model"
    tree.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr(kinds, "DEVICE_TREE_MODEL", tree)
    found = detect_profiles()
    assert [p.kind for p in found] == ["cpu", "jetson"] and found[1].name == "agx_orin"
    assert {"jetson", "orin", "agx_orin"} <= set(found[1].markers)  # -m orin runs every Orin's cases


def test_jetson_model_ignores_other_boards(tmp_path):
    tree = tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert kinds.jetson_model(tree) is None
    assert kinds.jetson_model(tmp_path / "absent") is None


def test_get_profile_falls_back_to_the_table_and_refuses_unknown_names(monkeypatch):
    monkeypatch.setattr(probes, "import_nvml", lambda: None)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    p100 = get_profile("p100")
    assert not p100.detected and p100.memory_mb == pytest.approx(12 * GIB / 1e6)
    assert get_profile("cpu").detected
    with pytest.raises(DeviceError, match="known profiles: cpu, p100"):
        get_profile("tpu_v5")


def test_slug():
    assert slug("NVIDIA GeForce RTX 4090") == "nvidia_geforce_rtx_4090" and slug("***") == "unknown"


def test_odperf_device_prints_the_cpu_profile(capsys, monkeypatch):
    from odperf.cli import main

    monkeypatch.setattr(probes, "import_nvml", lambda: None)
    monkeypatch.setattr(kinds, "jetson_model", lambda: None)
    assert main(["device"]) == 0
    out = capsys.readouterr().out
    assert "profile" in out.splitlines()[0] and "\ncpu " in out
    assert main(["device", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)[0]["name"] == "cpu"


OLD_BINDING = """
import sys
from nvml_standin import FakeGpu, NvmlStandIn
from odperf.measure import kinds, probes


class OldBinding:
    '''An NVML binding from before MIG: none of the MIG calls (nvmlDeviceIsMigDeviceHandle, ...).'''

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if "Mig" in name:
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        return getattr(self._inner, name)


probes.import_nvml = lambda: OldBinding(NvmlStandIn([FakeGpu("Tesla T4", 16 * 1024**3)]))
kinds.jetson_model = lambda: None
from odperf.cli import main

sys.exit(main(["device"]))
"""


@pytest.mark.parametrize("visible", ["GPU-00000000-1111-2222-3333-000000000000", "GPU-0000", "0"])
def test_odperf_device_with_an_nvml_binding_from_before_mig(visible):
    """`odperf device` in a real process whose NVML binding lacks nvmlDeviceIsMigDeviceHandle: the GPU the
    CUDA_VISIBLE_DEVICES entry names (full UUID, prefix, index) is found and shown, without a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    done = subprocess.run([sys.executable, "-c", OLD_BINDING], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": visible,
                               "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "src")])})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [line.split()[:4] for line in done.stdout.splitlines() if line.startswith("t4 ")] == [
        ["t4", "gpu", "gpu:0", "Tesla"]]


def test_a_sites_own_table_names_its_boards_and_its_profiles_match_first(tmp_path, monkeypatch, capsys):
    from odperf.measure.board import BoardError, parse_board

    own = tmp_path / "site.toml"
    own.write_text(
        '[[gpu]]\nname = "lab_h200"\nmatch = "H200"\nmarkers = ["gpu", "h200", "lab_h200"]\n'
        '[[board]]\nname = "lab-tx2"\nprofile = "TX2"\n'
        'url = "ssh://nvidia@tx2.lab:2222?python=/usr/bin/python3"\ndescription = "the TX2 on the bench"\n'
        '[[board]]\nname = "orin-1"\nurl = "ssh://orin-1.lab"\n'
    )
    monkeypatch.setenv("ODPERF_DEVICES", str(own))
    table = load_table()
    assert gpu_profile("NVIDIA H200", 141 * GIB, table=table).name == "lab_h200"  # before the shipped h200
    assert gpu_profile("Tesla V100-SXM2-16GB", 16 * GIB, table=table).name == "v100_sxm2"  # the shipped rest
    assert table.board("lab-tx2").spec == "tx2=ssh://nvidia@tx2.lab:2222?python=/usr/bin/python3"
    board, _ = parse_board("lab-tx2")
    assert (board.profile, board.user, board.host, board.port, board.python) == (
        "tx2", "nvidia", "tx2.lab", 2222, "/usr/bin/python3")
    orin, _ = parse_board("orin-1")
    assert orin.profile == "" and orin.host == "orin-1.lab"  # no profile: the board names itself
    from odperf.scaleout.task import BOARDS_ENV, node_board

    assert node_board("tx2", {BOARDS_ENV: "orin-1 lab-tx2"}) == table.board("lab-tx2").spec  # a Ray node's boards
    with pytest.raises(BoardError, match=r"no \[\[board\]\] entry named 'tx3' \(named: lab-tx2, orin-1\)"):
        parse_board("tx3")
    with pytest.raises(BoardError, match=r"expected \[PROFILE=\]ssh://"):
        parse_board("tx2=nvidia@tx2.lab")  # not a name: the URL spelling's own message
    from odperf.cli import main as odperf_main

    assert odperf_main(["device"]) == 0  # and lists the site's boards, unreached
    listed = capsys.readouterr().out
    assert "Boards named in the device table" in listed and "lab-tx2" in listed and "(names itself)" in listed
    monkeypatch.setenv("ODPERF_DEVICES", str(tmp_path / "missing.toml"))
    with pytest.raises(DeviceError, match="ODPERF_DEVICES=.*missing.toml: no such file; give the path"):
        load_table()
    monkeypatch.delenv("ODPERF_DEVICES")
    assert load_table().board("lab-tx2") is None  # the shipped table names no site's boards


@pytest.mark.parametrize("entry,said", [
    ('name = "lab-tx2"', "lacks url"),
    ('name = "lab tx2"\nurl = "ssh://a"', "a name is letters, digits"),
    ('name = "lab-tx2"\nurl = "tx2=ssh://a"', r"must start with ssh:// \(or local://\); its profile goes in"),
    ('name = "lab-tx2"\nurl = "ssh://a"\npython = "/usr/bin/python3"', r"unknown key\(s\) python"),
    ('name = "lab-tx2"\nurl = "ssh://a"\n[[board]]\nname = "lab-tx2"\nurl = "ssh://b"', "named twice"),
])
def test_bad_board_entries_are_refused_with_the_file_named(tmp_path, entry, said):
    bad = tmp_path / "devices.toml"
    bad.write_text(f"[[board]]\n{entry}\n")
    with pytest.raises(DeviceError, match=f"devices.toml: .*{said}"):
        load_table(bad)


def test_a_board_entry_with_a_bad_url_is_named_with_the_entry(tmp_path, monkeypatch):
    from odperf.measure.board import BoardError, parse_board

    own = tmp_path / "site.toml"
    own.write_text('[[board]]\nname = "lab-tx2"\nprofile = "tx2"\nurl = "ssh://tx2.lab?pyhton=/usr/bin/python3"\n')
    monkeypatch.setenv("ODPERF_DEVICES", str(own))
    with pytest.raises(BoardError, match=r"^\[\[board\]\] lab-tx2: --odperf-board tx2=ssh://.*unknown key\(s\) pyhton"):
        parse_board("lab-tx2")
