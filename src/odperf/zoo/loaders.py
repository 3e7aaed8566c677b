"""Load any detector odperf can run, chosen by what is on disk, behind the one ``Detector`` interface.

Formats (see ``odperf.zoo.detector.FORMATS``):
- ``frozen_inference_graph.pb`` (TF1 zoo): ``image_tensor:0`` in, the four detection tensors out;
- a TF1 saved_model (``serving_default``, input key ``inputs``);
- a TF2 SavedModel (``serving_default``, input ``input_tensor``), including odperf's embedded detectors.
A TF1 tarball folder holds both a frozen graph and a saved_model/: the frozen graph wins, because batches
larger than one work there.

The batch-1 trap: TF2 zoo signatures take batch 1 only, and a model may accept a larger batch while
processing only its first image. So a model is limited to batch 1 when its declared input batch is 1 or
when a probe fails: a batch of two different tiles must give two results equal to the one-by-one results.
Such a model runs tile by tile (the default) or refuses batches > 1 (``batch_policy="refuse"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odperf.errors import ModelError
from odperf.zoo.detector import Detections, Detector
from odperf.zoo.outputs import OutputMap, named_outputs
from odperf.zoo.registry import ModelSpec, get, require_local

BATCH_POLICIES = ("tile_by_tile", "refuse")
FROZEN_GRAPH = "frozen_inference_graph.pb"
SAVED_MODEL = "saved_model.pb"
PROBE_TILE = 300  # the workload's tile edge; the probe feeds what the suite will feed
PROBE_ATOL = 1e-3  # normalized box coordinates and scores; batched kernels may round differently


def load_detector(ref: str | Path | ModelSpec, model_dir: str | Path | None = None,
                  batch_policy: str = "tile_by_tile", probe: bool = True) -> Detector:
    """Load a registry model (name or spec) or an exported detector (folder or .pb file).

    ``model_dir`` holds extracted zoo tarballs (default: ``ODPERF_MODEL_DIR``, then the user cache); a
    registry model that is not there raises ``ModelMissing`` with the fetch command. ``probe`` runs the
    batch-of-two check described in the module docstring (a few model calls on 300x300 tiles).
    """
    if batch_policy not in BATCH_POLICIES:
        raise ValueError(f"batch_policy must be one of {BATCH_POLICIES}, got {batch_policy!r}")
    name, path = _resolve(ref, model_dir)
    fmt, artifact = find_artifact(path)
    if fmt == "tf1_frozen_graph":
        run, declared_batch = _load_frozen_graph(artifact)
    else:
        run, declared_batch, fmt = _load_saved_model(artifact)

    note = ""
    if declared_batch == 1:
        note = "its signature declares input batch 1"
    elif declared_batch is not None:
        note = f"its signature declares a fixed input batch of {declared_batch}"
    if probe:
        _check_runs(run, name, artifact)
        if not note:
            note = _probe_batching(run)
    limited = bool(note)
    return Detector(
        name=name, source=artifact, format=fmt, run=run,
        batch_mode="tile_by_tile" if limited and batch_policy == "tile_by_tile" else "batched",
        max_batch=1 if limited else None, batch_note=note,
    )


# --- finding the artifact -----------------------------------------------------------------------
def _resolve(ref: str | Path | ModelSpec, model_dir: str | Path | None) -> tuple[str, Path]:
    if isinstance(ref, ModelSpec):
        return ref.name, require_local(ref, model_dir)
    if isinstance(ref, Path) or os.sep in str(ref) or str(ref).endswith(".pb") or Path(ref).exists():
        path = Path(ref).expanduser()
        label = path.parent.name if path.is_file() or path.suffix == ".pb" else path.name
        if label == "saved_model":
            label = path.parent.name if path.is_dir() else path.parent.parent.name
        return label or str(path), path
    spec = get(str(ref))
    return spec.name, require_local(spec, model_dir)


def find_artifact(path: Path) -> tuple[str, Path]:
    """(format, file or folder) of the detector at ``path``; the frozen graph wins over saved_model/."""
    if path.is_file():
        if path.name == SAVED_MODEL:
            return "saved_model", path.parent
        if path.suffix == ".pb":
            return "tf1_frozen_graph", path
        raise ModelError(f"{path}: not a model file (expected {FROZEN_GRAPH} or a SavedModel folder)")
    if not path.exists():
        raise ModelError(f"{path}: no such model file or folder")
    if (path / FROZEN_GRAPH).exists():
        return "tf1_frozen_graph", path / FROZEN_GRAPH
    for folder in (path, path / "saved_model"):
        if (folder / SAVED_MODEL).exists():
            return "saved_model", folder
    found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
    raise ModelError(
        f"{path}: holds no detector (expected {FROZEN_GRAPH}, {SAVED_MODEL} or saved_model/{SAVED_MODEL}; "
        f"found {found})"
    )


def _refetch_hint(path: Path) -> str:
    return f"fetch it again with `odperf zoo fetch NAME` (or re-export it into {path.parent})"


def _read_nonempty(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    if not data:
        raise ModelError(f"{path} is empty (interrupted download?) - {_refetch_hint(path)}")
    return data


# --- TF1 frozen graph ---------------------------------------------------------------------------
FROZEN_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def _load_frozen_graph(pb: Path) -> tuple[Callable[[np.ndarray], Detections], int | None]:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    data = _read_nonempty(pb, "a frozen graph")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{pb.name} is not a TensorFlow GraphDef (truncated download?) - "
                         f"{_refetch_hint(pb)}. File: {pb}") from exc
    nodes = {n.name for n in graph_def.node}
    if not nodes:
        raise ModelError(f"{pb} holds an empty graph (not a TensorFlow GraphDef?) - {_refetch_hint(pb)}")
    missing = [f"{n}:0" for n in ("image_tensor", *FROZEN_OUTPUTS) if n not in nodes]
    if missing:
        raise ModelError(
            f"{pb}: the graph has no tensor {', '.join(missing)}; an object-detection export takes "
            "image_tensor:0 (uint8 [B,H,W,3]) and gives detection_boxes/scores/classes and num_detections"
        )
    fetch = list(FROZEN_OUTPUTS) + (["detection_masks"] if "detection_masks" in nodes else [])

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(_import, [])
        image = wrapped.graph.get_tensor_by_name("image_tensor:0")
        outputs = [wrapped.graph.get_tensor_by_name(f"{n}:0") for n in fetch]
        fn = wrapped.prune(image, outputs)
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ModelError(f"{pb}: the graph does not import under TensorFlow {tf.__version__}: {exc}") from exc
    if image.dtype != tf.uint8:
        raise ModelError(f"{pb}: image_tensor:0 is {image.dtype.name}; a zoo export takes uint8 images")
    declared = image.shape[0] if image.shape.rank else None

    def run(batch: np.ndarray) -> Detections:
        values = [t.numpy() for t in fn(tf.constant(batch))]
        out = dict(zip(fetch, values))
        return Detections(out["detection_boxes"], out["detection_scores"], out["detection_classes"],
                          out["num_detections"], out.get("detection_masks"))

    return run, declared


# --- SavedModels (TF1 and TF2) ------------------------------------------------------------------
INPUT_KEYS = {"inputs": "tf1_saved_model", "input_tensor": "tf2_saved_model"}


def _saved_model_is_tf1(folder: Path) -> bool:
    """A TF1 export has no object graph; TF2 (tf.saved_model.save) always writes one."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = folder / SAVED_MODEL
    data = _read_nonempty(pb, "a SavedModel")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{SAVED_MODEL} is not a TensorFlow SavedModel (truncated download?) - "
                         f"{_refetch_hint(pb)}. File: {pb}") from exc
    if not proto.meta_graphs:
        raise ModelError(f"{pb} holds no meta graph (not a TensorFlow SavedModel?) - {_refetch_hint(pb)}")
    return len(proto.meta_graphs[0].object_graph_def.nodes) == 0


