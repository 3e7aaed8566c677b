"""The matrix a run measures: emulated devices named for what they are, unique model names, batch limits, markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvml_standin import FakeGpu, NvmlStandIn
from odperf.errors import OdperfError
from odperf.suite.expectations import load
from odperf.measure.kinds import cpu_profile, nvml_gpus
from odperf.suite.matrix import ModelRef, build_cases, marker_catalogue, model_refs, parse_batch_sizes
from odperf.suite.state import SuiteState
from odperf.suite.targets import build_targets
from odperf.zoo.registry import ExportedModel, ModelError, path_model_name, select

GIB = 1024**3
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _machine(*gpus: FakeGpu) -> list:
    return [cpu_profile(), *nvml_gpus(NvmlStandIn(list(gpus)))]


H100 = FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB)


def test_an_emulated_gpu_profile_is_named_and_marked_as_emulated_but_keeps_its_rules():
    profiles = _machine(H100)
    cpu, gpu = build_targets("all", profiles, "p100")
    assert (cpu.profile, cpu.markers, cpu.emulated_from) == ("cpu", ("cpu",), None)
    assert gpu.profile == "p100_on_h100" and gpu.emulated_from == "h100" and gpu.label == "gpu"
    assert gpu.markers == ("gpu", "h100", "emulated")  # the real device's, never p100's
    assert gpu.expectations_profile == "p100" and gpu.memory_mb == pytest.approx(12 * GIB / 1e6)

    refs = model_refs(select(["faster_rcnn_nas"]))
    state = SuiteState(models=refs, batch_sizes=(1, 4), targets=[cpu, gpu], profiles=profiles,
                       expectations=load(FIXTURES / "expectations.toml"), images=2)
    b4 = next(c for c in state.cases() if c.target is gpu and c.batch_size == 4)
    assert b4.id == "faster_rcnn_nas-b4-gpu" and "p100" not in b4.markers and "emulated" in b4.markers
    assert state.expectation(b4).oom is True  # the paper's P100 rule: out of memory from batch 4
    request = state.request(b4)
    assert (request.device, request.emulate_profile, request.memory_limit_mb) == ("gpu:0", "p100", 12884)
    assert state.profile_name == "p100_on_h100"  # what the storage folder and records are named
    real = SuiteState(models=refs, batch_sizes=(4,), targets=build_targets("gpu", profiles, None),
                      profiles=profiles, expectations=load(FIXTURES / "expectations.toml"), images=2)
    assert real.expectation(real.cases()[0]).oom is None and real.profile_name == "h100"


def test_a_cpu_emulates_only_a_memory_size_under_a_name_of_its_own():
    profiles = _machine()
    (small,) = build_targets("all", profiles, "cpu_400mb:400")  # the main job's emulated pass
    assert (small.profile, small.expectations_profile, small.memory_mb) == ("cpu_400mb", "cpu_400mb", 400.0)
    assert small.markers == ("cpu", "emulated") and small.emulated_from == "cpu"
    for spec in ("p100", "p100:12000", "tx2"):
        with pytest.raises(OdperfError, match="needs a GPU to run on .*this machine has no GPU.*NAME:MB"):
            build_targets("all", profiles, spec)
    with pytest.raises(OdperfError, match="'cpu' is the real CPU's profile"):
        build_targets("all", profiles, "cpu:400")


def test_emulation_refusals_on_a_gpu_machine():
    profiles = _machine(H100)
    with pytest.raises(OdperfError, match="add gpu to --odperf-devices"):
        build_targets("cpu", profiles, "p100")
    with pytest.raises(OdperfError, match="h200 has .* MB but h100 only .* MB"):
        build_targets("all", profiles, "h200")
    rtx = _machine(FakeGpu("NVIDIA GeForce RTX 4090", 24 * GIB))  # a GPU the table does not know
    with pytest.raises(OdperfError, match="'nvidia_geforce_rtx_4090' is this machine's own profile"):
        build_targets("all", rtx, "nvidia_geforce_rtx_4090:1000")
    (_, edge) = build_targets("all", profiles, "edge:1500")
    assert (edge.profile, edge.markers) == ("edge", ("gpu", "h100", "emulated"))


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/x/ssd_v2/saved_model", "ssd_v2"),  # the TF2 zoo's <name>/saved_model/
        ("/x/ssd_v2/saved_model/saved_model.pb", "ssd_v2"),
        ("/x/faster_rcnn_nas_coco/frozen_inference_graph.pb", "faster_rcnn_nas_coco"),
        ("/x/my_detector", "my_detector"),
    ],
)
def test_exported_models_are_named_by_their_folder(path, name):
    assert path_model_name(Path(path)) == name


def test_a_relative_saved_model_path_is_named_by_the_folder_it_is_in(tmp_path, monkeypatch):
    (tmp_path / "zoo_model" / "saved_model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "zoo_model")
    assert path_model_name(Path("saved_model")) == "zoo_model"
    assert path_model_name(Path(".")) == "zoo_model"


def test_two_models_of_one_name_are_refused_and_name_path_names_them(tmp_path):
    for owner in ("m1", "m2"):  # the zoo's layout; the files' contents are checked later, by preflight
        (tmp_path / owner / "model" / "saved_model").mkdir(parents=True)
        (tmp_path / owner / "model" / "saved_model" / "saved_model.pb").write_bytes(b"x")
    a, b = tmp_path / "m1" / "model" / "saved_model", tmp_path / "m2" / "model" / "saved_model"
    with pytest.raises(OdperfError, match=r"2 models would be named 'model' .* NAME=PATH, e\.g\. "
                                          r"--odperf-models=model_1=.*,model_2="):
        model_refs(select([str(a), str(b)]))
    named = model_refs(select([f"first={a}", f"second={b}"]))
    assert [(r.name, r.ref, r.family, r.backend) for r in named] == [
        ("first", str(a), "custom", "tensorflow"), ("second", str(b), "custom", "tensorflow")]
    assert select([f"first={a}"]) == [ExportedModel("first", a)]
    with pytest.raises(ModelError, match="the name 'my-model' must be letters, digits and _"):
        select([f"my-model={a}"])
    with pytest.raises(ModelError, match="no such model file or folder"):
        select([f"first={tmp_path / 'nothing'}"])


def test_a_path_named_like_a_registry_model_is_refused(tmp_path):
    (tmp_path / "ssd_mobilenet_v2").mkdir()
    with pytest.raises(OdperfError, match="2 models would be named 'ssd_mobilenet_v2'"):
        model_refs(select(["ssd_mobilenet_v2", str(tmp_path / "ssd_mobilenet_v2")]))


def test_batch_sizes_stop_at_the_tiles_of_one_image():
    assert parse_batch_sizes("1,64") == (1, 64)
    with pytest.raises(OdperfError, match="at most 64 tiles.*batch 65 would run as batch 64 again"):
        parse_batch_sizes("8,65")


def test_every_marker_a_case_can_carry_is_in_the_catalogue():
    from odperf.measure.devices import load_table
    from odperf.zoo.registry import all_models

    models = all_models()
    table = load_table()
    catalogue = marker_catalogue(models, [*table.cpu_markers, *(m for r in table.rules for m in r.markers)])
    cases = build_cases(model_refs(models) + [ModelRef("mine", "/x", family="custom")], (1,),
                        build_targets("all", _machine(H100), "p100"))
    assert {m for c in cases for m in c.markers} <= set(catalogue)
    assert {"tf2", "paper", "embedded", "custom", "map_lowest", "emulated", "tx2", "orin"} <= set(catalogue)


def test_a_run_that_scores_and_chooses_its_images_times_each_models_first_case_to_the_ceiling():
    """The model's mAP reference: its first case on each device times the ceiling (its mAP is over that
    image set; the other batch sizes' detections are checked against it); a reference that fails passes the
    role to the model's next case; a fixed count or an unscored run changes nothing."""
    from odperf.engine.measurement import Measurement
    from odperf.measure.sampling import SamplingPlan

    profiles = _machine()
    (cpu,) = build_targets("cpu", profiles, None)
    refs = model_refs(select(["centernet_tiny", "ssd_fpn"]))
    chosen = SamplingPlan(3, 10)
    state = SuiteState(models=refs, batch_sizes=(1, 8, 64), targets=[cpu], profiles=profiles,
                       expectations=load(FIXTURES / "expectations.toml"), images=10, accuracy=True, sampling=chosen)
    cases = {(c.model.name, c.batch_size): c for c in state.cases()}
    assert state.request(cases["centernet_tiny", 8]).against_reference  # its score may be the reference's
    first = state.plan(cases["centernet_tiny", 1])
    assert (first.floor, first.ceiling, first.reason) == (10, 10, "accuracy reference")
    assert state.plan(cases["centernet_tiny", 8]) == chosen and state.plan(cases["ssd_fpn", 8]).floor == 10
    oom = Measurement(state.request(cases["ssd_fpn", 8]), outcome="oom", error="oom: out of memory")
    record = state.run_record(cases["ssd_fpn", 8], oom)
    assert record.sampling["stopped_by"] == "accuracy reference" and record.sampling["ceiling"] == 10
    assert state.plan(cases["ssd_fpn", 64]).floor == 10  # the next case is the reference now
    for unscored in (SuiteState(models=refs, batch_sizes=(1,), targets=[cpu], profiles=profiles,
                                expectations=load(FIXTURES / "expectations.toml"), images=10, sampling=chosen),
                     SuiteState(models=refs, batch_sizes=(1,), targets=[cpu], profiles=profiles, accuracy=True,
                                expectations=load(FIXTURES / "expectations.toml"), images=5,
                                sampling=SamplingPlan.fixed(5))):
        c = unscored.cases()[0]
        assert unscored.plan(c) == unscored.sampling and not unscored.request(c).against_reference
