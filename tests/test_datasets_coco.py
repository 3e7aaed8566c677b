"""COCO-format datasets: loading with pycocotools, and a clear DatasetError for each way a folder is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odperf.datasets.coco import CocoDataset
from odperf.errors import DatasetError


def _write(root: Path, data: dict, split: str = "val2017") -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(exist_ok=True)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path


def _dataset(root: Path) -> dict:
    """Three images in three modes, COCO-style category ids with gaps."""
    return {
        "images": [
            {"id": 7, "file_name": "rgb.png", "width": 64, "height": 48},
            {"id": 9, "file_name": "gray.png", "width": 32, "height": 32},
            {"id": 11, "file_name": "rgba.png", "width": 16, "height": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 20], "area": 150.0, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [5, 5, 4, 4]},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}],
    }


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    _write(tmp_path, _dataset(tmp_path))
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "val2017" / "rgb.png")
    Image.new("L", (32, 32), 77).save(tmp_path / "val2017" / "gray.png")
    Image.new("RGBA", (16, 8), (200, 100, 50, 128)).save(tmp_path / "val2017" / "rgba.png")
    return tmp_path


def test_loads_with_the_datasets_own_ids(root: Path) -> None:
    ds = CocoDataset.from_root(root)
    assert ds.image_ids == [7, 9, 11] and len(ds) == 3
    assert [c["id"] for c in ds.categories] == [1, 3, 90]
    assert ds.category_names == {1: "person", 3: "car", 90: "toothbrush"}
    anns = ds.annotations(7)
    assert [a["category_id"] for a in anns] == [90, 3]
    assert anns[1]["area"] == 16.0 and anns[1]["iscrowd"] == 0  # COCOeval needs both: filled in
    assert ds.annotations(9) == []
    assert ds.coco.getAnnIds(catIds=[90]) == [1]


def test_images_decode_to_rgb_uint8(root: Path) -> None:
    ds = CocoDataset(root / "annotations" / "instances_val2017.json", root / "val2017")
    rgb, gray, rgba = (ds.load_image(i) for i in (7, 9, 11))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 and (rgb == [10, 20, 30]).all()
    assert gray.shape == (32, 32, 3) and (gray == 77).all()
    assert rgba.shape == (8, 16, 3) and (rgba == [200, 100, 50]).all()


def test_missing_folder_file_and_split(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        CocoDataset.from_root(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"instances_train2017\.json is missing.*found instances_val2017"):
        CocoDataset.from_root(root, split="train2017")
    with pytest.raises(DatasetError, match="image folder .* does not exist"):
        CocoDataset(root / "annotations" / "instances_val2017.json", root / "images")
    with pytest.raises(DatasetError, match="instances file .* is missing"):
        CocoDataset(root / "annotations" / "nope.json", root / "val2017")


def test_not_json(root: Path) -> None:
    (root / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        CocoDataset.from_root(root)
    (root / "annotations" / "instances_val2017.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError, match="instances_val2017.json"):
        CocoDataset.from_root(root)
    (root / "annotations" / "instances_val2017.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="JSON object"):
        CocoDataset.from_root(root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("annotations"), "no 'annotations' list"),
        (lambda d: d.pop("categories"), "no 'categories' list"),
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\] lacks 'file_name'"),
        (lambda d: d["annotations"][0].pop("bbox"), r"annotations\[0\] lacks 'bbox'"),
        (lambda d: d["categories"][2].pop("name"), r"categories\[2\] lacks 'name'"),
        (lambda d: d.update(categories=[], annotations=[]), "no categories"),
        (lambda d: d["annotations"][0].update(category_id=2), "category id 2, not among"),
        (lambda d: d["annotations"][0].update(image_id=8), "image id 8"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "not \\[x, y, width, height\\]"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "negative"),
        (lambda d: d["images"].append(dict(d["images"][0])), "not unique"),
    ],
)
def test_malformed_instances_are_refused_with_the_record_named(root: Path, edit, message) -> None:
    data = _dataset(root)
    edit(data)
    _write(root, data)
    with pytest.raises(DatasetError, match=message):
        CocoDataset.from_root(root)


def test_image_problems_are_found_when_the_image_is_read(root: Path) -> None:
    (root / "val2017" / "gray.png").unlink()
    (root / "val2017" / "rgba.png").write_bytes(b"not a png at all")
    Image.new("RGB", (10, 10)).save(root / "val2017" / "rgb.png")
    ds = CocoDataset.from_root(root)  # opening does not decode images
    with pytest.raises(DatasetError, match=r"gray\.png \(id 9\) is missing"):
        ds.load_image(9)
    with pytest.raises(DatasetError, match=r"rgba\.png \(id 11\) cannot be read"):
        ds.load_image(11)
    with pytest.raises(DatasetError, match=r"rgb\.png is 10x10 .* says 48x64"):
        ds.load_image(7)
    with pytest.raises(DatasetError, match="no image with id 5"):
        ds.load_image(5)


def test_the_file_check_passes_whole_images_and_decides_odd_ends_by_decoding(tmp_path):
    """Whole JPEG and PNG files pass on their end markers; a JPEG with bytes after its end marker (as some
    cameras write) is decoded in full and passes; one cut short fails, naming the file."""
    from odperf.datasets.check import check_images

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    images = []
    for i, (name, fmt) in enumerate([("a.jpg", "JPEG"), ("b.png", "PNG"), ("c.jpg", "JPEG")], start=1):
        Image.fromarray(pixels).save(root / "val2017" / name, format=fmt)
        images.append({"id": i, "file_name": name, "width": 60, "height": 40})
    with open(root / "val2017" / "c.jpg", "ab") as f:
        f.write(b"trailing camera data" * 10)
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": [], "categories": [{"id": 1, "name": "car"}]}))
    check_images(CocoDataset.from_root(root))
    whole = (root / "val2017" / "a.jpg").read_bytes()
    (root / "val2017" / "a.jpg").write_bytes(whole[: len(whole) - 200])
    with pytest.raises(DatasetError, match=r"a\.jpg \(id 1\) cannot be read \(image file is truncated"):
        check_images(CocoDataset.from_root(root))
