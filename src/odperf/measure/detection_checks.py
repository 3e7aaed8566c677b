"""Checks and repairs of a detector's raw outputs before they are scored (never inside the timed rounds).

A broken output must not turn into a silent mAP of 0 (with at most a RuntimeWarning from COCOeval):
- repaired and counted (``Repairs``): a box coordinate slightly outside [0, 1] (within ``BOX_TOLERANCE``)
  is clipped; a detection with a NaN or infinite box, score or class is dropped; a box whose max lies below
  its min is dropped;
- refused with an ``AccuracyError`` naming the model, the count and an example: outputs of the wrong dtype,
  boxes far outside [0, 1] (pixel coordinates, not normalized ones), classes that are not whole ids or that
  the dataset's label map does not have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from odperf.errors import OdperfError


class AccuracyError(OdperfError):
    """Detections that cannot be scored against the dataset (label maps that do not match, broken model
    outputs, no GT)."""


# Normalized box coordinates this far outside [0, 1] are rounding at the tile's edge: clipped and counted.
# Farther out, the boxes are not normalized at all (pixel coordinates, say): an error.
BOX_TOLERANCE = 0.05
REPAIR_KINDS = ("clipped", "dropped_nonfinite", "dropped_inverted")


@dataclass
class Repairs:
    """Detections fixed before scoring, by kind, with the first offending value of each kind."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPAIR_KINDS, 0))
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, n: int, example: Any) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + int(n)
            self.examples.setdefault(kind, show(example))

    @property
    def dropped(self) -> int:
        return sum(v for k, v in self.counts.items() if k.startswith("dropped"))

    def describe(self) -> str:
        return ", ".join(f"{n} {k.replace('_', ' ')} (e.g. {self.examples.get(k, '?')})"
                         for k, n in self.counts.items() if n) or "none"

    def to_json(self) -> str:
        return json.dumps({"counts": self.counts, "examples": self.examples})

    @classmethod
    def from_json(cls, text: str) -> "Repairs":
        data = json.loads(text)
        return cls(dict(data.get("counts", {})), dict(data.get("examples", {})))


def numeric(value: Any, name: str, who: str) -> np.ndarray:
    """A model output as a real-valued array, or an AccuracyError saying which output has which dtype."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise AccuracyError(f"{who}: detection {name} is not an array ({exc})") from exc
    if arr.dtype.kind not in "iuf":
        example = arr.reshape(-1)[0] if arr.size else None
        raise AccuracyError(
            f"{who}: detection {name} have dtype {arr.dtype} (e.g. {example!r}); a detector returns real "
            f"numbers: float boxes and scores, integer or whole float classes and counts"
        )
    return arr


def show(value: Any) -> str:
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    return str(np.round(arr, 4).tolist()) if arr.dtype.kind == "f" else str(arr.tolist())


def repair_normalized(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, repairs: Repairs,
                      who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detections of normalized boxes (flat: (n, 4), (n,), (n,)), repaired and counted into ``repairs``, or
    refused: (boxes, scores, integer classes, mask of those kept)."""
    boxes, scores, classes = boxes.astype(np.float64), scores.astype(np.float64), classes.astype(np.float64)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & np.isfinite(classes)
    bad = ~finite
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        repairs.add("dropped_nonfinite", int(bad.sum()),
                    f"box {show(boxes[i])}, score {scores[i]:g}, class {classes[i]:g}")
    fractional = finite & (np.rint(classes) != classes)
    if fractional.any():
        i = int(np.flatnonzero(fractional)[0])
        raise AccuracyError(
            f"{who}: detection classes must be whole category ids: {int(fractional.sum())} are not "
            f"(e.g. {classes[i]:g})"
        )
    far = finite & ((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE)).any(axis=1)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise AccuracyError(
            f"{who}: {int(far.sum())} of {int(finite.sum())} detection boxes lie outside [0, 1] by more than "
            f"{BOX_TOLERANCE} (e.g. {show(boxes[i])}): boxes must be normalized ymin, xmin, ymax, xmax; "
            f"does the model return pixel coordinates?"
        )
    outside = finite & ((boxes < 0) | (boxes > 1)).any(axis=1)
    if outside.any():
        repairs.add("clipped", int(outside.sum()), boxes[int(np.flatnonzero(outside)[0])])
        boxes = np.clip(boxes, 0.0, 1.0)
    inverted = finite & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.any():
        repairs.add("dropped_inverted", int(inverted.sum()), boxes[int(np.flatnonzero(inverted)[0])])
    keep = finite & ~inverted
    return boxes[keep], scores[keep], np.rint(classes[keep]).astype(np.int64), keep


def repair_camera_results(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, repairs: Repairs,
                          who: str) -> np.ndarray:
    """COCO results in pixels ([x, y, w, h]): the mask of those to score; broken ones counted in ``repairs``."""
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & np.isfinite(classes)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        repairs.add("dropped_nonfinite", int((~finite).sum()),
                    f"bbox {show(boxes[i])}, score {scores[i]:g}, category_id {classes[i]:g}")
    inverted = finite & ((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if inverted.any():
        repairs.add("dropped_inverted", int(inverted.sum()), boxes[int(np.flatnonzero(inverted)[0])])
    keep = finite & ~inverted
    if len(keep) and not keep.any():
        raise AccuracyError(f"{who}: none of its {len(keep)} detections can be scored: {repairs.describe()}")
    fractional = keep & (np.rint(classes) != classes)
    if fractional.any():
        raise AccuracyError(f"{who}: {int(fractional.sum())} results have a category_id that is not a whole id "
                            f"(e.g. {classes[int(np.flatnonzero(fractional)[0])]:g})")
    return keep


def check_categories(
    names: dict[int, str], classes: np.ndarray, model_category_ids: Iterable[int] | None, who: str
) -> None:
    have = ", ".join(f"{i} {n}" for i, n in names.items())
    if model_category_ids is not None:
        model = {int(c) for c in model_category_ids}
        if not model & set(names):
            raise AccuracyError(
                f"{who}: the dataset has none of the model's categories (model: ids {sorted(model)[:10]}"
                f"{'...' if len(model) > 10 else ''}; dataset: {have}); evaluate the model on the dataset "
                f"it was trained for"
            )
    outside = ~np.isin(classes, np.fromiter(names, np.int64, len(names)))
    if outside.any():
        unknown = sorted(set(classes[outside].tolist()))
        raise AccuracyError(
            f"{who} returns class ids {unknown[:10]}{'...' if len(unknown) > 10 else ''} that the dataset does "
            f"not have, on {int(outside.sum())} of {len(classes)} detections (e.g. class {int(classes[outside][0])}; "
            f"its categories: {have}); the model was trained on another label map: evaluate it on its own dataset"
        )
