"""Camera images built from dataset tiles: the resize/crop/clip/drop rule, placement, and GT both ways."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odperf.datasets import synthetic
from odperf.datasets.camera import CameraSet, TileTransform, build_camera_set
from odperf.datasets.coco import CocoDataset
from odperf.errors import WorkloadError
from odperf.workload import PAPER_GRID, CameraGrid, camera_to_tile

SMALL = CameraGrid(rows=2, cols=3)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> CocoDataset:
    root = tmp_path_factory.mktemp("shapes")
    synthetic.generate(root, "val2017", 50, seed=5)
    return CocoDataset.from_root(root)


@pytest.fixture()
def handmade(tmp_path: Path) -> CocoDataset:
    """A 640x480 landscape (green band between red and blue edges), a 300x300 and a 300x500 portrait."""
    (tmp_path / "images").mkdir()
    land = np.zeros((480, 640, 3), np.uint8)
    land[:, :80] = (255, 0, 0)
    land[:, 80:560] = (0, 255, 0)
    land[:, 560:] = (0, 0, 255)
    Image.fromarray(land).save(tmp_path / "images" / "land.png")
    square = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(square).save(tmp_path / "images" / "square.png")
    portrait = np.zeros((500, 300, 3), np.uint8)
    portrait[100:400] = 200
    Image.fromarray(portrait).save(tmp_path / "images" / "portrait.png")
    boxes = {
        "A": [100, 100, 80, 160],  # inside the crop: scaled and shifted only
        "B": [0, 10, 120, 40],  # a third of it survives the crop: kept, clipped
        "C": [0, 200, 96, 40],  # a sixth survives: dropped
        "D": [600, 300, 40, 40],  # wholly in the cropped-away band: dropped
        "E": [520, 400, 40, 80],  # touches the tile's right and bottom edges: kept whole
        "F": [300, 300, 1, 1],  # under a pixel once scaled: dropped
        "G": [200, 100, 100, 100],  # a crowd region: kept with iscrowd
    }
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 5 if k != "G" else 7, "bbox": b, "area": b[2] * b[3] / 2,
         "iscrowd": int(k == "G")}
        for i, (k, b) in enumerate(boxes.items())
    ]
    anns += [
        {"id": 20, "image_id": 2, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 1000, "iscrowd": 0},
        {"id": 21, "image_id": 3, "category_id": 5, "bbox": [50, 50, 100, 100], "area": 10000, "iscrowd": 0},
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "land.png", "width": 640, "height": 480},
            {"id": 2, "file_name": "square.png", "width": 300, "height": 300},
            {"id": 3, "file_name": "portrait.png", "width": 300, "height": 500},
        ],
        "annotations": anns,
        "categories": [{"id": 5, "name": "bolt"}, {"id": 7, "name": "dent"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    return CocoDataset(tmp_path / "instances.json", tmp_path / "images")


def _tile_anns(cs: CameraSet, source_id: int) -> list[dict]:
    tile_ids = {img["id"] for img in cs.tile_gt["images"] if img["source_image_id"] == source_id}
    first = min(tile_ids)
    return [a for a in cs.tile_gt["annotations"] if a["image_id"] == first]


def test_resize_crop_clip_drop_rule_on_known_boxes(handmade: CocoDataset) -> None:
    t = TileTransform.for_size(640, 480, 300)
    assert (t.scaled_width, t.scaled_height, t.offset_x, t.offset_y) == (400, 300, 50, 0)
    assert TileTransform.for_size(300, 500, 300).offset_y == 100
    assert TileTransform.for_size(300, 300, 300).identity
    cs = build_camera_set(handmade, 1, grid=SMALL)
    land = _tile_anns(cs, 1)
    assert [a["bbox"] for a in land] == [
        [12.5, 62.5, 50.0, 100.0],  # A
        [0.0, 6.25, 25.0, 25.0],  # B: x from -50 to 25, clipped
        [275.0, 250.0, 25.0, 50.0],  # E
        [75.0, 62.5, 62.5, 62.5],  # G
    ]
    assert [a["iscrowd"] for a in land] == [0, 0, 0, 1]
    assert [a["category_id"] for a in land] == [5, 5, 5, 7]
    assert land[0]["area"] == pytest.approx(80 * 160 / 2 * 0.625**2)
    assert land[1]["area"] == pytest.approx(120 * 40 / 2 * 0.625**2 / 3)  # a third of the box kept
    assert _tile_anns(cs, 2)[0]["bbox"] == [10, 20, 30, 40] and _tile_anns(cs, 2)[0]["area"] == 1000
    assert _tile_anns(cs, 3)[0]["bbox"] == [50.0, 0.0, 100.0, 50.0]  # portrait: 100 px cropped off the top


def test_tile_pixels_follow_the_same_rule(handmade: CocoDataset) -> None:
    cs = build_camera_set(handmade, 1, grid=SMALL)
    land, square, portrait = cs.tile(1), cs.tile(2), cs.tile(3)
    assert land.shape == square.shape == portrait.shape == (300, 300, 3)
    assert (land[:, 2:-2] == (0, 255, 0)).all()  # the red and blue side bands are cropped away
    assert (square == handmade.load_image(2)).all()  # a 300x300 source is taken unchanged
    assert (portrait == 200).all()
    assert not land.flags.writeable


def test_camera_ground_truth_is_the_union_of_tile_ground_truth(shapes: CocoDataset) -> None:
    cs = build_camera_set(shapes, 3, grid=PAPER_GRID, seed=1)
    g = PAPER_GRID
    assert [i["id"] for i in cs.gt["images"]] == [1, 2, 3]
    assert {(i["width"], i["height"]) for i in cs.gt["images"]} == {(2100, 2700)}
    tile_ids = [i["id"] for i in cs.tile_gt["images"]]
    assert len(tile_ids) == 3 * 63 and 64 not in tile_ids  # blank tiles are not images
    assert tile_ids[63] == 65  # camera 1, tile 0
    cam, tiles = cs.gt["annotations"], cs.tile_gt["annotations"]
    assert len(cam) == len(tiles) > 100
    boxes = np.array([a["bbox"] for a in cam])
    index, local = camera_to_tile(boxes, g)
    cam_index = np.array([a["image_id"] for a in cam]) - 1
    assert (cam_index * g.tiles_per_image + index + 1 == [a["image_id"] for a in tiles]).all()
    assert np.allclose(local, [a["bbox"] for a in tiles], atol=1e-9)
    for a, b in zip(cam, tiles):
        assert (a["category_id"], a["area"], a["iscrowd"]) == (b["category_id"], b["area"], b["iscrowd"])
    # and each tile's annotations are exactly its source image's (a 300x300 source is unchanged)
    for c, t, src in cs.placements[:70].tolist():
        tid = cs.tile_image_id(c, t)
        mine = [a["bbox"] for a in tiles if a["image_id"] == tid]
        assert mine == [a["bbox"] for a in shapes.annotations(src)]


def test_images_are_assembled_from_the_placed_tiles(shapes: CocoDataset) -> None:
    cs = build_camera_set(shapes, 2, grid=PAPER_GRID, seed=2, max_cached_tiles=10)
    image = cs.image(1)
    assert image.shape == (2700, 2100, 3) and image.dtype == np.uint8
    tiled = PAPER_GRID.cut(image)
    for t in (0, 6, 7, 31, 62):
        assert (tiled.tile(t) == shapes.load_image(cs.source(1, t))).all()
    assert len(cs._cache) <= 10
    assert (cs.image(1) == image).all()
    with pytest.raises(WorkloadError, match="blank"):
        cs.source(1, 63)


def test_placement_is_deterministic_and_uses_every_source_before_repeating(shapes: CocoDataset) -> None:
    a = build_camera_set(shapes, 2, grid=SMALL, seed=3)
    b = build_camera_set(shapes, 2, grid=SMALL, seed=3)
    c = build_camera_set(shapes, 2, grid=SMALL, seed=4)
    assert (a.placements == b.placements).all() and a.gt == b.gt and a.tile_gt == b.tile_gt
    assert not (a.placements == c.placements).all()
    big = build_camera_set(shapes, 40, grid=SMALL, seed=0)  # 240 slots over 50 sources
    sources = big.placements[:, 2]
    assert sorted(sources[:50]) == shapes.image_ids
    assert np.bincount(sources - sources.min()).max() <= 5
    assert big.placements[:7, :2].tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [1, 0]]


def test_errors(shapes: CocoDataset) -> None:
    with pytest.raises(WorkloadError, match="n_images"):
        build_camera_set(shapes, 0)
    with pytest.raises(WorkloadError, match="channels"):
        build_camera_set(shapes, 1, grid=CameraGrid(channels=1))
    cs = build_camera_set(shapes, 1, grid=SMALL)
    with pytest.raises(WorkloadError, match="out of range"):
        cs.image(1)


def test_other_tile_sizes_resize_the_sources(shapes: CocoDataset) -> None:
    grid = CameraGrid(rows=2, cols=2, tile=200)
    cs = build_camera_set(shapes, 1, grid=grid)
    assert cs.image(0).shape == (400, 400, 3)
    src = cs.source(0, 0)
    scaled = [[v * 200 / 300 for v in a["bbox"]] for a in shapes.annotations(src)]
    kept = [a["bbox"] for a in cs.tile_gt["annotations"] if a["image_id"] == 1]
    assert len(scaled) > 0 and len(kept) == len(scaled) and np.allclose(kept, scaled, atol=1e-9)
