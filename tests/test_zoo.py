"""The model registry: the paper's models and groups, selectors, embedded models, and `odperf zoo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odperf.errors import ModelError
from odperf.zoo import torchvision_catalog
from odperf.zoo import ModelMissing, all_models, embedded_models, get, map_group, select
from odperf.zoo.registry import require_local

# Table I of the paper, group by group (lowproposals models are not in the table: group None).
TABLE_I_GROUPS = {
    "highest": ["faster_rcnn_nas"],
    "high": ["faster_rcnn_incept_resnet_v2_atrous", "mask_rcnn_incept_resnet_v2_atrous", "ssd_resnet50_v1_fpn"],
    "medium": ["mask_rcnn_resnet101_atrous", "ssd_mobilenet_v1_fpn", "faster_rcnn_resnet101", "rfcn_resnet101",
               "faster_rcnn_resnet50", "mask_rcnn_resnet50_atrous"],
    "low": ["faster_rcnn_incept_v2", "mask_rcnn_incept_v2", "ssd_inception_v2"],
    "lowest": ["ssdlite_mobilenet_v2", "ssd_mobilenet_v2", "ssd_mobilenet_v1", "ssd_mobilenet_v1_ppn",
               "ssd_mobilenet_v1_0.75_depth"],
}
TABLE_I_TESTED = {
    "faster_rcnn_incept_resnet_v2_atrous": 45.2, "mask_rcnn_incept_resnet_v2_atrous": 45.6,
    "mask_rcnn_resnet101_atrous": 41.5, "faster_rcnn_resnet101": 40.3, "rfcn_resnet101": 37.3,
    "faster_rcnn_resnet50": 34.5, "mask_rcnn_resnet50_atrous": 35.7, "faster_rcnn_incept_v2": 31.1,
    "mask_rcnn_incept_v2": 32.7, "ssd_inception_v2": 30.9, "ssdlite_mobilenet_v2": 27.4,
    "ssd_mobilenet_v1": 26.3, "ssd_mobilenet_v1_0.75_depth": 21.7,
}


@pytest.fixture(autouse=True)
def no_embedded(tmp_path, monkeypatch):
    """Each test sees an empty fixtures folder unless it writes one."""
    monkeypatch.setenv("ODPERF_FIXTURES", str(tmp_path / "fixtures"))
    monkeypatch.setenv("ODPERF_MODEL_DIR", str(tmp_path / "models"))


def paper() -> list:
    return [m for m in all_models() if m.family == "paper"]


def test_the_papers_22_models():
    models = paper()
    assert [m.paper_id for m in models] == [chr(ord("A") + i) for i in range(22)]
    assert len({m.name for m in models}) == 22 and len({m.tarball for m in models}) == 22
    for m in models:
        assert m.url == f"http://download.tensorflow.org/models/object_detection/{m.tarball}.tar.gz"
        assert m.reported_ms and m.meta_arch in ("ssd", "ssdlite", "faster_rcnn", "rfcn", "mask_rcnn")
        assert (m.reported_map is None) == ("lowproposals" in m.tarball)


@pytest.mark.parametrize("group, names", TABLE_I_GROUPS.items())
def test_each_model_lands_in_its_table_i_group(group, names):
    for name in names:
        assert get(name).map_group == group, name
    assert {m.name for m in paper() if m.map_group == group} == {get(n).name for n in names}


def test_lowproposals_models_have_no_group():
    low = [m for m in paper() if "lowproposals" in m.tarball]
    assert len(low) == 4 and all(m.map_group is None and m.reported_map is None for m in low)


def test_group_boundaries():
    assert [map_group(v) for v in (43, 40, 39.9, 35, 34.9, 29, 28.9, 24, 23.9, None)] == [
        "highest", "highest", "high", "high", "medium", "medium", "low", "low", "lowest", None]


def test_tested_map_from_table_i():
    for name, value in TABLE_I_TESTED.items():
        assert get(name).tested_map == value, name
    assert get("faster_rcnn_nas").tested_map is None  # garbled in the paper's text


def test_tf2_equivalents():
    eq = get("ssd_mobilenet_v2").tf2_equivalent
    assert eq.tarball == "ssd_mobilenet_v2_320x320_coco17_tpu-8"
    assert eq.url.endswith("/tf2/20200711/ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz")
    assert get(eq.name).family == "tf2"
    assert get("faster_rcnn_nas").tf2_equivalent is None


def test_get_by_alias_and_id_and_unknown_names():
    assert get("Q").name == get("faster_rcnn_nas_coco_2018_01_28").name == "faster_rcnn_nas"
    with pytest.raises(ModelError, match=r"Did you mean: .*ssd_mobilenet_v2"):
        get("ssd_mobilenet_v3")


def test_select():
    names = lambda sel: [m.name for m in select(sel)]  # noqa: E731
    assert names(["rfcn"]) == ["rfcn_resnet101"]
    # each once; torchvision's models join the groups by their own reported COCO mAP
    assert names(["highest", "Q", "faster_rcnn_nas"]) == [
        "faster_rcnn_nas", "fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2"]
    assert names(["torchvision"]) == list(torchvision_catalog.ARCHITECTURES)
    assert {m.backend for m in select(["torch"])} == {"torch"}
    assert {m.backend for m in select(["paper", "tf2"])} == {"tensorflow"}
    assert set(names(["mask_rcnn"])) >= {"mask_rcnn_incept_v2", "mask_rcnn_resnet50_atrous"}
    assert len(select(["paper"])) == 22 and len(select(["all"])) == len(all_models())
    assert names(["tf2"]) == [m.name for m in all_models() if m.family == "tf2"]
    assert select(["embedded"]) == []  # no trained embedded model: the registry copes
    with pytest.raises(ModelError, match="unknown model selector 'mediun'.*Did you mean: medium"):
        select(["mediun"])


def test_select_paths(tmp_path):
    model = tmp_path / "exported"
    model.mkdir()
    assert select([str(model), "rfcn"]) == [model, get("rfcn_resnet101")]
    with pytest.raises(ModelError, match="no such model file or folder"):
        select([str(tmp_path / "missing")])


def write_embedded(fixtures: Path, name: str, **meta) -> Path:
    folder = fixtures / "models" / name
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"x")
    record = {"name": name, "meta_arch": "centernet", "feature_extractor": "tiny", "input_size": 192,
              "parameters": 1000, "flops_per_tile": 10, "map": 0.31, "ap50": 0.6, "train_seconds": 5.0}
    record.update(meta)
    (folder / "odperf_model.json").write_text(json.dumps(record))
    return folder


def test_embedded_models_come_from_fixtures(tmp_path):
    fixtures = tmp_path / "fixtures"
    folder = write_embedded(fixtures, "tiny_a")
    write_embedded(fixtures, "tiny_b", meta_arch="ssd", map=0.12)
    (fixtures / "models" / "half_trained").mkdir()  # no JSON yet: skipped
    specs = embedded_models()
    assert [s.name for s in specs] == ["tiny_a", "tiny_b"]
    a = get("tiny_a")
    assert (a.family, a.meta_arch, a.path, a.input_size) == ("embedded", "centernet", folder, (192, 192))
    assert a.measured_map == pytest.approx(31.0) and a.map_group == "medium"
    assert a.measured["flops_per_tile"] == 10 and a.is_present()
    assert [m.name for m in select(["embedded"])] == ["tiny_a", "tiny_b"]
    assert [m.name for m in select(["centernet"])] == ["tiny_a"]
    assert get("tiny_b") in select(["ssd"])


def test_corrupt_embedded_description(tmp_path):
    folder = write_embedded(tmp_path / "fixtures", "broken")
    (folder / "odperf_model.json").write_text("{not json")
    with pytest.raises(ModelError, match="odperf_model.json: not a readable model description"):
        embedded_models()


def test_missing_zoo_model_names_url_and_fetch_command(tmp_path):
    spec = get("rfcn_resnet101")
    with pytest.raises(ModelMissing) as err:
        require_local(spec, tmp_path / "elsewhere")
    msg = str(err.value)
    assert spec.url in msg and f"odperf zoo fetch rfcn_resnet101 --model-dir {tmp_path / 'elsewhere'}" in msg
    (tmp_path / "models" / spec.tarball).mkdir(parents=True)
    (tmp_path / "models" / spec.tarball / "frozen_inference_graph.pb").write_bytes(b"g")
    assert require_local(spec) == tmp_path / "models" / spec.tarball  # ODPERF_MODEL_DIR


def odperf(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "odperf.cli", *args], capture_output=True, text=True,
                          env=full, timeout=120)


def test_zoo_list_prints_the_table(tmp_path):
    fixtures = tmp_path / "fixtures"
    write_embedded(fixtures, "tiny_a", map=0.456)
    present = get("ssd_mobilenet_v1")
    (tmp_path / "models" / present.tarball).mkdir(parents=True)
    (tmp_path / "models" / present.tarball / "frozen_inference_graph.pb").write_bytes(b"g")
    done = odperf("zoo", "list", "--format", "plain", env={"ODPERF_FIXTURES": str(fixtures),
                                                          "ODPERF_MODEL_DIR": str(tmp_path / "models")})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[1]: line.split() for line in done.stdout.splitlines()[1:] if len(line.split()) > 5}
    assert lines["faster_rcnn_nas"][:9] == ["Q", "faster_rcnn_nas", "paper", "faster_rcnn", "43", "-",
                                            "highest", "1833", "no"]
    assert lines["ssd_mobilenet_v1"][8] == "yes"
    assert lines["faster_rcnn_nas_lowprop"][6] == "n/a"
    assert lines["tiny_a"][2] == "embedded" and lines["tiny_a"][-1] == "45.6"
    assert len([n for n in lines if lines[n][2] == "paper"]) == 22


def test_zoo_info_and_errors(tmp_path):
    env = {"ODPERF_FIXTURES": str(tmp_path / "fixtures"), "ODPERF_MODEL_DIR": str(tmp_path / "models")}
    done = odperf("zoo", "info", "G", env=env)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["name"] == "ssdlite_mobilenet_v2" and info["present"] is False and info["tested_map"] == 27.4
    bad = odperf("zoo", "info", "ssd_mobilenet_v9", env=env)
    assert bad.returncode == 2 and "no model named 'ssd_mobilenet_v9'" in bad.stderr
    assert "Traceback" not in bad.stderr
