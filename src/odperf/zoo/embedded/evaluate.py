"""COCO mAP of an exported detector on a COCO-format split, through the SavedModel as users run it."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from odperf.workload import normalized_to_xywh
from odperf.datasets.coco import CocoDataset
from odperf.zoo.embedded.data import Split


@dataclass(frozen=True)
class Accuracy:
    map: float  # COCO mAP@[.5:.95]
    ap50: float
    ap75: float
    images: int
    seconds: float  # inference plus COCOeval


def detect_split(serving_fn, split: Split, batch_size: int = 32) -> np.ndarray:
    """Run ``serving_fn`` over the split -> COCO result rows [image_id, x, y, w, h, score, category]."""
    rows = []
    size = split.images.shape[1]
    for start in range(0, len(split), batch_size):
        out = serving_fn(input_tensor=tf.constant(split.images[start : start + batch_size]))
        boxes = out["detection_boxes"].numpy()
        scores = out["detection_scores"].numpy()
        classes = out["detection_classes"].numpy()
        counts = out["num_detections"].numpy().astype(int)
        for k, n in enumerate(counts):
            if n == 0:
                continue
            xywh = normalized_to_xywh(boxes[k, :n], size, size)
            image_id = np.full((n, 1), split.image_ids[start + k], np.float64)
            rows.append(np.concatenate([image_id, xywh, scores[k, :n, None], classes[k, :n, None]], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def coco_accuracy(root: Path, split_name: str, split: Split, detections: np.ndarray) -> Accuracy:
    """COCOeval (bbox) restricted to the split's images; seconds is left 0 for the caller to fill."""
    from pycocotools.cocoeval import COCOeval

    gt = CocoDataset.from_root(root, split_name).coco
    with contextlib.redirect_stdout(io.StringIO()):
        if len(detections):
            dt = gt.loadRes(detections)
            ev = COCOeval(gt, dt, "bbox")
            ev.params.imgIds = [int(i) for i in split.image_ids]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = ev.stats
        else:
            stats = np.zeros(12)
    return Accuracy(float(stats[0]), float(stats[1]), float(stats[2]), len(split), 0.0)


def evaluate_saved_model(saved_model: Path, root: Path, split_name: str, split: Split, batch_size: int = 32) -> Accuracy:
    start = time.perf_counter()
    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    detections = detect_split(fn, split, batch_size)
    accuracy = coco_accuracy(root, split_name, split, detections)
    return replace(accuracy, seconds=time.perf_counter() - start)
