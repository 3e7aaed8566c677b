"""COCO mAP of an embedded torch detector on a split of the synthetic dataset, and its batch speed.

The path is the TensorFlow embedded models' (``odperf.zoo.embedded.record``): decoded tiles through the
detector as users call it (``run(batch) -> Detections``), boxes to COCO [x, y, w, h] with
``odperf.workload.normalized_to_xywh``, then pycocotools' COCOeval (bbox) restricted to the split's
images. It is repeated here without TensorFlow, which this backend must not need. Two figures are
kept: the whole split (the model's recorded accuracy) and its first ``CI_TILES`` tiles, the subset the
test-suite re-evaluates.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from odperf.datasets.coco import CocoDataset
from odperf.workload import normalized_to_xywh
from odperf.backends.contract import RunFn
from odperf.zoo.embedded.data import CI_TILES, Split


def detect_split(run: RunFn, split: Split, batch_size: int = 32) -> np.ndarray:
    """COCO result rows [image_id, x, y, w, h, score, category] of ``run`` over the split's tiles."""
    rows = []
    height, width = split.images.shape[1:3]
    for start in range(0, len(split), batch_size):
        det = run(split.images[start : start + batch_size])
        for k in range(len(det)):
            boxes, scores, classes = det.valid(k)
            if not len(boxes):
                continue
            xywh = normalized_to_xywh(boxes, height, width)
            image_id = np.full((len(boxes), 1), split.image_ids[start + k], np.float64)
            rows.append(np.concatenate([image_id, xywh, scores[:, None], classes[:, None]], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def coco_figures(root: Path, split_name: str, image_ids: np.ndarray, detections: np.ndarray) -> dict[str, Any]:
    """COCOeval (bbox) over ``image_ids`` of the split: tiles, mAP@[.5:.95], AP50 and AP75 (rounded)."""
    from pycocotools.cocoeval import COCOeval

    gt = CocoDataset.from_root(root, split_name).coco
    ids = {int(i) for i in image_ids}
    detections = detections[np.isin(detections[:, 0], list(ids))] if len(detections) else detections
    stats = np.zeros(12)
    with contextlib.redirect_stdout(io.StringIO()):
        if len(detections):
            ev = COCOeval(gt, gt.loadRes(detections), "bbox")
            ev.params.imgIds = sorted(ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = ev.stats
    return {"tiles": len(ids), "map": round(float(stats[0]), 4), "ap50": round(float(stats[1]), 4),
            "ap75": round(float(stats[2]), 4)}


def accuracy_figures(run: RunFn, root: Path, split: Split, split_name: str = "val2017") -> dict[str, Any]:
    """mAP/AP50/AP75 on the whole split and on its first CI_TILES tiles, from one inference pass."""
    detections = detect_split(run, split)
    full = coco_figures(root, split_name, split.image_ids, detections)
    first = coco_figures(root, split_name, split.image_ids[:CI_TILES], detections)
    return {"split": split_name, **full, "first_tiles": first}


def seconds_per_batch(run: RunFn, tiles: np.ndarray, repeats: int = 5) -> float:
    """Median wall time of ``run`` on ``tiles`` (e.g. 64 validation tiles), after one warm-up call.

    Real tiles, not noise: the cost of the detectors' post-processing depends on how many boxes score
    above the threshold.
    """
    run(tiles)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(tiles)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
