"""Camera images made of dataset tiles, with their ground truth in camera and in tile coordinates.

The paper's detectors see a 2700x2100 camera image only as its 63 tiles of 300x300, so a labelled camera
image is built the other way round: each tile position is filled with one dataset image made into a
tile, and the tile's annotations move with it.

Making a tile of a source image (``tile`` = the grid's tile size):
- scale so that the shorter side is ``tile`` px (Pillow bilinear; width and height rounded to whole
  pixels), then crop the centre ``tile x tile`` (offset ``(size - tile) // 2`` on the longer side);
  a ``tile x tile`` source is taken unchanged;
- boxes are scaled by the per-axis factors (scaled size / source size), shifted by the crop offset and
  clipped to the tile; a box is dropped when what is left has a side under ``MIN_SIDE`` px or covers
  less than ``MIN_VISIBLE`` of the scaled box (a sliver no detector can be asked to find);
- ``area`` is scaled by both factors and by the kept fraction of the box; ``iscrowd`` is kept;
  segmentations are dropped (evaluation is bbox).

Which source image goes where: the dataset's images in a seeded permutation, a fresh permutation each
time the list runs out, laid out in order over (camera image, tile index); so every source image is used
before any repeats. Blank tiles hold no source.

Ids: camera image ``c`` (0-based) has id ``c + 1``; its tile ``t`` has id ``c * tiles_per_image + t + 1``
(``tile_image_id``). Annotation ``k`` of ``gt`` and of ``tile_gt`` are the same object.

Pixels are made lazily: a car of 95 camera images is 1.6 GB, so ``CameraSet.image(i)`` assembles one
on demand from decoded, already-resized source tiles, which are cached (bounded by ``max_cached_tiles``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from odperf.datasets.coco import CocoDataset
from odperf.engine.portable import build_image
from odperf.errors import DatasetError, WorkloadError
from odperf.workload import PAPER_GRID, CameraGrid, tile_to_camera

MIN_SIDE = 1.0
"""A kept box is at least this many px wide and high inside the tile."""
MIN_VISIBLE = 0.25
"""A kept box keeps at least this fraction of its scaled area inside the tile."""
DEFAULT_MAX_CACHED_TILES = 1024


@dataclass(frozen=True)
class TileTransform:
    """How one source image becomes a tile: scaled size (w, h) and crop offset (x, y) in scaled px."""

    source_width: int
    source_height: int
    scaled_width: int
    scaled_height: int
    offset_x: int
    offset_y: int

    @classmethod
    def for_size(cls, width: int, height: int, tile: int) -> "TileTransform":
        scale = tile / min(width, height)
        sw = tile if width <= height else max(tile, round(width * scale))
        sh = tile if height <= width else max(tile, round(height * scale))
        return cls(width, height, sw, sh, (sw - tile) // 2, (sh - tile) // 2)

    @property
    def identity(self) -> bool:
        return (self.scaled_width, self.scaled_height, self.offset_x, self.offset_y) == (
            self.source_width, self.source_height, 0, 0,
        )

    def apply_image(self, image: np.ndarray, tile: int) -> np.ndarray:
        if not self.identity:
            pil = Image.fromarray(image).resize((self.scaled_width, self.scaled_height), Image.BILINEAR)
            image = np.asarray(pil)
        x, y = self.offset_x, self.offset_y
        return np.ascontiguousarray(image[y : y + tile, x : x + tile])

    def apply_boxes(self, boxes: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kept boxes clipped to the tile, indices of the kept input boxes, kept fraction of each)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = self.scaled_width / self.source_width, self.scaled_height / self.source_height
        x0, y0 = b[:, 0] * sx - self.offset_x, b[:, 1] * sy - self.offset_y
        x1, y1 = x0 + b[:, 2] * sx, y0 + b[:, 3] * sy
        cx0, cy0 = np.clip(x0, 0, tile), np.clip(y0, 0, tile)
        cx1, cy1 = np.clip(x1, 0, tile), np.clip(y1, 0, tile)
        cw, ch = cx1 - cx0, cy1 - cy0
        full = (x1 - x0) * (y1 - y0)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(full > 0, cw * ch / full, 0.0)
        keep = np.flatnonzero((cw >= MIN_SIDE) & (ch >= MIN_SIDE) & (frac >= MIN_VISIBLE))
        out = np.stack([cx0, cy0, cw, ch], axis=1)[keep]
        return out, keep, frac[keep] * sx * sy


@dataclass(eq=False)
class CameraSet:
    """Camera images built from a dataset's images, with ground truth per camera image and per tile."""

    dataset: CocoDataset
    grid: CameraGrid
    n_images: int
    placements: np.ndarray  # (n_images * image_tiles, 3) int64: camera index, tile index, source image id
    gt: dict[str, Any]  # COCO dict, one image per camera image (camera coordinates)
    tile_gt: dict[str, Any]  # COCO dict, one image per placed tile (tile coordinates)
    max_cached_tiles: int = DEFAULT_MAX_CACHED_TILES
    _cache: "OrderedDict[int, np.ndarray]" = field(default_factory=OrderedDict, repr=False)

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.gt["categories"]

    def camera_image_id(self, camera_index: int) -> int:
        return camera_index + 1

    def tile_image_id(self, camera_index: int, tile_index: int) -> int:
        return camera_index * self.grid.tiles_per_image + tile_index + 1

    def source(self, camera_index: int, tile_index: int) -> int:
        """Source image id placed at (camera image, tile); a blank tile has none."""
        self._check(camera_index)
        if self.grid.is_blank(tile_index):
            raise WorkloadError(f"tile {tile_index} is blank: no source image is placed there")
        return int(self.placements[camera_index * self.grid.image_tiles + tile_index, 2])

    def tile(self, source_id: int) -> np.ndarray:
        """The source image made into a tile (read-only, cached)."""
        cached = self._cache.get(source_id)
        if cached is not None:
            self._cache.move_to_end(source_id)
            return cached
        info = self.dataset.image_info(source_id)
        transform = TileTransform.for_size(info["width"], info["height"], self.grid.tile)
        pixels = transform.apply_image(self.dataset.load_image(source_id), self.grid.tile)
        pixels.setflags(write=False)
        self._cache[source_id] = pixels
        while len(self._cache) > self.max_cached_tiles:
            self._cache.popitem(last=False)
        return pixels

    def preload(self, camera_indices: range) -> None:
        """Decode every source tile these camera images use, ahead of a timed run (decoding is never
        timed, and done between timed images it was measured to slow the next one down)."""
        g = self.grid
        for c in camera_indices:
            self._check(c)
            for _, _, source_id in self.placements[c * g.image_tiles : (c + 1) * g.image_tiles]:
                self.tile(int(source_id))

    def image(self, camera_index: int) -> np.ndarray:
        """Camera image ``camera_index`` as a fresh (height, width, 3) uint8 array (blank tile excluded)."""
        self._check(camera_index)
        g = self.grid
        rows = self.placements[camera_index * g.image_tiles : (camera_index + 1) * g.image_tiles, 1:]
        out = build_image(g, rows, self.tile)  # the worker core's, as a board builds its images
        g.check_image(out)
        return out

    def _check(self, camera_index: int) -> None:
        if not 0 <= camera_index < self.n_images:
            raise WorkloadError(f"camera image {camera_index} out of range 0..{self.n_images - 1}")


