"""Measure a trained embedded model through its SavedModel and write the figures into its metadata.

Two accuracy figures are kept: mAP on the whole held-out split (the model's recorded accuracy) and on
its first ``CI_TILES`` tiles, the subset the test-suite re-evaluates, so that the test compares like with
like (a 200-tile subset's mAP differs from the 600-tile one by more than any sensible tolerance).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odperf.zoo.embedded import export
from odperf.zoo.embedded.data import CI_TILES, Split, load_split
from odperf.zoo.embedded.evaluate import Accuracy, coco_accuracy, detect_split
from odperf.zoo.metadata import read_metadata, write_metadata


def _subset(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.boxes[:n], split.classes[:n], split.image_ids[:n], split.category_ids, split.category_names)


def accuracy_figures(model_dir: Path, root: Path, split_name: str = "val2017", limit: int | None = None) -> dict[str, Any]:
    """mAP/AP50/AP75 on the split (first ``limit`` tiles) and on its first CI_TILES tiles, one inference pass."""
    fn = tf.saved_model.load(str(Path(model_dir) / export.SAVED_MODEL_DIR)).signatures["serving_default"]
    split = load_split(root, split_name, limit=limit)
    detections = detect_split(fn, split)
    full = coco_accuracy(root, split_name, split, detections)
    small = _subset(split, min(CI_TILES, len(split)))
    ids = set(int(i) for i in small.image_ids)
    subset = coco_accuracy(root, split_name, small, detections[np.isin(detections[:, 0], list(ids))])

    def fig(a: Accuracy) -> dict[str, Any]:
        return {"tiles": a.images, "map": round(a.map, 4), "ap50": round(a.ap50, 4), "ap75": round(a.ap75, 4)}

    return {"split": split_name, **fig(full), "first_tiles": fig(subset)}


def seconds_per_batch(model_dir: Path, tiles: np.ndarray, repeats: int = 5) -> float:
    """Median wall time of one call on ``tiles`` (e.g. 64 validation tiles), after a warm-up call.

    Real tiles, not noise: the NMS cost depends on how many boxes score above the threshold.
    """
    fn = tf.saved_model.load(str(Path(model_dir) / export.SAVED_MODEL_DIR)).signatures["serving_default"]
    tiles = tf.constant(tiles)
    fn(input_tensor=tiles)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(input_tensor=tiles)["num_detections"].numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def put_accuracy(metadata: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """``map`` and ``ap50`` as plain fractions at the top (what the registry reads), details beside."""
    metadata["map"] = figures["map"]
    metadata["ap50"] = figures["ap50"]
    metadata["accuracy"] = figures
    return metadata


def record(model_dir: Path, root: Path, split_name: str = "val2017") -> dict[str, Any]:
    """Re-measure accuracy into ``odperf_model.json`` and return the metadata."""
    metadata = put_accuracy(read_metadata(model_dir), accuracy_figures(model_dir, root, split_name))
    write_metadata(model_dir, metadata)
    return metadata
