"""The detections a worker hands back for scoring: a nameless file that the parent owns.

The worker saves its detections (26 MB a car at the paper's size) after its timed rounds and exits; the
parent scores them with COCOeval, whose memory must not count as the model's. The file is created here,
without a name (``tempfile.TemporaryFile``), and passed down as an open descriptor (``/dev/fd/N``), so
that no exit path, a SIGKILL of the parent during scoring included, can leave a file behind.

Scored once: a model's detections are usually the same at every batch size. Before scoring, the detections
are hashed with everything else that decides the score (model, dataset, images, scorer); a hash already
scored in this process gives its figures again, marked ``reused_from_batch``. Detections that differ in
one bit (a model that drops tiles at larger batches) are scored on their own, so each batch shows its real mAP.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

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


class ScoreCache:
    """The scores computed in this process, by a hash of what decides them; the newest ``size`` kept."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._scores: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @staticmethod
    def key(request: MeasureRequest, detections: Any, timed: list[int]) -> str:
        h = hashlib.sha256(json.dumps([request.model, request.model_dir, request.dataset_root, request.dataset_split,
                                       request.seed, list(request.grid), request.scorer, sorted(set(timed)),
                                       detections.repairs.to_json()], default=str).encode())
        for array in detections.arrays():
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(array.tobytes())
        return h.hexdigest()

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
    detections identical to ones already scored take that score (``reused_from_batch``) instead."""
    from odperf.engine.worker import open_camera_set
    from odperf.measure.accuracy import TiledDetections

    grid = request.camera_grid
    detections = TiledDetections.load(path, grid)
    if request.results_path:
        detections.write_results(request.results_path)
    key = cache.key(request, detections, timed) if cache is not None else None
    known = cache.get(key) if cache is not None and key is not None else None
    if known is not None:
        return {**known, "reused_from_batch": known["scored_batch"]}
    score = detections.evaluate(open_camera_set(request, grid), camera_indices=timed, scorer=request.scorer).to_record()
    score["scored_batch"] = request.batch_size
    if cache is not None and key is not None:
        cache.put(key, score)
    return score
