"""One record and one calling convention for every detector, whatever format it was exported in.

The engine times ``Detector.__call__``: it must return results that are on the host and complete, so a
timing never stops while TensorFlow still has work pending. ``Detections`` holds numpy arrays only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odperf.backends.names import DEFAULT
from odperf.errors import ModelError

BATCH_MODES = ("batched", "tile_by_tile")


@dataclass
class Detections:
    """Detections for a batch of B images, N slots each (slots past ``counts[i]`` are padding).

    boxes: (B, N, 4) float32, normalized ymin, xmin, ymax, xmax; scores: (B, N) float32;
    classes: (B, N) int32, 1-based (COCO category ids for zoo models); counts: (B,) int32.
    masks: mask models only, (B, N, h, w) float32 box-relative masks, else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.classes = np.asarray(np.rint(self.classes), dtype=np.int32)
        self.counts = np.asarray(np.rint(self.counts), dtype=np.int32).reshape(-1)
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=np.float32)
        b = self.counts.shape[0]
        if self.boxes.ndim != 3 or self.boxes.shape[-1] != 4 or self.boxes.shape[0] != b:
            raise ModelError(f"detection_boxes has shape {self.boxes.shape}; expected ({b}, N, 4)")
        n = self.boxes.shape[1]
        for label, arr in (("detection_scores", self.scores), ("detection_classes", self.classes)):
            if arr.shape != (b, n):
                raise ModelError(f"{label} has shape {arr.shape}; expected ({b}, {n}) like detection_boxes")

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def slots(self) -> int:
        return int(self.boxes.shape[1])

    def image(self, i: int) -> "Detections":
        """The detections of image ``i`` as a batch of one."""
        masks = None if self.masks is None else self.masks[i : i + 1]
        return Detections(self.boxes[i : i + 1], self.scores[i : i + 1], self.classes[i : i + 1],
                          self.counts[i : i + 1], masks)

    def valid(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes, scores, classes) of image ``i`` without the padding slots."""
        k = int(self.counts[i])
        return self.boxes[i, :k], self.scores[i, :k], self.classes[i, :k]

    @classmethod
    def concat(cls, parts: list["Detections"]) -> "Detections":
        """Stack per-call results along the batch; slot counts may differ and are zero-padded."""
        if not parts:
            raise ValueError("nothing to concatenate")
        n = max(p.slots for p in parts)

        def pad(arr: np.ndarray) -> np.ndarray:
            if arr.shape[1] == n:
                return arr
            widths = [(0, 0), (0, n - arr.shape[1])] + [(0, 0)] * (arr.ndim - 2)
            return np.pad(arr, widths)

        masks = None
        if all(p.masks is not None for p in parts) and len({p.masks.shape[2:] for p in parts}) == 1:  # type: ignore[union-attr]
            masks = np.concatenate([pad(p.masks) for p in parts])  # type: ignore[arg-type]
        return cls(
            boxes=np.concatenate([pad(p.boxes) for p in parts]),
            scores=np.concatenate([pad(p.scores) for p in parts]),
            classes=np.concatenate([pad(p.classes) for p in parts]),
            counts=np.concatenate([p.counts for p in parts]),
            masks=masks,
        )


RunFn = Callable[[np.ndarray], Detections]


class Detector:
    """A loaded detector: ``detector(batch)`` with uint8 images [B, H, W, 3] gives ``Detections``.

    ``batch_mode`` says how a batch reaches the model: ``"batched"`` in one call, or ``"tile_by_tile"``
    for a model that only takes batch 1 (``max_batch == 1``) and is fed one image per call. A batch-1
    model loaded with ``batch_policy="refuse"`` stays ``"batched"`` with ``max_batch == 1`` and refuses
    larger batches instead.
    """

    def __init__(self, name: str, source: Path, format: str, run: RunFn, *, batch_mode: str = "batched",
                 max_batch: int | None = None, batch_note: str = "", backend: str = DEFAULT,
                 untrained: bool = False, device_clock: Any = None) -> None:
        if batch_mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {batch_mode!r}")
        self.name = name
        self.source = Path(source)
        self.format = format
        self.batch_mode = batch_mode
        self.max_batch = max_batch
        self.batch_note = batch_note  # why a model is limited to batch 1, for reports
        self.backend = backend  # the runtime that loaded it (odperf.backends)
        self.untrained = untrained  # random weights: its detections mean nothing (time and memory only)
        self._run = run
        self.device_clock = device_clock  # backends.base.DeviceClock where the runtime times the device

    def take_device_seconds(self) -> float | None:
        """Device seconds of the model calls since the last take (CUDA events), None where not timed (CPU)."""
        return self.device_clock.take() if self.device_clock is not None else None

    def __call__(self, batch: np.ndarray) -> Detections:
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[-1] != 3:
            shape = getattr(batch, "shape", type(batch).__name__)
            raise ModelError(f"{self.name}: expected a uint8 batch [B, H, W, 3], got {shape}")
        if batch.dtype != np.uint8:
            raise ModelError(f"{self.name}: expected uint8 images, got {batch.dtype} (zoo graphs reject floats)")
        b = batch.shape[0]
        if self.batch_mode == "tile_by_tile" and b > 1:
            return Detections.concat([self._run(batch[i : i + 1]) for i in range(b)])
        if self.max_batch is not None and b > self.max_batch:
            raise ModelError(
                f"{self.name}: takes at most batch {self.max_batch} ({self.batch_note or 'batch-1 signature'}); "
                f"got {b}. Load it with batch_policy='tile_by_tile' to run larger batches tile by tile, "
                "or re-export it with a None batch dimension."
            )
        return self._run(batch)

    def __repr__(self) -> str:
        return (f"Detector({self.name!r}, backend={self.backend!r}, format={self.format!r}, batch_mode={self.batch_mode!r}, "
                f"max_batch={self.max_batch!r}, source={str(self.source)!r})")
