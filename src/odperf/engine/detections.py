"""The detections a worker hands back for scoring: a nameless file that the parent owns.

The worker saves its detections (26 MB a car at the paper's size) after its timed rounds and exits; the
parent scores them with COCOeval, whose memory must not count as the model's. The file is created here,
without a name (``tempfile.TemporaryFile``), and passed down as an open descriptor (``/dev/fd/N``), so
that no exit path, a SIGKILL of the parent during scoring included, can leave a file behind.
"""

from __future__ import annotations

import tempfile
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


def score_detections(request: MeasureRequest, path: str | Path, timed: list[int]) -> dict[str, Any]:
    """COCO mAP of the detections a worker saved, over the camera images it timed (the caller owns ``path``)."""
    from odperf.engine.worker import open_camera_set
    from odperf.measure.accuracy import TiledDetections

    grid = request.camera_grid
    detections = TiledDetections.load(path, grid)
    if request.results_path:
        detections.write_results(request.results_path)
    return detections.evaluate(open_camera_set(request, grid), camera_indices=timed, scorer=request.scorer).to_record()
