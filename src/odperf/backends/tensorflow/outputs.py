"""Map a SavedModel signature's outputs onto ``Detections``.

Exports name their outputs ``detection_boxes``, ``detection_scores``, ``detection_classes`` and
``num_detections`` (plus extras such as ``raw_detection_boxes``). Some TF2 SavedModels instead name them
``output_0``, ``output_1``, ...: those are recognised once, on the first call, by shape and content:
counts are rank 1; boxes are the rank-3 tensor ending in 4 whose slot count the rank-2 outputs share;
among rank-2 outputs, classes hold whole numbers >= 1 where scores hold fractions in [0, 1]
(ties go to the exporter's sorted-name order: classes before scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from odperf.errors import ModelError
from odperf.backends.contract import Detections

STANDARD = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
MASKS = "detection_masks"


def named_outputs(structured_outputs: Any) -> dict[str, Any]:
    """The signature's outputs by name (a signature always returns a flat dict)."""
    if not isinstance(structured_outputs, Mapping):
        raise ModelError(f"serving_default returns {type(structured_outputs).__name__}; expected named outputs")
    return dict(structured_outputs)


class OutputMap:
    """Which signature output is which detection field; decided from names, else from the first call."""

    def __init__(self, specs: Mapping[str, Any], source: Path) -> None:
        self.source = source
        self.keys: dict[str, str] | None = None
        if all(k in specs for k in STANDARD):
            self.keys = {k: k for k in STANDARD}
            if MASKS in specs:
                self.keys[MASKS] = MASKS
        elif not any(k.startswith("output_") for k in specs):
            missing = [k for k in STANDARD if k not in specs]
            raise ModelError(f"{source}: serving_default has no output {', '.join(missing)} "
                             f"(it gives {', '.join(sorted(specs))})")

    def detections(self, raw: Mapping[str, Any]) -> Detections:
        if self.keys is None:
            self.keys = self._infer({k: np.asarray(v) for k, v in raw.items()})
        v = {field: np.asarray(raw[key]) for field, key in self.keys.items()}
        return Detections(v["detection_boxes"], v["detection_scores"], v["detection_classes"],
                          v["num_detections"], v.get(MASKS))

    def _infer(self, arrays: dict[str, np.ndarray]) -> dict[str, str]:
        names = sorted(arrays, key=lambda k: (len(k), k))  # output_2 before output_10
        counts = [k for k in names if arrays[k].ndim == 1]
        rank2 = [k for k in names if arrays[k].ndim == 2]
        boxes = [k for k in names if arrays[k].ndim == 3 and arrays[k].shape[-1] == 4
                 and any(arrays[r].shape[1] == arrays[k].shape[1] for r in rank2)]
        if not counts or not boxes:
            shapes = ", ".join(f"{k} {arrays[k].shape}" for k in names)
            raise ModelError(f"{self.source}: cannot tell detection outputs apart among unnamed outputs: {shapes}")
        n = arrays[boxes[0]].shape[1]
        same_n = [k for k in rank2 if arrays[k].shape[1] == n]

        def whole(a: np.ndarray) -> bool:
            return bool(np.all(np.rint(a) == a)) and (a.size == 0 or a.max() >= 1)

        def fraction(a: np.ndarray) -> bool:
            return a.size == 0 or (a.min() >= 0 and a.max() <= 1)

        cls = next((k for k in same_n if whole(arrays[k])), same_n[0] if len(same_n) >= 2 else None)
        rest = [k for k in same_n if k != cls]
        score = next((k for k in rest if fraction(arrays[k])), rest[0] if rest else None)
        if cls is None or score is None:
            shapes = ", ".join(f"{k} {arrays[k].shape}" for k in names)
            raise ModelError(f"{self.source}: cannot tell scores from classes among unnamed outputs: {shapes}")
        return {"detection_boxes": boxes[0], "detection_scores": score, "detection_classes": cls,
                "num_detections": counts[0]}
