"""Load any detector odperf can run, whatever its runtime, behind the one ``Detector`` interface.

The runtime that reads a model is chosen by what is on disk (``odperf.backends.find_artifact``) or by the
registry entry; the checks below are the same for every runtime.

The batch-1 trap: TF2 zoo signatures take batch 1 only, and a model may accept a larger batch while
processing only its first image. So a model is limited to batch 1 when its declared input batch is 1 or
when a probe fails: a batch of two different tiles must give two results equal to the one-by-one results.
Such a model runs tile by tile (the default) or refuses batches > 1 (``batch_policy="refuse"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from odperf.errors import ModelError
from odperf.backends.contract import Detections, Detector
from odperf.zoo.registry import ModelSpec, get, looks_like_path, path_model_name, require_local

BATCH_POLICIES = ("tile_by_tile", "refuse")
PROBE_TILE = 300  # the workload's tile edge; the probe feeds what the suite will feed
PROBE_ATOL = 1e-3  # normalized box coordinates and scores; batched kernels may round differently


def load_detector(ref: str | Path | ModelSpec, model_dir: str | Path | None = None,
                  batch_policy: str = "tile_by_tile", probe: bool = True) -> Detector:
    """Load a registry model (name or spec) or an exported detector (folder or file) with its runtime.

    ``model_dir`` holds extracted zoo tarballs (default: ``ODPERF_MODEL_DIR``, then the user cache); a
    registry model that is not there raises ``ModelMissing`` with the fetch command. The runtime must
    have been started (``Backend.start``) in this process. ``probe`` runs the batch-of-two check
    described in the module docstring (a few model calls on 300x300 tiles).
    """
    if batch_policy not in BATCH_POLICIES:
        raise ValueError(f"batch_policy must be one of {BATCH_POLICIES}, got {batch_policy!r}")
    from odperf.backends import get_backend

    name, spec, backend, fmt, artifact = resolve(ref, model_dir)
    loaded = get_backend(backend).load(fmt, artifact, spec)
    run = loaded.run
    declared_batch = loaded.declared_batch
    note = ""
    if declared_batch == 1:
        note = "its signature declares input batch 1"
    elif declared_batch is not None:
        note = f"its signature declares a fixed input batch of {declared_batch}"
    if probe:
        _check_runs(run, name, loaded.source)
        if not note:
            note = _probe_batching(run)
    limited = bool(note)
    return Detector(
        name=name, source=loaded.source, format=loaded.format, run=run,
        batch_mode="tile_by_tile" if limited and batch_policy == "tile_by_tile" else "batched",
        max_batch=1 if limited else None, batch_note=note, backend=backend, untrained=loaded.untrained,
        device_clock=loaded.device_clock,
    )


# --- finding the artifact -----------------------------------------------------------------------
def resolve(ref: str | Path | ModelSpec, model_dir: str | Path | None) -> tuple[str, ModelSpec | None, str, str, Path]:
    """(name, registry spec or None, backend, format, artifact) of a model reference; no framework import."""
    from odperf import backends

    if isinstance(ref, ModelSpec) or not (isinstance(ref, Path) or looks_like_path(str(ref))):
        spec = get(ref) if not isinstance(ref, ModelSpec) else ref
        folder = require_local(spec, model_dir)
        if spec.architecture is not None:  # the runtime builds it; ``folder`` may hold the user's weights
            return spec.name, spec, spec.backend, "architecture", folder
        found = backends.get_backend(spec.backend).find_artifact(folder)
        if found is None:
            raise ModelError(f"model {spec.name}: {folder} holds no {spec.backend} detector")
        return spec.name, spec, spec.backend, *found
    path = Path(ref).expanduser()
    backend, fmt, artifact = backends.find_artifact(path)
    return path_model_name(path), None, backend, fmt, artifact


# --- the batch probe ----------------------------------------------------------------------------
def probe_tiles(n: int = 2, size: int = PROBE_TILE) -> np.ndarray:
    """``n`` different, deterministic uint8 tiles: a colour gradient and a bright block each."""
    rng = np.random.default_rng(20190101)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tiles = np.empty((n, size, size, 3), dtype=np.uint8)
    q = size // 4
    for i in range(n):
        c0, c1 = rng.uniform(20, 235, size=(2, 3))
        tile = c0 + (c1 - c0) * ((x + y) / 2)[..., None]
        top, left = rng.integers(0, size - q, size=2)
        tile[top : top + q, left : left + q] = rng.uniform(150, 255, size=3)
        tiles[i] = tile.clip(0, 255).astype(np.uint8)
    return tiles


def _check_runs(run: Callable[[np.ndarray], Detections], name: str, source: Path) -> None:
    try:
        run(probe_tiles(1))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{name} ({source}): fails on a {PROBE_TILE}x{PROBE_TILE} tile: "
                         f"{type(exc).__name__}: {exc}") from exc


def _probe_batching(run: Callable[[np.ndarray], Detections]) -> str:
    """'' when a batch of two matches one-by-one results; else why the model must run tile by tile."""
    tiles = probe_tiles(2)
    try:
        both = run(tiles)
    except Exception as exc:  # a signature that binds batch 1 rejects the call
        return f"a batch of 2 fails ({type(exc).__name__})"
    if len(both) != 2 or both.boxes.shape[0] != 2:
        return f"a batch of 2 gives {both.boxes.shape[0]} result(s)"
    for i in range(2):
        alone = run(tiles[i : i + 1])
        if not _same(both.image(i), alone):
            return f"image {i + 1} of a batch of 2 differs from the same image alone"
    return ""


def _same(a: Detections, b: Detections) -> bool:
    """Same detections for one image, up to kernel rounding: near-tied scores may swap slots, and a
    detection sitting on the score threshold may come and go, so boxes are matched as sets."""
    ca, cb = int(a.counts[0]), int(b.counts[0])
    slack = max(1, min(ca, cb) // 50)
    if abs(ca - cb) > slack:
        return False
    k = max(min(ca, cb) - slack, 0) if ca != cb else ca
    sa, sb = np.sort(a.scores[0, :ca])[::-1][:k], np.sort(b.scores[0, :cb])[::-1][:k]
    if not np.allclose(sa, sb, atol=PROBE_ATOL):
        return False
    order = np.argsort(-a.scores[0, :ca], kind="stable")[:k]
    boxes_b, classes_b = b.boxes[0, :cb], b.classes[0, :cb]
    for i in order:
        close = np.all(np.abs(boxes_b - a.boxes[0, i]) <= PROBE_ATOL, axis=1) & (classes_b == a.classes[0, i])
        if not close.any():
            return False
    return True


def describe(detector: Detector) -> dict[str, Any]:
    """Plain facts about a loaded detector, for ``odperf zoo info`` and run records."""
    return {"name": detector.name, "format": detector.format, "source": str(detector.source),
            "batch_mode": detector.batch_mode, "max_batch": detector.max_batch, "batch_note": detector.batch_note}
