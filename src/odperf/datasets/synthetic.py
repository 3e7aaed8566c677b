"""The embedded synthetic dataset: COCO-format 300x300 tiles of simple shapes on varied backgrounds.

Why it exists: the suite must run offline, so it needs a detection dataset that the code can make
itself, in the layout COCO val2017 ships (``annotations/instances_<split>.json`` + ``<split>/*.png``),
that a small CNN can learn from scratch, and that exercises what mAP looks at: objects of every COCO
size range (small < 32^2, medium < 96^2, large), clutter, occlusion and empty tiles.

What a tile holds:
- a background: a colour gradient, smooth colour noise, stripes or a checkerboard;
- 0 to 6 objects of five categories told apart by *shape* (colours are random): disk, square,
  triangle, cross, ring; rotated, each filled flat or shaded;
- global lighting: brightness, contrast and a colour cast.

Annotations follow COCO: ``bbox`` is the tight box of the object's full shape (an occluded object keeps
its full box), ``area`` is the pixel count of its visible part (COCO's area is that of the visible mask;
it decides the size range), ``iscrowd`` is 0, ``segmentation`` is omitted. An object more than 70%
hidden by later ones is not drawn at all. About 7% of tiles are empty.

Determinism: tile ``i`` of split ``s`` is drawn from numpy's Generator seeded with ``(seed, crc32(s), i)``
alone, so the same seed gives the same bytes of every file (PNG at a fixed compress level, JSON without
dates; for a given numpy/Pillow/zlib), a longer split starts with the tiles of a shorter one, and two
splits never share a random stream. Image ids are ``split_code * 1_000_000 + i + 1``, distinct per split.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from odperf.errors import DatasetError

GENERATOR_VERSION = 1
"""Bump on any change to what is drawn: the cache folder name carries it, so stale data is never reused."""

TILE = 300
VAL_SPLIT = "val2017"
TRAIN_SPLIT = "train2017"
DEFAULT_N_VAL = 600
DEFAULT_N_TRAIN = 4000
PNG_COMPRESS_LEVEL = 1
CACHE_ENV = "ODPERF_CACHE"

CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "disk", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 4, "name": "cross", "supercategory": "shape"},
    {"id": 5, "name": "ring", "supercategory": "shape"},
)

# Object side (px of the tight box's longer side) per COCO size range, and how often each is drawn.
_SIZE_RANGES = ((10, 32), (32, 96), (96, 200))
_SIZE_WEIGHTS = (0.40, 0.35, 0.25)
_EMPTY_TILE_P = 0.07
_MAX_OBJECTS = 6
_MAX_HIDDEN = 0.70
_SPLIT_CODES = {VAL_SPLIT: 1, TRAIN_SPLIT: 2, "test2017": 3}


@dataclass(frozen=True)
class SyntheticTile:
    """One generated tile: pixels and its objects' COCO boxes [x, y, w, h], category ids and areas."""

    image: np.ndarray  # (300, 300, 3) uint8
    boxes: np.ndarray  # (n, 4) float64, COCO [x, y, w, h] in pixels
    category_ids: np.ndarray  # (n,) int64
    areas: np.ndarray  # (n,) int64, visible pixels
    masks: np.ndarray  # (n, 300, 300) bool, each object's full shape (occluded parts included)


def split_code(split: str) -> int:
    """Stable small number per split name: it keys the random streams and offsets the image ids."""
    if split in _SPLIT_CODES:
        return _SPLIT_CODES[split]
    return 10 + zlib.crc32(split.encode("utf-8")) % 9000


def image_id(split: str, index: int) -> int:
    return split_code(split) * 1_000_000 + index + 1


