"""TensorFlow's detector files: TF1 frozen graphs, TF1 SavedModels and TF2 SavedModels.

- ``frozen_inference_graph.pb`` (TF1 zoo): ``image_tensor:0`` in, the four detection tensors out;
- a TF1 saved_model (``serving_default``, input key ``inputs``);
- a TF2 SavedModel (``serving_default``, input ``input_tensor``), including odperf's embedded detectors.
A TF1 tarball folder holds both a frozen graph and a saved_model/: the frozen graph wins, because batches
larger than one work there. TF2 zoo signatures take batch 1 only: the signature's declared batch is
returned so that the generic loader (``odperf.zoo.loaders``) can run such a model tile by tile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from odperf.backends.tensorflow.outputs import MASKS, STANDARD, OutputMap, named_outputs
from odperf.errors import ModelError
from odperf.backends.contract import Detections

FROZEN_GRAPH = "frozen_inference_graph.pb"
SAVED_MODEL = "saved_model.pb"
FORMATS = ("tf1_frozen_graph", "tf1_saved_model", "tf2_saved_model")


def find_artifact(path: Path) -> tuple[str, Path] | None:
    """(format, file or folder) of the TensorFlow detector at ``path``, None when it holds none.

    A SavedModel's TF1/TF2 flavour is only known once its protobuf is read: it is reported as
    ``saved_model`` here and refined by the loader.
    """
    if path.is_file():
        if path.name == SAVED_MODEL:
            return "saved_model", path.parent
        if path.suffix == ".pb":
            return "tf1_frozen_graph", path
        return None
    if (path / FROZEN_GRAPH).exists():
        return "tf1_frozen_graph", path / FROZEN_GRAPH
    for folder in (path, path / "saved_model"):
        if (folder / SAVED_MODEL).exists():
            return "saved_model", folder
    return None


def require_detector_nodes(pb: Path, nodes: set[str]) -> None:
    """A frozen graph must hold the zoo's input and the four detection outputs; ModelError naming them if not."""
    if not nodes:
        raise ModelError(f"{pb} holds an empty graph (not a TensorFlow GraphDef?) - {_refetch_hint(pb)}")
    missing = [f"{n}:0" for n in ("image_tensor", *STANDARD) if n not in nodes]
    if missing:
        raise ModelError(
            f"{pb}: the graph has no tensor {', '.join(missing)}; an object-detection export takes "
            "image_tensor:0 (uint8 [B,H,W,3]) and gives detection_boxes/scores/classes and num_detections"
        )


def _refetch_hint(path: Path) -> str:
    return f"fetch it again with `odperf zoo fetch NAME` (or re-export it into {path.parent})"


def read_nonempty(path: Path, what: str) -> bytes:
    """The file's bytes; ModelError naming it when it cannot be read or is empty (a cut download)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    if not data:
        raise ModelError(f"{path} is empty (interrupted download or copy?) - {_refetch_hint(path)}")
    return data


# --- TF1 frozen graph ---------------------------------------------------------------------------
def load_frozen_graph(pb: Path) -> tuple[Callable[[np.ndarray], Detections], int | None]:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    data = read_nonempty(pb, "a frozen graph")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{pb.name} is not a TensorFlow GraphDef (truncated download?) - "
                         f"{_refetch_hint(pb)}. File: {pb}") from exc
    nodes = {n.name for n in graph_def.node}
    require_detector_nodes(pb, nodes)
    fetch = list(STANDARD) + ([MASKS] if MASKS in nodes else [])

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
                          out["num_detections"], out.get(MASKS))

    return run, declared


# --- SavedModels (TF1 and TF2) ------------------------------------------------------------------
INPUT_KEYS = {"inputs": "tf1_saved_model", "input_tensor": "tf2_saved_model"}


def saved_model_is_tf1(folder: Path) -> bool:
    """A TF1 export has no object graph; TF2 (tf.saved_model.save) always writes one."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = folder / SAVED_MODEL
    data = read_nonempty(pb, "a SavedModel")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{SAVED_MODEL} is not a TensorFlow SavedModel (truncated download?) - "
                         f"{_refetch_hint(pb)}. File: {pb}") from exc
    if not proto.meta_graphs:
        raise ModelError(f"{pb} holds no meta graph (not a TensorFlow SavedModel?) - {_refetch_hint(pb)}")
    return len(proto.meta_graphs[0].object_graph_def.nodes) == 0


def serving_default(folder: Path, signatures: Mapping[str, Any]) -> Any:
    """The ``serving_default`` signature among a SavedModel's, or ModelError naming those it has."""
    if "serving_default" not in signatures:
        raise ModelError(f"{folder}: no 'serving_default' signature (has: {', '.join(signatures) or 'none'}); "
                         "export the detector with a serving signature")
    return signatures["serving_default"]


def image_input(folder: Path, inputs: Mapping[str, Any]) -> str:
    """The name of the serving signature's image input: the zoo's, else its only input."""
    key = next((k for k in INPUT_KEYS if k in inputs), None)
    if key is None and len(inputs) == 1:
        key = next(iter(inputs))
    if key is None:
        raise ModelError(f"{folder}: serving_default takes {sorted(inputs)}; expected one image input "
                         "('input_tensor' for TF2 exports, 'inputs' for TF1)")
    return key


def load_saved_model(folder: Path) -> tuple[Callable[[np.ndarray], Detections], int | None, str]:
    import tensorflow as tf

    tf1 = saved_model_is_tf1(folder)
    try:
        loaded = tf.saved_model.load(str(folder), tags=["serve"] if tf1 else None)
    except Exception as exc:  # TF raises many types for a broken folder (variables/, assets/, protos)
        raise ModelError(f"{folder}: the SavedModel does not load ({type(exc).__name__}: {exc}); "
                         f"{_refetch_hint(folder / SAVED_MODEL)}") from exc
    sig = serving_default(folder, getattr(loaded, "signatures", {}))
    _, kwargs = sig.structured_input_signature
    key = image_input(folder, kwargs)
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
