"""faster-coco-eval (the default scorer) against pycocotools (the paper's): the same figures, on a real car."""

from __future__ import annotations

import json

import numpy as np
import pytest

from odperf.datasets.camera import CameraSet, build_camera_set
from odperf.datasets.coco import CocoDataset
from odperf.datasets.synthetic import VAL_SPLIT, ensure_embedded, generate
from odperf.errors import WorkloadError
from odperf.measure.accuracy import TiledDetections
from odperf.measure.scorers import COCO_FIGURES, DEFAULT_SCORER, SCORERS, check_scorer, score_bbox
from odperf.workload import IMAGES_PER_CAR, batch_bounds
from odperf.zoo.registry import get

MODEL = "centernet_tiny"


@pytest.fixture(scope="module")
def car(tmp_path_factory) -> tuple[CameraSet, TiledDetections]:
    """A real embedded detector's detections on one car (95 camera images x 63 tiles) of the synthetic set."""
    tf = pytest.importorskip("tensorflow")
    root = ensure_embedded(tmp_path_factory.mktemp("synthetic"), n_train=0)
    camera_set = build_camera_set(CocoDataset.from_root(root, VAL_SPLIT), IMAGES_PER_CAR, seed=0)
    detect = tf.saved_model.load(str(get(MODEL).path / "saved_model")).signatures["serving_default"]
    g = camera_set.grid
    detections = TiledDetections(g, MODEL)
    buffer = np.empty((64, g.tile, g.tile, 3), np.uint8)
    for c in range(camera_set.n_images):
        tiled = g.cut(camera_set.image(c))
        for start, stop in batch_bounds(g.tiles_per_image, 64):
            out = detect(input_tensor=tf.constant(tiled.fill(start, stop, buffer)))
            detections.add(c, start, *(out[k].numpy() for k in (
                "detection_boxes", "detection_scores", "detection_classes", "num_detections")))
    return camera_set, detections


def test_a_real_car_scores_the_same_with_both_scorers(car) -> None:
    camera_set, detections = car
    reports = {name: detections.evaluate(camera_set, scorer=name) for name in SCORERS}
    fast, reference = reports["faster-coco-eval"], reports["pycocotools"]
    assert fast.n_images == IMAGES_PER_CAR * 63 and fast.n_detections == len(detections) > 100_000
    assert fast.figures() == reference.figures()  # all 12, exactly
    assert fast.per_category == reference.per_category
    assert 0.1 < fast.ap < 0.9 and all(v is not None for v in fast.per_category.values())
    assert (fast.to_record()["scorer"], reference.to_record()["scorer"]) == ("faster-coco-eval", "pycocotools")
    print(f"\none car, {fast.n_detections} detections of {MODEL}: scoring took "
          + ", ".join(f"{name} {r.eval_seconds:.2f} s" for name, r in reports.items()))


@pytest.fixture(scope="module")
def crowded(tmp_path_factory) -> dict:
    """A COCO dataset dict where every fourth object is a crowd region (iscrowd=1)."""
    root = tmp_path_factory.mktemp("crowd")
    data = json.loads(generate(root, "val2017", 30, seed=5).read_text())
    for n, a in enumerate(data["annotations"]):
        a["iscrowd"] = int(n % 4 == 0)
    return data


def _copy(gt: dict) -> dict:
    return {**gt, "annotations": [dict(a) for a in gt["annotations"]]}


def _shifted(gt: dict, seed: int) -> list[dict]:
    """Ground truth boxes moved a little, some relabelled, each with a score: matches, misses and crowd hits."""
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for a in gt["annotations"]:
        x, y, w, h = (np.array(a["bbox"]) + rng.uniform(-4, 4, 4)).tolist()
        w, h = max(w, 1.0), max(h, 1.0)
        k = a["category_id"] if rng.random() > 0.2 else int(rng.choice(cats))
        out.append({"id": len(out) + 1, "image_id": a["image_id"], "category_id": k, "bbox": [x, y, w, h],
                    "score": float(rng.uniform(0.05, 1)), "area": w * h, "iscrowd": 0})
    return out


def test_crowd_regions_and_empty_detections_score_the_same(crowded) -> None:
    ids = [i["id"] for i in crowded["images"]]
    dets = _shifted(crowded, seed=1)
    scores = {name: score_bbox(_copy(crowded), [dict(d) for d in dets], ids, name) for name in SCORERS}
    fast, reference = scores["faster-coco-eval"], scores["pycocotools"]
    assert fast.figures == reference.figures and 0.05 < fast.figures["AP"] < 0.95
    # the same curves; pycocotools divides by tp + fp + eps, so a precision of 1 may read 1 - 2e-16 there
    np.testing.assert_allclose(fast.precision, reference.precision, rtol=0, atol=1e-15)
    # detections on crowd regions only: ignored by both, not false positives
    crowd_only = [d for d, a in zip(dets, crowded["annotations"]) if a["iscrowd"]]
    assert {n: score_bbox(_copy(crowded), crowd_only, ids, n).figures["AP"] for n in SCORERS} == dict.fromkeys(SCORERS, 0.0)
    empty = {name: score_bbox(_copy(crowded), [], ids, name) for name in SCORERS}
    assert empty["faster-coco-eval"].figures == empty["pycocotools"].figures
    assert empty["faster-coco-eval"].figures["AP"] == 0.0
    assert list(empty["faster-coco-eval"].figures) == list(COCO_FIGURES)


def test_an_unknown_scorer_is_named_with_the_choices() -> None:
    assert check_scorer(DEFAULT_SCORER) == "faster-coco-eval"
    with pytest.raises(WorkloadError, match="scorer must be one of faster-coco-eval, pycocotools, got 'coco'"):
        check_scorer("coco")
    with pytest.raises(WorkloadError, match="scorer must be one of"):
        score_bbox({"images": [], "categories": [], "annotations": []}, [], [], "coco")