def build_camera_set(
    dataset: CocoDataset,
    n_images: int,
    grid: CameraGrid = PAPER_GRID,
    seed: int = 0,
    max_cached_tiles: int = DEFAULT_MAX_CACHED_TILES,
) -> CameraSet:
    """Lay the dataset's images out as ``n_images`` camera images; ground truth now, pixels on demand."""
    if not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise WorkloadError(f"camera set: n_images must be a positive integer, got {n_images!r}")
    if grid.channels != 3:
        raise WorkloadError(f"camera set: dataset images are RGB, the grid has {grid.channels} channels")
    source_ids = np.array(dataset.image_ids, dtype=np.int64)
    if len(source_ids) == 0:
        raise DatasetError(f"{dataset.ann_file}: has no images to build camera images from")
    slots = int(n_images) * grid.image_tiles
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(source_ids) for _ in range(-(-slots // len(source_ids)))]
    )[:slots]
    cams, tiles = np.divmod(np.arange(slots, dtype=np.int64), grid.image_tiles)
    placements = np.stack([cams, tiles, order], axis=1)

    categories = [dict(c) for c in dataset.categories]
    cam_images = [
        {"id": c + 1, "file_name": f"camera_{c:05d}", "width": grid.width, "height": grid.height}
        for c in range(int(n_images))
    ]
    tile_images, cam_anns, tile_anns = [], [], []
    per_source = _tile_annotations(dataset, grid.tile)
    for c, t, src in placements.tolist():
        tile_id = c * grid.tiles_per_image + t + 1
        tile_images.append(
            {"id": tile_id, "file_name": f"camera_{c:05d}_tile_{t:02d}", "width": grid.tile,
             "height": grid.tile, "source_image_id": src}
        )
        boxes, extra = per_source[src]
        if not len(boxes):
            continue
        moved = tile_to_camera(boxes, t, grid)
        for box, cam_box, (cat, area, crowd) in zip(boxes.tolist(), moved.tolist(), extra):
            k = len(tile_anns) + 1
            common = {"id": k, "category_id": cat, "area": area, "iscrowd": crowd}
            tile_anns.append({**common, "image_id": tile_id, "bbox": box})
            cam_anns.append({**common, "image_id": c + 1, "bbox": cam_box})
    gt = {"images": cam_images, "annotations": cam_anns, "categories": categories}
    tile_gt = {"images": tile_images, "annotations": tile_anns, "categories": [dict(c) for c in categories]}
    return CameraSet(dataset, grid, int(n_images), placements, gt, tile_gt, max_cached_tiles)


def _tile_annotations(dataset: CocoDataset, tile: int) -> dict[int, tuple[np.ndarray, list[tuple[int, float, int]]]]:
    """Per source image: its kept boxes in tile coordinates and (category, area, iscrowd) of each."""
    out = {}
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        anns = dataset.annotations(image_id)
        transform = TileTransform.for_size(info["width"], info["height"], tile)
        boxes, keep, area_factor = transform.apply_boxes(np.array([a["bbox"] for a in anns]), tile)
        extra = [
            (int(anns[i]["category_id"]), float(anns[i]["area"]) * float(f), int(anns[i]["iscrowd"]))
            for i, f in zip(keep.tolist(), area_factor.tolist())
        ]
        out[image_id] = (boxes, extra)
    return out
