"""The embedded synthetic dataset: COCO layout, pycocotools round trip, determinism, disjoint splits."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from odperf.datasets import synthetic
from odperf.errors import DatasetError


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_pycocotools_scores_its_own_ground_truth_as_perfect(tmp_path: Path) -> None:
    ann = synthetic.generate(tmp_path, "val2017", 60, seed=3)
    assert ann == tmp_path / "annotations" / "instances_val2017.json"
    coco = _quiet(COCO, str(ann))
    assert sorted(coco.getCatIds()) == [c["id"] for c in synthetic.CATEGORIES]
    for img in coco.dataset["images"]:
        assert (tmp_path / "val2017" / img["file_name"]).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in coco.dataset["annotations"]
    ]
    ev = COCOeval(coco, _quiet(coco.loadRes, dets), "bbox")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    assert ev.stats[0] == pytest.approx(1.0)  # AP .50:.95
    assert ev.stats[3:6].min() == pytest.approx(1.0)  # small, medium and large all present and perfect


def test_boxes_sizes_and_empty_tiles_look_like_a_detection_dataset(tmp_path: Path) -> None:
    ann = synthetic.generate(tmp_path, "val2017", 200, seed=0)
    data = json.loads(ann.read_text())
    anns = data["annotations"]
    boxes = np.array([a["bbox"] for a in anns])
    areas = np.array([a["area"] for a in anns])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= 300).all() and (boxes[:, 1] + boxes[:, 3] <= 300).all()
    assert (areas > 0).all() and (areas <= boxes[:, 2] * boxes[:, 3]).all()
    for lo, hi in ((0, 32**2), (32**2, 96**2), (96**2, 1e9)):  # every COCO size range is well represented
        assert ((areas >= lo) & (areas < hi)).mean() > 0.1
    assert {a["iscrowd"] for a in anns} == {0}
    assert len({a["id"] for a in anns}) == len(anns)
    per_image = {a["image_id"] for a in anns}
    empty = len(data["images"]) - len(per_image)
    assert 2 <= empty <= 40
    assert {a["category_id"] for a in anns} == {c["id"] for c in synthetic.CATEGORIES}


def test_box_is_tight_around_the_drawn_shape_and_area_is_the_visible_part() -> None:
    seen_occluded = False
    for index in range(40):
        tile = synthetic.render_tile(0, "val2017", index)
        above = np.zeros((300, 300), bool)
        for box, area, mask in reversed(list(zip(tile.boxes, tile.areas, tile.masks))):
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            visible = int((mask & ~above).sum())
            assert area == visible
            assert visible >= 0.3 * mask.sum()  # more than 70% hidden objects are not drawn
            seen_occluded |= visible < mask.sum()
            above |= mask
    assert seen_occluded


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _digests(synthetic.generate(tmp_path / "a", "val2017", 12, seed=7).parent.parent)
    b = _digests(synthetic.generate(tmp_path / "b", "val2017", 12, seed=7).parent.parent)
    c = _digests(synthetic.generate(tmp_path / "c", "val2017", 12, seed=8).parent.parent)
    assert a == b
    assert a != c
    assert set(a.values()).isdisjoint(c.values())


def test_splits_are_disjoint(tmp_path: Path) -> None:
    val = json.loads(synthetic.generate(tmp_path, "val2017", 40).read_text())
    train = json.loads(synthetic.generate(tmp_path, "train2017", 80).read_text())
    assert not {i["id"] for i in val["images"]} & {i["id"] for i in train["images"]}
    val_bytes = {hashlib.sha256(p.read_bytes()).digest() for p in (tmp_path / "val2017").iterdir()}
    train_bytes = {hashlib.sha256(p.read_bytes()).digest() for p in (tmp_path / "train2017").iterdir()}
    assert len(val_bytes) == 40 and len(train_bytes) == 80
    assert not val_bytes & train_bytes


def test_regenerating_a_split_replaces_it_whole(tmp_path: Path) -> None:
    synthetic.generate(tmp_path, "val2017", 20)
    ann = synthetic.generate(tmp_path, "val2017", 5)
    assert len(json.loads(ann.read_text())["images"]) == 5
    assert len(list((tmp_path / "val2017").iterdir())) == 5


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="n_tiles"):
        synthetic.generate(tmp_path, "val2017", 0)
    with pytest.raises(DatasetError, match="split"):
        synthetic.generate(tmp_path, "../x", 3)


def test_ensure_embedded_generates_once_into_the_chosen_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(synthetic.CACHE_ENV, str(tmp_path / "env-cache"))
    root = synthetic.ensure_embedded(seed=1, n_val=10, n_train=15)
    assert root.parent == tmp_path / "env-cache"
    assert f"v{synthetic.GENERATOR_VERSION}" in root.name and "seed1" in root.name
    val = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    train = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    assert (len(val["images"]), len(train["images"])) == (10, 15)
    stamp = (root / "annotations" / "instances_val2017.json").stat().st_mtime_ns
    assert synthetic.ensure_embedded(seed=1, n_val=10, n_train=15) == root
    assert (root / "annotations" / "instances_val2017.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "env-cache").iterdir()] == [root.name]
    assert synthetic.ensure_embedded(seed=1, n_val=10, n_train=0) == root  # val only: reuses the same split
    explicit = synthetic.ensure_embedded(tmp_path / "arg-cache", seed=1, n_val=10, n_train=0)
    assert explicit.parent == tmp_path / "arg-cache"
    assert not (explicit / "annotations" / "instances_train2017.json").exists()
    assert (explicit / "annotations" / "instances_val2017.json").read_bytes() == (
        root / "annotations" / "instances_val2017.json"
    ).read_bytes()
    assert synthetic.ensure_embedded(tmp_path / "arg-cache", seed=1, n_val=11, n_train=0) != explicit


GENERATOR_V1_DIGEST = "3282f2c932075d11e675cf71269ac03ff76e6bbd64dffcb9dbf3e26716166bf9"


def test_what_is_drawn_matches_the_generator_version() -> None:
    """Cached datasets and the embedded detectors' training data are keyed by GENERATOR_VERSION: a change to
    the drawing must bump it (and this digest), or stale cached tiles would pass for new ones."""
    h = hashlib.sha256()
    for i in range(5):
        t = synthetic.render_tile(0, "val2017", i)
        for part in (t.image, t.boxes, t.category_ids, t.areas):
            h.update(part.tobytes())
    assert synthetic.GENERATOR_VERSION == 1
    assert h.hexdigest() == GENERATOR_V1_DIGEST, "the generator draws differently: bump GENERATOR_VERSION"
