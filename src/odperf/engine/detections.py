"""The detections a worker hands back for scoring: a nameless file that the parent owns.

The worker saves its detections (26 MB a car at the paper's size) after its timed rounds and exits; the
parent scores them with COCOeval, whose memory must not count as the model's. The file is created here,
without a name (``tempfile.TemporaryFile``), and passed down as an open descriptor (``/dev/fd/N``), so
that no exit path, a SIGKILL of the parent during scoring included, can leave a file behind.

Scored once: a model's detections are usually the same at every batch size. Before scoring, the detections
are hashed with everything else that decides the score (model, dataset, images, scorer); a hash already
scored in this process gives its figures again, marked ``reused_from_batch``. A case that timed fewer
images than the model's reference (the case of that model scored over the most images: a run that chooses
its images per case times the reference to the ceiling) is checked image by image against the reference's
detections of the same images: the same (tiles, classes, and boxes and scores up to a batched kernel's
rounding), it takes the reference's score (over the reference's images, so every batch of a model states
its mAP over one image set); a tile dropped or a detection more or less (a model that drops tiles at larger
batches), it is scored on its own images, so each batch shows its real mAP.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odperf.engine.request import MeasureRequest


def fd_path(fd: int) -> str:
    """A path that opens the file behind ``fd``, here and in a child given the same descriptor."""
    return f"/dev/fd/{fd}"


class DetectionsFile:
    """One worker's detections file: ``fd`` goes to the worker (``pass_fds``), ``path`` in its request."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="odperf-detections-", suffix=".npz")

    @property
    def fd(self) -> int:
        return self._file.fileno()

    @property
    def path(self) -> str:
        return fd_path(self.fd)

    def score(self, request: MeasureRequest, timed: list[int]) -> dict[str, Any]:
        return score_detections(request, self.path, timed)

    def close(self) -> None:
        self._file.close()  # nameless: closing frees it


BOX_ATOL_PX = 0.01  # two detections of one tile agree when their boxes differ by at most this (camera pixels)
SCORE_ATOL = 1e-4  # ... and their scores by at most this: a batched kernel's rounding, not another answer


@dataclass
class Reference:
    """A model's detections scored over the most images so far, kept per camera image, and the score."""

    images: dict[int, tuple[np.ndarray, ...]]  # camera index -> its detections and tiles seen (``per_image``)
    score: dict[str, Any]


def _model_key(request: MeasureRequest) -> str:
    """What decides a score besides the detections and the images: model, dataset, grid, scorer."""
    return json.dumps([request.model, request.model_dir, request.dataset_root, request.dataset_split,
                       request.seed, list(request.grid), request.scorer], default=str)


def per_image(detections: Any, timed: list[int]) -> dict[int, tuple[np.ndarray, ...]]:
    """Per camera image of ``timed``: its detections' tiles, boxes, scores and classes (in the order they
    came: tile by tile, whatever the batch size) and the tiles the detector ran on."""
    cams, tiles, boxes, scores, classes, seen = detections.arrays()
    return {c: (tiles[cams == c], boxes[cams == c], scores[cams == c], classes[cams == c], seen[seen[:, 0] == c])
            for c in sorted(set(timed))}


def same_detections(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    """One camera image's detections agree: the same tiles, classes and tiles seen, boxes and scores equal
    up to a batched kernel's rounding (PyTorch's batched convolutions round differently from batch 1's). A
    tile dropped or a detection more or less at any batch is a difference."""
    (ta, ba, sa, ca, seen_a), (tb, bb, sb, cb, seen_b) = a, b
    if ta.shape != tb.shape or seen_a.shape != seen_b.shape:
        return False
    return bool((ta == tb).all() and (ca == cb).all() and (seen_a == seen_b).all()
                and np.allclose(ba, bb, rtol=0, atol=BOX_ATOL_PX) and np.allclose(sa, sb, rtol=0, atol=SCORE_ATOL))


class ScoreCache:
    """The scores computed in this process, by a hash of what decides them (the newest ``size`` kept), and
    each model's reference (``Reference``)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._scores: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._references: dict[str, Reference] = {}

    @staticmethod
    def key(request: MeasureRequest, detections: Any, timed: list[int]) -> str:
        h = hashlib.sha256(json.dumps([_model_key(request), sorted(set(timed)), detections.repairs.to_json()],
                                      default=str).encode())
        for array in detections.arrays():
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(array.tobytes())
        return h.hexdigest()

    def same_as_reference(self, request: MeasureRequest, images: dict[int, tuple[np.ndarray, ...]]
                          ) -> dict[str, Any] | None:
        """The reference's score when it covers every image of ``images`` with the same detections."""
        ref = self._references.get(_model_key(request))
        if ref is None or not images or any(c not in ref.images or not same_detections(ref.images[c], d)
                                            for c, d in images.items()):
            return None
        return ref.score

    def offer_reference(self, request: MeasureRequest, images: dict[int, tuple[np.ndarray, ...]],
                        score: dict[str, Any]) -> None:
        """A scored case becomes its model's reference when it covers more images than the reference."""
        key = _model_key(request)
        ref = self._references.get(key)
        if ref is None or len(images) > len(ref.images):
            self._references[key] = Reference(dict(images), score)

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._scores.get(key)
        if found is not None:
            self._scores.move_to_end(key)
        return found

    def put(self, key: str, score: dict[str, Any]) -> None:
        self._scores[key] = score
        while len(self._scores) > self.size:
            self._scores.popitem(last=False)


SCORES = ScoreCache()


def score_detections(request: MeasureRequest, path: str | Path, timed: list[int],
                     cache: ScoreCache | None = SCORES) -> dict[str, Any]:
    """COCO mAP of the detections a worker saved, over the camera images it timed (the caller owns ``path``);
    detections identical to ones already scored take that score (``reused_from_batch``) instead, and so do
    detections the same as the model's reference's on every image timed (``checked_images``: how many), where
    the request asks for that (``against_reference``)."""
    from odperf.measure.accuracy import TiledDetections

    grid = request.camera_grid
    detections = TiledDetections.load(path, grid)
    if request.results_path:
        detections.write_results(request.results_path)
    if cache is None:
        return _score(request, detections, timed)
    key = cache.key(request, detections, timed)
    known = cache.get(key)
    if known is not None:
        return {**known, "reused_from_batch": known["scored_batch"]}
    images = per_image(detections, timed) if request.against_reference else {}
    known = cache.same_as_reference(request, images) if images else None
    if known is not None:  # the same detections on every image it timed: the reference's wider score
        return {**known, "reused_from_batch": known["scored_batch"], "checked_images": len(images)}
    score = _score(request, detections, timed)
    cache.put(key, score)
    if images:
        cache.offer_reference(request, images, score)
    return score


def _score(request: MeasureRequest, detections: Any, timed: list[int]) -> dict[str, Any]:
    from odperf.engine.worker import open_camera_set

    score = detections.evaluate(open_camera_set(request, request.camera_grid), camera_indices=timed,
                                scorer=request.scorer).to_record()
    score["scored_batch"] = request.batch_size
    score["scored_images"] = len(set(timed))
    return score
