"""COCO mAP of a detector run on the tiled camera workload, with COCOeval (bbox) from the chosen scorer
(``measure.scorers``: faster-coco-eval by default, pycocotools as the paper's reference).

Two views of the same detections:
- what the line's user receives: COCO results in camera-image coordinates (image_id = camera image id,
  ``camera_index + 1``), kept by ``TiledDetections`` and written by ``write_results``;
- what is scored: each tile as its own COCO image (``CameraSet.tile_gt``), the camera results mapped
  back with ``workload.camera_to_tile``. Scoring per tile keeps COCOeval's rules meaning what they mean
  on COCO: at most 100 detections per image, area ranges of objects as the detector saw them.

Bad model output is never a silent mAP of 0. Checked here, after the timed rounds, never inside them:
- repaired and counted (``Repairs``, saved in the record's ``accuracy["repairs"]`` and shown by reports):
  a box coordinate slightly outside [0, 1] (within ``BOX_TOLERANCE``) is clipped; a detection with a NaN
  or infinite box, score or class is dropped; a box whose max lies below its min is dropped;
- refused with an ``AccuracyError`` naming the model, the count and an example: outputs of the wrong
  dtype or shape, boxes far outside [0, 1] (pixel coordinates, not normalized ones), class ids the
  dataset does not have (a model trained on another label map), and detections of which none is left
  to score once the broken ones are dropped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from odperf.datasets.camera import CameraSet
from odperf.errors import WorkloadError
from odperf.measure.detection_checks import (  # noqa: F401 (AccuracyError, Repairs, BOX_TOLERANCE: re-exported)
    BOX_TOLERANCE,
    AccuracyError,
    Repairs,
    check_categories,
    numeric,
    repair_camera_results,
    repair_normalized,
    show,
)
from odperf.measure.scorers import COCO_FIGURES, DEFAULT_SCORER, score_bbox
from odperf.workload import PAPER_GRID, CameraGrid, camera_to_tile, normalized_to_xywh, tile_to_camera


@dataclass(frozen=True)
class AccuracyReport:
    """COCOeval's 12 bbox summary figures (0..1; None where the dataset has no object of that kind)."""

    ap: float | None  # AP @ IoU .50:.95, the paper's mAP
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    ar1: float | None
    ar10: float | None
    ar100: float | None
    ar_small: float | None
    ar_medium: float | None
    ar_large: float | None
    per_category: dict[str, float | None]  # AP @ .50:.95 by category name
    n_images: int  # tiles scored
    n_detections: int
    n_ground_truth: int
    eval_seconds: float
    scorer: str = DEFAULT_SCORER  # which COCOeval produced the figures (odperf.measure.scorers)
    repairs: dict[str, int] = field(default_factory=dict)  # detections fixed before scoring, by kind

    def figures(self) -> dict[str, float | None]:
        """The 12 figures by COCO's names (``scorers.COCO_FIGURES``)."""
        return {name: getattr(self, attr) for name, attr in zip(COCO_FIGURES, _FIGURE_FIELDS)}

    def to_record(self) -> dict[str, Any]:
        """The ``RunRecord.accuracy`` dict: COCO's names for the summary figures, plus counts and the scorer."""
        return {
            **self.figures(),
            "per_category": dict(self.per_category), "n_images": self.n_images,
            "n_detections": self.n_detections, "n_ground_truth": self.n_ground_truth,
            "eval_seconds": self.eval_seconds, "scorer": self.scorer, "repairs": dict(self.repairs),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# AccuracyReport's field for each of COCO_FIGURES, in the same order.
_FIGURE_FIELDS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
                  "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


class TiledDetections:
    """Collects a detector's per-tile outputs, batch by batch, as camera-image COCO results."""

    def __init__(self, grid: CameraGrid = PAPER_GRID, model: str | None = None) -> None:
        self.grid = grid
        self.model = model  # named in errors
        self.repairs = Repairs()
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._seen: set[tuple[int, int]] = set()  # (camera index, tile index) the detector ran on

    @property
    def who(self) -> str:
        return self.model or "the detector"

    def add(
        self,
        camera_index: int,
        tile_start: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        """One model call on tiles ``tile_start ..`` of camera image ``camera_index``.

        boxes (B, N, 4) normalized ymin, xmin, ymax, xmax; scores and classes (B, N); counts (B,).
        Slots past ``counts[i]`` are padding; detections on blank tiles are dropped. Broken detections are
        repaired and counted, or refused (see the module's docstring).
        """
        g, who = self.grid, self.who
        boxes, scores = numeric(boxes, "boxes", who), numeric(scores, "scores", who)
        classes, counts = numeric(classes, "classes", who), numeric(counts, "num_detections", who)
        b = counts.size
        if boxes.ndim != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
            raise WorkloadError(f"{who}: detections: boxes have shape {boxes.shape}, expected ({b}, N, 4)")
        if scores.shape != boxes.shape[:2] or classes.shape != boxes.shape[:2]:
            raise WorkloadError(
                f"{who}: detections: scores {scores.shape} and classes {classes.shape} must be {boxes.shape[:2]}"
            )
        if camera_index < 0 or tile_start < 0 or tile_start + b > g.tiles_per_image:
            raise WorkloadError(
                f"detections for tiles {tile_start}..{tile_start + b - 1} of camera image {camera_index}: "
                f"the grid has tiles 0..{g.tiles_per_image - 1}"
            )
        counts = counts.reshape(-1).astype(np.float64)
        if not np.isfinite(counts).all() or (np.rint(counts) != counts).any():
            raise AccuracyError(f"{who}: num_detections must be whole numbers, got {show(counts)}")
        counts = counts.astype(np.int64)
        if (counts < 0).any() or (counts > boxes.shape[1]).any():
            raise WorkloadError(f"{who}: detections: counts {counts.tolist()} exceed the {boxes.shape[1]} slots")
        valid = np.arange(boxes.shape[1])[None, :] < counts[:, None]
        for k in range(b):
            if g.is_blank(tile_start + k):
                valid[k] = False
        kept_boxes, kept_scores, kept_classes, keep = repair_normalized(
            boxes[valid], scores[valid], classes[valid], self.repairs, who)
        where = np.nonzero(valid)
        batch_rows, tile_of = where[0][keep], tile_start + where[0][keep]
        for k in range(b):
            if not g.is_blank(tile_start + k):
                self._seen.add((int(camera_index), tile_start + k))
        for k in np.unique(batch_rows).tolist():
            mine = batch_rows == k
            tile_index, n = int(tile_of[mine][0]), int(mine.sum())
            local = normalized_to_xywh(kept_boxes[mine], g.tile, g.tile)
            self._parts.append((
                np.full(n, camera_index, np.int64), np.full(n, tile_index, np.int64),
                tile_to_camera(local, tile_index, g), kept_scores[mine].copy(), kept_classes[mine],
            ))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        if not self._parts:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
        arrays = tuple(np.concatenate(a) for a in zip(*self._parts))
        self._parts = [arrays]
        return arrays

    def __len__(self) -> int:
        return int(sum(len(p[0]) for p in self._parts))

    def results(self) -> list[dict[str, Any]]:
        """COCO results in camera-image coordinates, in the order the detections came."""
        cams, _, boxes, scores, classes = self._arrays()
        return [
            {"image_id": c + 1, "category_id": k, "bbox": b, "score": s}
            for c, k, b, s in zip(cams.tolist(), classes.tolist(), boxes.tolist(), scores.tolist())
        ]

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every detection kept (camera and tile indices, boxes, scores, classes) and the tiles seen, in order."""
        return (*self._arrays(), np.array(sorted(self._seen), dtype=np.int64).reshape(-1, 2))

    def save(self, path: str | Path) -> Path:
        """Everything ``add`` kept, as one .npz: the worker hands its detections to the parent this way."""
        cams, tiles, boxes, scores, classes = self._arrays()
        seen = np.array(sorted(self._seen), dtype=np.int64).reshape(-1, 2)
        meta = np.array(json.dumps({"model": self.model, "repairs": self.repairs.to_json()}))
        with open(path, "wb") as fh:
            np.savez(fh, cams=cams, tiles=tiles, boxes=boxes, scores=scores, classes=classes, seen=seen, meta=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, grid: CameraGrid = PAPER_GRID) -> "TiledDetections":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            out = cls(grid, meta.get("model"))
            if meta.get("repairs"):
                out.repairs = Repairs.from_json(meta["repairs"])
            out._parts = [tuple(data[k] for k in ("cams", "tiles", "boxes", "scores", "classes"))]
            out._seen = {(int(c), int(t)) for c, t in data["seen"]}
        return out

    def write_results(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.results()), encoding="utf-8")
        return path

    @property
    def tiles_seen(self) -> list[tuple[int, int]]:
        """(camera index, tile index) of every image tile given to ``add``, with or without detections."""
        return sorted(self._seen)

    def evaluate(
        self,
        camera_set: CameraSet,
        model_category_ids: Iterable[int] | None = None,
        camera_indices: Iterable[int] | None = None,
        scorer: str = DEFAULT_SCORER,
    ) -> AccuracyReport:
        """Score against ``camera_set`` with ``scorer``: by default only the tiles the detector ran on (so a
        run that timed a few camera images is scored on those), else every tile of ``camera_indices``."""
        if camera_set.grid != self.grid:
            raise WorkloadError(f"detections were made on {self.grid.describe()}, the camera set is "
                                f"{camera_set.grid.describe()}")
        cams, tiles, boxes, scores, classes = self._arrays()
        if not len(cams) and self.repairs.dropped:
            raise AccuracyError(
                f"{self.who}: none of its detections can be scored: {self.repairs.describe()}; its outputs are "
                f"broken (a mAP of them would be a meaningless 0)"
            )
        if camera_indices is None:
            outside = sorted({c for c, _ in self._seen if c >= camera_set.n_images})
            if outside:
                raise WorkloadError(
                    f"detections name camera images {outside[:5]} (0-based) but the camera set has "
                    f"{camera_set.n_images}"
                )
            scored = [camera_set.tile_image_id(c, t) for c, t in self._seen]
        else:
            scored = _tile_ids(camera_set, camera_indices)
        return _evaluate(camera_set, cams, boxes, scores, classes, tiles, model_category_ids, scored,
                         self.repairs, self.who, scorer)


def evaluate_camera_results(
    results: str | Path | list[dict[str, Any]],
    camera_set: CameraSet,
    model_category_ids: Iterable[int] | None = None,
    camera_indices: Iterable[int] | None = None,
    model: str | None = None,
    scorer: str = DEFAULT_SCORER,
) -> AccuracyReport:
    """Score COCO results in camera-image coordinates (a list, or a JSON file as written by
    ``TiledDetections.write_results``) against the camera set, tile by tile: every tile of
    ``camera_indices`` (default: all camera images of the set); results on other images are ignored.
    Results with a NaN or infinite value, or a negative width or height, are dropped and counted."""
    if not isinstance(results, list):
        path = Path(results)
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AccuracyError(f"{path}: cannot read COCO results ({exc}); give a JSON list of detections") from exc
        if not isinstance(results, list):
            raise AccuracyError(f"{path}: expected a JSON list of COCO detections")
    try:
        cams = np.array([r["image_id"] - 1 for r in results], dtype=np.int64)
        boxes = np.array([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4)
        scores = np.array([r["score"] for r in results], dtype=np.float64)
        classes = np.array([r["category_id"] for r in results], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise AccuracyError(f"COCO results need image_id, category_id, bbox [x,y,w,h] and score: {exc}") from exc
    who, repairs = model or "the results", Repairs()
    keep = repair_camera_results(boxes, scores, classes, repairs, who)
    indices = range(camera_set.n_images) if camera_indices is None else camera_indices
    return _evaluate(camera_set, cams[keep], boxes[keep], scores[keep], np.rint(classes[keep]).astype(np.int64),
                     None, model_category_ids, _tile_ids(camera_set, indices), repairs, who, scorer)


def _tile_ids(camera_set: CameraSet, camera_indices: Iterable[int]) -> list[int]:
    out = []
    for c in camera_indices:
        if not 0 <= int(c) < camera_set.n_images:
            raise WorkloadError(f"camera image {c} out of range 0..{camera_set.n_images - 1}")
        out.extend(camera_set.tile_image_id(int(c), t) for t in range(camera_set.grid.image_tiles))
    return out


def _evaluate(
    camera_set: CameraSet,
    cams: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    tiles_hint: np.ndarray | None,
    model_category_ids: Iterable[int] | None,
    scored_ids: list[int],
    repairs: Repairs,
    who: str,
    scorer: str,
) -> AccuracyReport:
    start = time.perf_counter()
    g = camera_set.grid
    names = {c["id"]: c["name"] for c in camera_set.categories}
    check_categories(names, classes, model_category_ids, who)
    if len(cams) and (cams.min() < 0 or cams.max() >= camera_set.n_images):
        raise WorkloadError(
            f"detections name camera images {int(cams.min())}..{int(cams.max())} (0-based) but the camera "
            f"set has {camera_set.n_images}"
        )
    scored = set(scored_ids)
    n_gt = sum(a["image_id"] in scored for a in camera_set.tile_gt["annotations"])
    if not n_gt:
        raise AccuracyError(
            f"the {len(scored)} tiles scored hold no ground-truth objects: mAP is undefined; run the detector "
            f"on more camera images, or use a dataset with annotations"
        )
    tiles, local = camera_to_tile(boxes, g)
    if tiles_hint is not None:
        # A box with no width or height lying on a tile border has its centre on the next tile over:
        # the tile it came from is known, and is the right one.
        moved = tiles != tiles_hint
        if moved.any():
            tiles[moved] = tiles_hint[moved]
            origins = np.array([g.tile_origin(int(t)) for t in tiles_hint[moved]], dtype=np.float64)
            local[moved, 0] = boxes[moved, 0] - origins[:, 1]
            local[moved, 1] = boxes[moved, 1] - origins[:, 0]
    image_ids = cams * g.tiles_per_image + tiles + 1
    keep = np.isin(image_ids, np.fromiter(scored, np.int64, len(scored)))
    image_ids, classes, local, scores = image_ids[keep], classes[keep], local[keep], scores[keep]

    # COCOeval marks the ground truth it reads ("ignore"): give it copies, the camera set stays as built.
    gt = {**camera_set.tile_gt, "annotations": [dict(a) for a in camera_set.tile_gt["annotations"]]}
    # What COCO.loadRes builds for bbox results, minus the polygon it adds for segm evaluation.
    dt_anns = [
        {"id": n + 1, "image_id": i, "category_id": k, "bbox": b, "score": s, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, k, b, s) in enumerate(zip(image_ids.tolist(), classes.tolist(), local.tolist(), scores.tolist()))
    ]
    score = score_bbox(gt, dt_anns, sorted(scored), scorer)
    per_category: dict[str, float | None] = {}
    for k, cat_id in enumerate(score.cat_ids):
        p = score.precision[:, :, k, 0, -1]  # [IoU, recall, category, area, maxDets]: all areas, 100 per image
        p = p[p > -1]
        per_category[names[cat_id]] = float(p.mean()) if p.size else None
    return AccuracyReport(
        **{attr: score.figures[name] for name, attr in zip(COCO_FIGURES, _FIGURE_FIELDS)},
        per_category=per_category, n_images=len(scored), n_detections=len(dt_anns), n_ground_truth=n_gt,
        eval_seconds=time.perf_counter() - start, scorer=scorer, repairs=dict(repairs.counts),
    )
