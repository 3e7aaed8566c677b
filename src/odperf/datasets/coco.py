"""Any COCO-format detection dataset, read with pycocotools: the real val2017 or the embedded synthetic one.

One code path serves both, so the checks here are what a user pointing odperf at a folder needs: every
problem is a ``DatasetError`` naming the file or record at fault and the fix, found when the dataset is
opened (JSON, keys, references) or, for image files, when the image is read.

Category ids are the dataset's own (COCO's are 1..90 with gaps); nothing is renumbered, because the
detectors' class ids are those same ids. Annotations without ``area`` get the box area and without
``iscrowd`` get 0, which is what COCOeval needs; segmentations are kept but never used (bbox only).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from odperf.errors import DatasetError

_REQUIRED = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


class CocoDataset:
    """A COCO-format detection dataset: its instances JSON (via pycocotools) and its image folder."""

    def __init__(self, ann_file: str | Path, image_dir: str | Path) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DatasetError(
                f"image folder {self.image_dir} does not exist: give the folder that holds the images "
                f"named by {self.ann_file.name}"
            )
        data = _read_instances(self.ann_file)
        _validate(data, self.ann_file)
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        self.coco = coco

    @classmethod
    def from_root(cls, root: str | Path, split: str = "val2017") -> "CocoDataset":
        """Open ``<root>/annotations/instances_<split>.json`` with images in ``<root>/<split>/``."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(
                f"dataset folder {root} does not exist: give a folder laid out like COCO "
                f"(annotations/instances_{split}.json and {split}/)"
            )
        ann = root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            found = sorted(p.name for p in (root / "annotations").glob("instances_*.json"))
            hint = f"; found {', '.join(found)}: choose the split accordingly" if found else ""
            raise DatasetError(f"{ann} is missing: {root} has no instances file for split {split!r}{hint}")
        return cls(ann, root / split)

    # --- contents -----------------------------------------------------------------------------------
    @property
    def image_ids(self) -> list[int]:
        return sorted(self.coco.imgs)

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The dataset's categories ({"id", "name", ...}) in id order, ids as the dataset has them."""
        return [self.coco.cats[i] for i in sorted(self.coco.cats)]

    @property
    def category_names(self) -> dict[int, str]:
        return {i: c["name"] for i, c in sorted(self.coco.cats.items())}

    def __len__(self) -> int:
        return len(self.coco.imgs)

    def image_info(self, image_id: int) -> dict[str, Any]:
        try:
            return self.coco.imgs[image_id]
        except KeyError:
            raise DatasetError(f"{self.ann_file}: no image with id {image_id}") from None

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """The image's annotations (empty for an image without objects)."""
        self.image_info(image_id)
        return self.coco.imgToAnns.get(image_id, [])

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.image_info(image_id)["file_name"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Decode the image as uint8 (height, width, 3) RGB; grayscale, palette and RGBA become RGB."""
        info = self.image_info(image_id)
        path = self.image_dir / info["file_name"]
        try:
            with Image.open(path) as img:
                rgb = img if img.mode == "RGB" else img.convert("RGB")
                array = np.asarray(rgb, dtype=np.uint8)
        except FileNotFoundError:
            raise DatasetError(
                f"image {path} (id {image_id}) is missing: the dataset's image folder is incomplete; "
                f"restore the file or regenerate the dataset"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DatasetError(f"image {path} (id {image_id}) cannot be read ({exc}); replace the file") from exc
        if array.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(
                f"image {path} is {array.shape[0]}x{array.shape[1]} (height x width) but "
                f"{self.ann_file.name} says {info['height']}x{info['width']}: its boxes would be wrong; "
                f"fix the JSON or the file"
            )
        return array


def _read_instances(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"instances file {path} is missing: give the path of a COCO instances_*.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not a JSON text file ({exc.reason}); give a COCO instances JSON") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); is the file truncated?"
        ) from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def _validate(data: dict[str, Any], path: Path) -> None:
    """Refuse what pycocotools would choke on later, or score silently wrong."""
    for key, fields in _REQUIRED.items():
        records = data.get(key)
        if not isinstance(records, list):
            raise DatasetError(
                f"{path}: no '{key}' list; a COCO detection instances file has images, annotations "
                f"and categories"
            )
        for n, rec in enumerate(records):
            missing = [f for f in fields if not isinstance(rec, dict) or f not in rec]
            if missing:
                raise DatasetError(
                    f"{path}: {key}[{n}] lacks {', '.join(repr(f) for f in missing)} "
                    f"(each of {key} needs {', '.join(fields)})"
                )
    if data["images"] and not data["categories"]:
        raise DatasetError(f"{path}: has {len(data['images'])} images but no categories; a detection dataset needs them")
    image_ids = {img["id"] for img in data["images"]}
    if len(image_ids) != len(data["images"]):
        raise DatasetError(f"{path}: image ids are not unique")
    cat_ids = {c["id"] for c in data["categories"]}
    for n, ann in enumerate(data["annotations"]):
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{path}: annotations[{n}] refers to image id {ann['image_id']}, which is not listed")
        if ann["category_id"] not in cat_ids:
            raise DatasetError(
                f"{path}: annotations[{n}] has category id {ann['category_id']}, not among the "
                f"categories {sorted(cat_ids)}"
            )
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise DatasetError(f"{path}: annotations[{n}] bbox {box!r} is not [x, y, width, height]")
        if box[2] < 0 or box[3] < 0:
            raise DatasetError(f"{path}: annotations[{n}] bbox {box!r} has a negative width or height")
        ann.setdefault("area", float(box[2]) * float(box[3]))
        ann.setdefault("iscrowd", 0)