def _load_saved_model(folder: Path) -> tuple[Callable[[np.ndarray], Detections], int | None, str]:
    import tensorflow as tf

    tf1 = _saved_model_is_tf1(folder)
    try:
        loaded = tf.saved_model.load(str(folder), tags=["serve"] if tf1 else None)
    except Exception as exc:  # TF raises many types for a broken folder (variables/, assets/, protos)
        raise ModelError(f"{folder}: the SavedModel does not load ({type(exc).__name__}: {exc}); "
                         f"{_refetch_hint(folder / SAVED_MODEL)}") from exc
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelError(f"{folder}: no 'serving_default' signature (has: {', '.join(signatures) or 'none'}); "
                         "export the detector with a serving signature")
    sig = signatures["serving_default"]
    _, kwargs = sig.structured_input_signature
    key = next((k for k in INPUT_KEYS if k in kwargs), None)
    if key is None and len(kwargs) == 1:
        key = next(iter(kwargs))
    if key is None:
        raise ModelError(f"{folder}: serving_default takes {sorted(kwargs)}; expected one image input "
                         "('input_tensor' for TF2 exports, 'inputs' for TF1)")
    spec = kwargs[key]
    if spec.dtype != tf.uint8:
        raise ModelError(f"{folder}: serving_default input {key!r} is {spec.dtype.name}; expected uint8 images")
    fmt = "tf1_saved_model" if tf1 else "tf2_saved_model"
    declared = spec.shape[0] if spec.shape.rank else None
    output_map = OutputMap(named_outputs(sig.structured_outputs), folder)

    def run(batch: np.ndarray) -> Detections:
        raw = sig(**{key: tf.constant(batch)})
        return output_map.detections(raw)

    run.loaded = loaded  # type: ignore[attr-defined]  # keeps the variables alive as long as ``run``
    return run, declared, fmt


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
