"""Loaders on artifacts of each zoo format that the tests export themselves."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import zoo_artifacts as za
from odperf.errors import ModelError
from odperf.zoo import ModelMissing, get
from odperf.backends.contract import Detections
from odperf.backends import find_artifact
from odperf.zoo.loaders import load_detector, probe_tiles


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    return probe_tiles(4)


def assert_matches_reference(out: Detections, tiles: np.ndarray) -> None:
    ref = za.toy_reference(tiles)
    assert out.boxes.shape == (len(tiles), 2, 4) and out.boxes.dtype == np.float32
    assert out.classes.dtype == np.int32 and out.counts.dtype == np.int32
    np.testing.assert_allclose(out.boxes, ref["detection_boxes"], atol=1e-5)
    np.testing.assert_allclose(out.scores, ref["detection_scores"], atol=1e-5)
    np.testing.assert_array_equal(out.classes, ref["detection_classes"].astype(np.int32))
    np.testing.assert_array_equal(out.counts, [2] * len(tiles))
    assert isinstance(out.boxes, np.ndarray) and isinstance(out.scores, np.ndarray)


def test_frozen_graph_runs_batched(tmp_path, tiles):
    pb = za.write_frozen_graph(tmp_path / "m")
    det = load_detector(pb)
    assert (det.format, det.batch_mode, det.max_batch) == ("tf1_frozen_graph", "batched", None)
    assert det.name == "m"
    assert_matches_reference(det(tiles), tiles)


def test_mask_model_keeps_its_masks(tmp_path, tiles):
    det = load_detector(za.write_frozen_graph(tmp_path / "mask", masks=True))
    out = det(tiles)
    assert_matches_reference(out, tiles)
    assert out.masks.shape == (len(tiles), 2, 15, 15)
    np.testing.assert_allclose(out.masks[:, :, 7, 7], out.scores)


def test_tf1_saved_model_with_inputs_key(tmp_path, tiles):
    folder = za.write_tf1_saved_model(tmp_path / "tf1" / "saved_model")
    det = load_detector(tmp_path / "tf1")  # a tarball-like folder: saved_model/ inside
    assert (det.format, det.batch_mode) == ("tf1_saved_model", "batched")
    assert det.source == folder
    assert_matches_reference(det(tiles), tiles)


def test_tarball_folder_prefers_frozen_graph(tmp_path, tiles):
    za.write_frozen_graph(tmp_path / "both")
    za.write_tf1_saved_model(tmp_path / "both" / "saved_model")
    det = load_detector(tmp_path / "both")
    assert det.format == "tf1_frozen_graph"
    assert find_artifact(tmp_path / "both")[:2] == ("tensorflow", "tf1_frozen_graph")


def test_tf2_saved_model_with_any_batch_runs_batched(tmp_path, tiles):
    det = load_detector(za.write_tf2_saved_model(tmp_path / "ok"))
    assert (det.format, det.batch_mode, det.max_batch, det.batch_note) == ("tf2_saved_model", "batched", None, "")
    assert_matches_reference(det(tiles), tiles)


def test_batch1_signature_runs_tile_by_tile(tmp_path, tiles):
    det = load_detector(za.write_tf2_saved_model(tmp_path / "b1", batch=1))
    assert (det.batch_mode, det.max_batch) == ("tile_by_tile", 1)
    assert "batch 1" in det.batch_note
    assert_matches_reference(det(tiles), tiles)


def test_batch1_signature_refused_on_request(tmp_path, tiles):
    det = load_detector(za.write_tf2_saved_model(tmp_path / "b1", batch=1), batch_policy="refuse")
    assert (det.batch_mode, det.max_batch) == ("batched", 1)
    assert_matches_reference(det(tiles[:1]), tiles[:1])
    with pytest.raises(ModelError, match="at most batch 1"):
        det(tiles)


@pytest.mark.parametrize("behaviour, why", [("first_only", "differs"), ("drops_batch", "gives 1 result")])
def test_model_that_ignores_the_batch_is_caught_by_the_probe(tmp_path, tiles, behaviour, why):
    folder = za.write_tf2_saved_model(tmp_path / behaviour, behaviour=behaviour)
    det = load_detector(folder)
    assert (det.batch_mode, det.max_batch) == ("tile_by_tile", 1)
    assert why in det.batch_note
    assert_matches_reference(det(tiles), tiles)  # tile by tile gives every image its own answer
    # without the probe, the same model would silently return image 0's detections for image 1
    trusting = load_detector(folder, probe=False)
    assert trusting.batch_mode == "batched"
    if behaviour == "first_only":
        wrong = trusting(tiles)
        assert not np.allclose(wrong.boxes[1], za.toy_reference(tiles)["detection_boxes"][1], atol=1e-5)


def test_unnamed_outputs_are_mapped_by_shape_and_content(tmp_path, tiles):
    det = load_detector(za.write_tf2_saved_model(tmp_path / "unnamed", behaviour="unnamed"))
    assert_matches_reference(det(tiles), tiles)


def test_rejects_float_batches_and_bad_shapes(tmp_path, tiles):
    det = load_detector(za.write_frozen_graph(tmp_path / "m"), probe=False)
    with pytest.raises(ModelError, match="uint8"):
        det(tiles.astype(np.float32))
    with pytest.raises(ModelError, match=r"\[B, H, W, 3\]"):
        det(tiles[0])


# --- broken artifacts ---------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="no such model file or folder"):
        load_detector(tmp_path / "nothing-here")


def test_folder_without_a_model_says_what_it_expected(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pipeline.config").write_text("model {}")
    with pytest.raises(ModelError, match=r"frozen_inference_graph.pb.*found pipeline.config"):
        load_detector(tmp_path / "m")


def test_empty_frozen_graph(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "frozen_inference_graph.pb").write_bytes(b"")
    with pytest.raises(ModelError, match=r"frozen_inference_graph.pb is empty.*odperf zoo fetch"):
        load_detector(tmp_path / "m")


def test_truncated_frozen_graph(tmp_path):
    pb = za.write_frozen_graph(tmp_path / "m")
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"not a TensorFlow GraphDef \(truncated download\?\).*odperf zoo fetch"):
        load_detector(tmp_path / "m")


def test_graph_without_image_tensor_names_it(tmp_path):
    za.write_frozen_graph(tmp_path / "m", input_name="images")
    with pytest.raises(ModelError, match=r"no tensor image_tensor:0"):
        load_detector(tmp_path / "m")


def test_graph_without_a_detection_output_names_it(tmp_path):
    outputs = tuple(n for n in za.OUTPUT_NAMES if n != "detection_scores")
    za.write_frozen_graph(tmp_path / "m", outputs=outputs)
    with pytest.raises(ModelError, match=r"no tensor detection_scores:0") as err:
        load_detector(tmp_path / "m")
    assert "detection_boxes" not in str(err.value).split("no tensor")[1].split(";")[0]


def test_corrupt_saved_model(tmp_path):
    folder = za.write_tf2_saved_model(tmp_path / "m")
    (folder / "saved_model.pb").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(ModelError, match=r"saved_model.pb is not a TensorFlow SavedModel"):
        load_detector(folder)


def test_saved_model_with_missing_variables(tmp_path):
    folder = za.write_tf2_saved_model(tmp_path / "m")
    for f in (folder / "variables").iterdir():
        f.unlink()
    with pytest.raises(ModelError, match=r"does not load"):
        load_detector(folder)


# --- registry models in a model folder ----------------------------------------------------------
def test_registry_model_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.delenv("ODPERF_MODEL_DIR", raising=False)
    spec = get("ssd_mobilenet_v2")
    with pytest.raises(ModelMissing) as err:
        load_detector("ssd_mobilenet_v2", model_dir=tmp_path)
    msg = str(err.value)
    assert spec.url in msg and f"odperf zoo fetch ssd_mobilenet_v2 --model-dir {tmp_path}" in msg


def test_registry_model_found_through_env(tmp_path, monkeypatch, tiles):
    spec = get("ssd_inception_v2")
    za.write_frozen_graph(tmp_path / spec.tarball)
    monkeypatch.setenv("ODPERF_MODEL_DIR", str(tmp_path))
    det = load_detector("ssd_inception_v2")
    assert det.name == "ssd_inception_v2" and det.format == "tf1_frozen_graph"
    assert_matches_reference(det(tiles[:2]), tiles[:2])
