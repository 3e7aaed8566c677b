"""Training and evaluation data: a COCO-format split decoded once into arrays, and shuffled batches.

Tiles are decoded to one uint8 array up front (4,000 tiles of 300x300 are 1.1 GB): decoding PNGs every
step would cost more CPU than the small detectors themselves. Ground truth is padded to a fixed number
of boxes per tile with a validity mask, so target assignment can run batched inside the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from odperf.datasets.coco import CocoDataset
from odperf.errors import DatasetError

CI_TILES = 200  # validation tiles the committed models' recorded figures and their CI checks use


@dataclass(frozen=True)
class Split:
    """Decoded tiles of one split, boxes [N, M, 4] px (ymin, xmin, ymax, xmax), 0-based classes (-1 = pad)."""

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    image_ids: np.ndarray
    category_ids: tuple[int, ...]  # 0-based class i is dataset category category_ids[i]
    category_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)


def load_split(root: Path, split: str, limit: int | None = None, size: int = 300) -> Split:
    """Decode ``split`` of the COCO-layout dataset at ``root`` (first ``limit`` images by id).

    Tiles of another size are resized to ``size`` (boxes scaled with them); the detectors resize
    inside their graph anyway, this only keeps the array rectangular.
    """
    dataset = CocoDataset.from_root(root, split)
    ids = dataset.image_ids[:limit]
    if not ids:
        raise DatasetError(f"split {split!r} under {root} holds no images")
    category_ids = tuple(c["id"] for c in dataset.categories)
    to_class = {c: i for i, c in enumerate(category_ids)}
    per_image = [[a for a in dataset.annotations(i) if not a.get("iscrowd", 0)] for i in ids]
    max_boxes = max(1, max(len(a) for a in per_image))
    images = np.zeros((len(ids), size, size, 3), np.uint8)
    boxes = np.zeros((len(ids), max_boxes, 4), np.float32)
    classes = np.full((len(ids), max_boxes), -1, np.int32)
    for n, (image_id, anns) in enumerate(zip(ids, per_image)):
        image = dataset.load_image(image_id)
        sy, sx = size / image.shape[0], size / image.shape[1]
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        images[n] = image
        for k, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            boxes[n, k] = (y * sy, x * sx, (y + h) * sy, (x + w) * sx)
            classes[n, k] = to_class[ann["category_id"]]
    names = tuple(c["name"] for c in dataset.categories)
    return Split(images, boxes, classes, np.asarray(ids, np.int64), category_ids, names)


def batches(split: Split, batch_size: int, seed: int, flips: bool = True):
    """Endless shuffled batches (epoch by epoch) with random horizontal and vertical flips."""
    rng = np.random.default_rng(seed)
    size = split.images.shape[1]
    while True:
        order = rng.permutation(len(split))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = np.sort(order[start : start + batch_size])
            images = split.images[idx].copy()
            boxes = split.boxes[idx].copy()
            classes = split.classes[idx]
            if flips:
                for axis, (lo, hi) in ((2, (1, 3)), (1, (0, 2))):  # horizontal, then vertical
                    flip = rng.random(batch_size) < 0.5
                    images[flip] = np.flip(images[flip], axis=axis)
                    b = boxes[flip]
                    b[..., lo], b[..., hi] = size - b[..., hi], size - b[..., lo]
                    boxes[flip] = b
            yield images, boxes, classes