def render_tile(seed: int, split: str, index: int) -> SyntheticTile:
    """Draw tile ``index`` of ``split``; depends on nothing else, so any tile can be made on its own."""
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])
    image = _background(rng)
    objects = [] if rng.random() < _EMPTY_TILE_P else _place_objects(rng)
    objects = _drop_hidden(objects)
    visible = _visible_masks([o["mask"] for o in objects])
    for obj in objects:
        _paint(rng, image, obj)
    image = _lighting(rng, image)
    boxes = np.array([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4)
    cats = np.array([o["category_id"] for o in objects], dtype=np.int64)
    areas = np.array([int(v.sum()) for v in visible], dtype=np.int64)
    masks = np.array([o["mask"] for o in objects], dtype=bool).reshape(-1, TILE, TILE)
    return SyntheticTile(image=image, boxes=boxes, category_ids=cats, areas=areas, masks=masks)


# --- backgrounds -------------------------------------------------------------------------------------
_YY, _XX = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(20, 235, 3).astype(np.float32)
    b = np.clip(a + rng.uniform(-90, 90, 3), 0, 255).astype(np.float32)
    return a, b


def _background(rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(4)
    a, b = _two_colours(rng)
    angle = rng.uniform(0, 2 * math.pi)
    if kind in (0, 2):
        ramp = _XX * math.cos(angle) + _YY * math.sin(angle)
    if kind == 0:  # linear gradient
        t = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    elif kind == 1:  # smooth colour noise: a coarse random grid upsampled
        k = int(rng.integers(3, 9))
        coarse = (rng.random((k, k)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((TILE, TILE), Image.BICUBIC), np.float32) / 255
    elif kind == 2:  # stripes
        period = rng.uniform(0.03, 0.15)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * ramp / period)
    else:  # checkerboard
        p = int(rng.integers(10, 50))
        t = (((np.arange(TILE)[:, None] // p) + (np.arange(TILE)[None, :] // p)) % 2).astype(np.float32)
    return a + (b - a) * t[..., None]


# --- objects -----------------------------------------------------------------------------------------
def _unit_polygon(category_id: int) -> np.ndarray:
    if category_id == 2:  # square
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    if category_id == 3:  # equilateral triangle
        a = np.deg2rad([90, 210, 330])
        return np.stack([np.cos(a), np.sin(a)], axis=1)
    # cross: a plus sign with arms one third of the span wide
    t = 1 / 3
    return np.array(
        [[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t]],
        np.float64,
    )


def _shape_mask(rng: np.random.Generator, category_id: int, side: float, cx: float, cy: float) -> np.ndarray:
    canvas = Image.new("L", (TILE, TILE), 0)
    draw = ImageDraw.Draw(canvas)
    if category_id in (1, 5):  # disk, ring
        r = side / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        if category_id == 5:
            ri = r * rng.uniform(0.45, 0.65)
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    else:
        pts = _unit_polygon(category_id)
        a = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = pts @ rot.T
        span = float((pts.max(axis=0) - pts.min(axis=0)).max())
        pts = (pts - (pts.max(axis=0) + pts.min(axis=0)) / 2) * (side / span)
        draw.polygon([(cx + x, cy + y) for x, y in pts], fill=1)
    return np.asarray(canvas, dtype=bool)


def _place_objects(rng: np.random.Generator) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1))):
        lo, hi = _SIZE_RANGES[int(rng.choice(3, p=_SIZE_WEIGHTS))]
        side = float(rng.uniform(lo, hi))
        margin = side / 2 + 2
        if objects and rng.random() < 0.3:  # place next to an earlier object, to make occlusion common
            ref = objects[int(rng.integers(len(objects)))]["box"]
            cx = ref[0] + ref[2] / 2 + rng.uniform(-0.8, 0.8) * (ref[2] / 2 + side / 2)
            cy = ref[1] + ref[3] / 2 + rng.uniform(-0.8, 0.8) * (ref[3] / 2 + side / 2)
            cx, cy = float(np.clip(cx, margin, TILE - margin)), float(np.clip(cy, margin, TILE - margin))
        else:
            cx, cy = (float(v) for v in rng.uniform(margin, TILE - margin, 2))
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        mask = _shape_mask(rng, category_id, side, cx, cy)
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if len(ys) == 0:
            continue
        box = [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]
        objects.append({"category_id": category_id, "mask": mask, "box": box})
    return objects


def _visible_masks(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Later objects are drawn on top: each mask minus the union of the masks after it."""
    out: list[np.ndarray] = [np.zeros((TILE, TILE), bool)] * len(masks)
    above = np.zeros((TILE, TILE), bool)
    for i in range(len(masks) - 1, -1, -1):
        out[i] = masks[i] & ~above
        above |= masks[i]
    return out


def _drop_hidden(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove, one at a time, the lowest object more than _MAX_HIDDEN hidden, until none is."""
    while True:
        visible = _visible_masks([o["mask"] for o in objects])
        hidden = [i for i, (o, v) in enumerate(zip(objects, visible)) if v.sum() < (1 - _MAX_HIDDEN) * o["mask"].sum()]
        if not hidden:
            return objects
        objects = [o for i, o in enumerate(objects) if i != hidden[0]]


def _paint(rng: np.random.Generator, image: np.ndarray, obj: dict[str, Any]) -> None:
    x, y, w, h = (int(v) for v in obj["box"])
    region = (slice(y, y + h), slice(x, x + w))  # the mask is empty outside its tight box
    mask, pixels = obj["mask"][region], image[region]
    bg = pixels[mask].mean(axis=0)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    if np.abs(colour - bg).mean() < 70:  # keep the shape visible against what lies under it
        colour = np.where(bg > 127, bg - rng.uniform(90, 130, 3), bg + rng.uniform(90, 130, 3))
        colour = np.clip(colour, 0, 255).astype(np.float32)
    if rng.random() < 0.5:  # shaded: a soft light across the object
        angle = rng.uniform(0, 2 * math.pi)
        xx, yy = _XX[region] * TILE, _YY[region] * TILE
        ramp = ((xx - x) / w - 0.5) * math.cos(angle) + ((yy - y) / h - 0.5) * math.sin(angle)
        shade = 1.0 + 0.35 * np.clip(ramp[mask], -1, 1)
        pixels[mask] = np.clip(colour[None, :] * shade[:, None], 0, 255)
    else:
        pixels[mask] = colour


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    contrast = rng.uniform(0.75, 1.2)
    brightness = rng.uniform(-30, 30)
    cast = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    image -= 128  # in place, in the order of ((image - 128) * contrast + 128 + brightness) * cast + 0.5
    image *= contrast
    image += 128
    image += brightness
    image *= cast
    image += 0.5
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


# --- files ---------------------------------------------------------------------------------------
def _encode_png(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True), encoding="utf-8")


def generate(root: Path, split: str, n_tiles: int, seed: int = 0) -> Path:
    """Write ``n_tiles`` tiles of ``split`` under ``root`` in COCO's layout; return the instances JSON.

    Atomic: images go to a temporary folder that is renamed into ``root/<split>``, and the instances
    JSON is renamed into place last, so whoever finds the JSON finds every image it names.
    """
    if not isinstance(n_tiles, (int, np.integer)) or n_tiles < 1:
        raise DatasetError(f"synthetic dataset: n_tiles must be a positive integer, got {n_tiles!r}")
    if not split or "/" in split or split.startswith("."):
        raise DatasetError(f"synthetic dataset: split {split!r} is not a usable folder name (e.g. 'val2017')")
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_path = root / "annotations" / f"instances_{split}.json"
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{split}-", dir=root))
    try:
        images, annotations = [], []
        (work / split).mkdir()
        for i in range(int(n_tiles)):
            tile = render_tile(seed, split, i)
            img_id = image_id(split, i)
            file_name = f"{img_id:012d}.png"
            _encode_png(tile.image, work / split / file_name)
            images.append({"id": img_id, "file_name": file_name, "width": TILE, "height": TILE})
            for box, cat, area in zip(tile.boxes, tile.category_ids, tile.areas):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": img_id,
                        "category_id": int(cat),
                        "bbox": [float(v) for v in box],
                        "area": int(area),
                        "iscrowd": 0,
                    }
                )
        data = {
            "info": {
                "description": f"odperf synthetic shapes, generator v{GENERATOR_VERSION}, seed {seed}, split {split}",
                "version": str(GENERATOR_VERSION),
            },
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [dict(c) for c in CATEGORIES],
        }
        _write_json(data, work / "instances.json")
        if ann_path.exists():
            ann_path.unlink()  # readers must never pair the old JSON with the new images
        target = root / split
        if target.exists():
            shutil.rmtree(target)
        os.replace(work / split, target)
        os.replace(work / "instances.json", ann_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ann_path


def default_cache_dir() -> Path:
    """``$ODPERF_CACHE`` if set, else ``~/.cache/odperf``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "odperf"


def embedded_name(seed: int = 0, n_val: int = DEFAULT_N_VAL, n_train: int = DEFAULT_N_TRAIN) -> str:
    return f"synthetic-v{GENERATOR_VERSION}-seed{seed}-val{n_val}-train{n_train}"


def ensure_embedded(
    cache_dir: Path | None = None,
    seed: int = 0,
    n_val: int = DEFAULT_N_VAL,
    n_train: int = DEFAULT_N_TRAIN,
) -> Path:
    """Root of the embedded dataset (splits ``val2017`` and ``train2017``), generated on first use.

    The whole root is built in a temporary sibling and renamed into place, so concurrent callers
    (pytest-xdist workers) either find a complete dataset or build their own and keep the first one.
    ``n_train=0`` asks for the validation split only: it is taken from any cached root of the same
    seed and ``n_val`` (with whatever training split), else generated alone.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = cache / embedded_name(seed, n_val, n_train)
    splits = [(VAL_SPLIT, n_val)] + ([(TRAIN_SPLIT, n_train)] if n_train else [])
    if all((root / "annotations" / f"instances_{s}.json").is_file() for s, _ in splits):
        return root
    if not n_train:
        # The validation split depends on (seed, n_val) alone: any root made with a training split holds
        # the very same one, so a caller that only evaluates does not generate it again.
        for other in sorted(cache.glob(f"{embedded_name(seed, n_val, 0).removesuffix('0')}*")):
            if (other / "annotations" / f"instances_{VAL_SPLIT}.json").is_file():
                return other
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{root.name}-", dir=cache))
    except OSError as exc:
        raise _cache_error(cache, exc) from exc
    try:
        for split, n in splits:
            generate(work, split, n, seed=seed)
        try:
            os.rename(work, root)
        except OSError:
            if not root.is_dir():  # not a lost race: a real failure
                raise
    except OSError as exc:  # a full disk, a folder made read-only meanwhile: still the cache's fault
        raise _cache_error(cache, exc) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def _cache_error(cache: Path, exc: OSError) -> DatasetError:
    """One line naming the cache folder, what went wrong and the fix (an unwritable cache is not a model's crash)."""
    why = exc.strerror or str(exc)
    return DatasetError(
        f"cannot write the dataset cache {cache} ({why}): the embedded dataset is generated there on first "
        f"use; make the folder writable, or set ${CACHE_ENV} to a writable folder"
    )
