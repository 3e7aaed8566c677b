"""The COCO bbox scorers odperf runs: faster-coco-eval by default, pycocotools as the paper's reference.

Both take the same ground truth and detections and give the same 12 summary figures and the same
``eval["precision"]`` array [IoU, recall, category, area, maxDets] the per-category AP is read from
(tests/test_scorers.py proves it on a real car). faster-coco-eval computes the per-image matching and the
accumulation in C++, several times faster on a car of detections; pycocotools stays selectable
(``--odperf-scorer=pycocotools``) for those who want the paper's exact tool. Both treat ``iscrowd`` objects
as ignored regions and score an empty set of detections as 0, and both mark the ground truth they read
("ignore"): callers pass copies. Annotation ids start at 1 (``CameraSet.tile_gt``, the detections built
for scoring): faster-coco-eval reads an id of 0 as "unmatched". The scorer's package is imported only when
scoring.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from odperf.errors import WorkloadError

FASTER_COCO_EVAL = "faster-coco-eval"
PYCOCOTOOLS = "pycocotools"
SCORERS = (FASTER_COCO_EVAL, PYCOCOTOOLS)
DEFAULT_SCORER = FASTER_COCO_EVAL

# COCOeval's 12 bbox summary figures, in its order, by the names odperf's records use.
COCO_FIGURES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass(frozen=True)
class CocoScore:
    """What one COCOeval run gave: the 12 figures (None where no object of that kind exists), the
    precision array and the category ids its third axis follows."""

    figures: dict[str, float | None]
    precision: np.ndarray
    cat_ids: list[int]


def check_scorer(name: str) -> str:
    """``name`` if odperf knows the scorer, else a WorkloadError naming the choices."""
    if name not in SCORERS:
        raise WorkloadError(f"scorer must be one of {', '.join(SCORERS)}, got {name!r}")
    return name


def score_bbox(gt: dict[str, Any], detections: list[dict[str, Any]], img_ids: list[int],
               scorer: str = DEFAULT_SCORER) -> CocoScore:
    """COCOeval (bbox) of ``detections`` (COCO annotations with id, area and iscrowd, as ``COCO.loadRes``
    makes them) against the COCO dataset dict ``gt`` on ``img_ids``."""
    coco_cls, eval_cls = _classes(check_scorer(scorer))
    ground = _index(coco_cls, gt)
    found = _index(coco_cls, {"images": gt["images"], "categories": gt["categories"], "annotations": detections})
    ev = eval_cls(ground, found, "bbox")
    ev.params.imgIds = sorted(img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    figures = {name: (None if s < 0 else float(s)) for name, s in zip(COCO_FIGURES, ev.stats)}
    return CocoScore(figures, np.asarray(ev.eval["precision"]), [int(c) for c in ev.params.catIds])


def _classes(scorer: str) -> tuple[Any, Any]:
    if scorer == FASTER_COCO_EVAL:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def _index(coco_cls: Any, dataset: dict[str, Any]) -> Any:
    coco = coco_cls()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
