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
detections of the same images: identical, it takes the reference's score (over the reference's images, so
every batch of a model states its mAP over one image set); different in one bit (a model that drops tiles
at larger batches), it is scored on its own images, so each batch shows its real mAP.
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


@dataclass
class Reference:
    """A model's detections scored over the most images so far: each image's digest, and the score."""

    images: dict[int, str]  # camera index -> digest of that image's detections and tiles seen
    score: dict[str, Any]


def _model_key(request: MeasureRequest) -> str:
    """What decides a score besides the detections and the images: model, dataset, grid, scorer."""
    return json.dumps([request.model, request.model_dir, request.dataset_root, request.dataset_split,
                       request.seed, list(request.grid), request.scorer], default=str)


def image_digests(detections: Any, timed: list[int]) -> dict[int, str]:
    """Per camera image of ``timed``: a digest of its detections (in the order they came: tile by tile,
    whatever the batch size) and of the tiles the detector ran on."""
    cams, tiles, boxes, scores, classes, seen = detections.arrays()
    out = {}
    for c in sorted(set(timed)):
        h = hashlib.sha256()
        rows = cams == c
        for array in (tiles[rows], boxes[rows], scores[rows], classes[rows], seen[seen[:, 0] == c]):
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        out[c] = h.hexdigest()
    return out


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

    def same_as_reference(self, request: MeasureRequest, digests: dict[int, str]) -> dict[str, Any] | None:
        """The reference's score when it covers every image of ``digests`` with identical detections."""
        ref = self._references.get(_model_key(request))
        if ref is None or not digests or any(ref.images.get(c) != d for c, d in digests.items()):
            return None
        return ref.score

    def offer_reference(self, request: MeasureRequest, digests: dict[int, str], score: dict[str, Any]) -> None:
        """A scored case becomes its model's reference when it covers more images than the reference."""
        key = _model_key(request)
        ref = self._references.get(key)
        if ref is None or len(digests) > len(ref.images):
            self._references[key] = Reference(dict(digests), score)

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
    detections identical to the model's reference on every image timed (``checked_images``: how many)."""
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
    digests = image_digests(detections, timed)
    known = cache.same_as_reference(request, digests)
    if known is not None:  # identical detections on every image it timed: the reference's wider score
        return {**known, "reused_from_batch": known["scored_batch"], "checked_images": len(digests)}
    score = _score(request, detections, timed)
    cache.put(key, score)
    cache.offer_reference(request, digests, score)
    return score


def _score(request: MeasureRequest, detections: Any, timed: list[int]) -> dict[str, Any]:
    from odperf.engine.worker import open_camera_set

    score = detections.evaluate(open_camera_set(request, request.camera_grid), camera_indices=timed,
                                scorer=request.scorer).to_record()
    score["scored_batch"] = request.batch_size
    score["scored_images"] = len(set(timed))
    return score
