"""The committed embedded detectors: loadable, the zoo's serving contract, and their recorded accuracy.

The mAP check re-evaluates each SavedModel with pycocotools on the first 200 tiles of the held-out
synthetic validation split (generated here, a few seconds) against the figure recorded for exactly
those tiles at training time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from odperf.datasets.synthetic import GENERATOR_VERSION, VAL_SPLIT
from odperf.zoo.embedded import MODEL_NAMES, models_dir
from odperf.zoo.embedded.evaluate import coco_accuracy, detect_split
from odperf.zoo.embedded.export import SAVED_MODEL_DIR
from odperf.zoo.metadata import MODEL_FILE as METADATA_FILE, read_metadata
from odperf.zoo.embedded.record import CI_TILES

MAP_TOLERANCE = 0.02
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
METADATA_KEYS = {
    "name", "meta_arch", "feature_extractor", "input_size", "parameters", "flops_per_tile", "map", "ap50",
    "train_seconds", "train_steps", "seed", "dataset", "categories",
}


def check_contract(fn, tiles: np.ndarray, categories: list[int], max_detections: int = 100) -> None:
    """The zoo's serving contract, with real batching: a batch equals its tiles run one by one."""
    spec = fn.structured_input_signature[1]["input_tensor"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    batch = {k: v.numpy() for k, v in fn(input_tensor=tf.constant(tiles)).items()}
    assert set(OUTPUTS) <= set(batch)
    n = len(tiles)
    assert batch["detection_boxes"].shape == (n, max_detections, 4)
    for key in OUTPUTS:
        assert batch[key].dtype == np.float32, key
    assert batch["detection_scores"].shape == batch["detection_classes"].shape == (n, max_detections)
    assert batch["num_detections"].shape == (n,)
    for i in range(n):
        k = int(batch["num_detections"][i])
        boxes, scores, classes = (batch[key][i] for key in OUTPUTS[:3])
        assert (boxes[:k] >= 0).all() and (boxes[:k] <= 1).all()
        assert (boxes[:k, 2] >= boxes[:k, 0]).all() and (boxes[:k, 3] >= boxes[:k, 1]).all()
        assert set(classes[:k].astype(int)) <= set(categories)
        assert (np.diff(scores[:k]) <= 1e-6).all()  # best first
        assert not boxes[k:].any() and not scores[k:].any() and not classes[k:].any()  # zero padding
        single = {key: v.numpy()[0] for key, v in fn(input_tensor=tf.constant(tiles[i : i + 1])).items()}
        assert int(single["num_detections"]) == k
        np.testing.assert_allclose(single["detection_scores"][:k], scores[:k], atol=1e-4)
        for box, score, cls in zip(boxes[:k], scores[:k], classes[:k]):  # same set, ties in any order
            same = (np.abs(single["detection_scores"][:k] - score) < 1e-4) & (single["detection_classes"][:k] == cls)
            assert (np.abs(single["detection_boxes"][:k][same] - box).max(axis=1) < 1e-3).any()


def model_dir(name: str) -> Path:
    return models_dir() / name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_metadata_is_complete(name):
    meta = read_metadata(model_dir(name))
    assert METADATA_KEYS <= set(meta)
    assert meta["name"] == name
    assert meta["meta_arch"] in {"centernet", "ssd", "faster_rcnn"}
    assert meta["dataset"].startswith(f"synthetic-v{GENERATOR_VERSION}-"), (
        f"{name} was trained on another generator version; retrain it (odperf zoo train {name})"
    )
    assert meta["accuracy"]["first_tiles"]["tiles"] == CI_TILES
    assert 0.0 <= meta["ap50"] <= 1.0 and meta["map"] == meta["accuracy"]["map"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contract_and_recorded_map(name, val_root, val_split):
    meta = read_metadata(model_dir(name))
    fn = tf.saved_model.load(str(model_dir(name) / SAVED_MODEL_DIR)).signatures["serving_default"]
    check_contract(fn, val_split.images[:3], meta["categories"])
    accuracy = coco_accuracy(val_root, VAL_SPLIT, val_split, detect_split(fn, val_split))
    floor = meta["accuracy"]["first_tiles"]["map"] - MAP_TOLERANCE
    assert accuracy.map >= floor, f"{name}: mAP {accuracy.map:.3f} on {CI_TILES} tiles, recorded floor {floor:.3f}"


def test_any_tile_size_and_batch():
    name = MODEL_NAMES[0]
    fn = tf.saved_model.load(str(model_dir(name) / SAVED_MODEL_DIR)).signatures["serving_default"]
    out = fn(input_tensor=tf.zeros([5, 240, 320, 3], tf.uint8))
    assert out["detection_boxes"].shape == (5, 100, 4)


def test_the_set_is_a_speed_accuracy_trade_off():
    metas = sorted((read_metadata(model_dir(n)) for n in MODEL_NAMES), key=lambda m: m["flops_per_tile"])
    maps = [m["map"] for m in metas]
    assert maps == sorted(maps), [(m["name"], m["flops_per_tile"], m["map"]) for m in metas]
    assert maps[0] >= 0.30 and maps[-1] >= 0.50
    assert {m["meta_arch"] for m in metas} == {"centernet", "ssd", "faster_rcnn"}


def test_weights_fit_in_the_repository():
    total = sum(f.stat().st_size for n in MODEL_NAMES for f in model_dir(n).rglob("*") if f.is_file())
    assert total <= 30 * 2**20
    assert all((model_dir(n) / METADATA_FILE).is_file() for n in MODEL_NAMES)
