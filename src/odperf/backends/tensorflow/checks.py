"""Cheap checks of a TensorFlow detector before any worker starts: which format, can it serve.

A run would otherwise learn of a wrong path, a truncated download or a model without a serving signature
only inside a worker, after importing TensorFlow, once per case. These checks read the files with the
protobuf runtime and a partial schema of TensorFlow's messages (the fields a check needs, with
TensorFlow's field numbers; protobuf skips the others), so they take milliseconds and never import
TensorFlow. What they cannot see (variables that do not restore, ops missing from this TensorFlow) the
worker still reports.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from odperf.backends.tensorflow.loaders import (
    SAVED_MODEL,
    image_input,
    read_nonempty,
    require_detector_nodes,
    serving_default,
)
from odperf.backends.tensorflow.outputs import OutputMap
from odperf.errors import ModelError

DT_UINT8 = 4  # tensorflow.DataType
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
          9: "int64", 10: "bool", 19: "float16"}

# message name -> [(field name, number, type, label, message type)]; types: descriptor_pb2 names
_SCHEMA: dict[str, list[tuple[str, int, str, str, str | None]]] = {
    "Dim": [("size", 1, "int64", "optional", None)],
    "TensorShape": [("dim", 2, "message", "repeated", "Dim"), ("unknown_rank", 3, "bool", "optional", None)],
    "TensorInfo": [("name", 1, "string", "optional", None), ("dtype", 2, "int32", "optional", None),
                   ("tensor_shape", 3, "message", "optional", "TensorShape")],
    "TensorEntry": [("key", 1, "string", "optional", None), ("value", 2, "message", "optional", "TensorInfo")],
    "SignatureDef": [("inputs", 1, "message", "repeated", "TensorEntry"),
                     ("outputs", 2, "message", "repeated", "TensorEntry")],
    "SignatureEntry": [("key", 1, "string", "optional", None), ("value", 2, "message", "optional", "SignatureDef")],
    "MetaInfo": [("tags", 4, "string", "repeated", None)],
    "ObjectGraph": [("nodes", 1, "bytes", "repeated", None)],
    "MetaGraph": [("meta_info_def", 1, "message", "optional", "MetaInfo"),
                  ("signature_def", 5, "message", "repeated", "SignatureEntry"),
                  ("object_graph_def", 7, "message", "optional", "ObjectGraph")],
    "SavedModel": [("meta_graphs", 2, "message", "repeated", "MetaGraph")],
    "NodeDef": [("name", 1, "string", "optional", None)],
    "GraphDef": [("node", 1, "message", "repeated", "NodeDef")],
}
_PACKAGE = "odperf.modelcheck"


@lru_cache(maxsize=None)
def _message(name: str) -> Any:
    """The protobuf class of one message of the partial schema (maps are read as repeated entries)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="odperf_modelcheck.proto", package=_PACKAGE, syntax="proto2")
    for msg_name, fields in _SCHEMA.items():
        msg = proto.message_type.add(name=msg_name)
        for field_name, number, kind, label, type_name in fields:
            f = msg.field.add(name=field_name, number=number)
            f.type = getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{kind.upper()}")
            f.label = getattr(descriptor_pb2.FieldDescriptorProto, f"LABEL_{label.upper()}")
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


def _parse(path: Path, message: str, what: str) -> Any:
    from google.protobuf.message import DecodeError

    data = read_nonempty(path, what)
    parsed = _message(message)()
    try:
        parsed.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise ModelError(f"{path} is not {what} (truncated download or copy?); fetch or export the model again") from None
    return parsed


def check(fmt: str, artifact: Path, deep: bool = True) -> str:
    """The format of the artifact ``find_artifact`` found (``tf1_frozen_graph``, ``tf1_saved_model``,
    ``tf2_saved_model``; ``saved_model`` when not ``deep``).

    ``deep=False`` stops at the files (for zoo downloads, whose size and checksum ``fetch`` verified);
    otherwise the graph or the serving signature is read too. Raises ModelError naming the file and fix.
    """
    if fmt == "tf1_frozen_graph":
        if not deep:
            return _nonempty(artifact, fmt)
        _check_frozen_graph(artifact)
        return fmt
    if not deep:
        _nonempty(artifact / SAVED_MODEL, fmt)
        return "saved_model"
    return _check_saved_model(artifact)


def _nonempty(path: Path, fmt: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror})") from None
    if size == 0:
        raise ModelError(f"{path} is empty (interrupted download?); fetch the model again")
    return fmt


def _check_frozen_graph(pb: Path) -> None:
    require_detector_nodes(pb, {n.name for n in _parse(pb, "GraphDef", "a TensorFlow GraphDef").node})


def _check_saved_model(folder: Path) -> str:
    pb = folder / SAVED_MODEL
    saved = _parse(pb, "SavedModel", "a TensorFlow SavedModel")
    if not saved.meta_graphs:
        raise ModelError(f"{pb} holds no meta graph (not a TensorFlow SavedModel?); export it again")
    meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), saved.meta_graphs[0])
    tf1 = len(meta.object_graph_def.nodes) == 0  # as the loader decides: TF2 always writes an object graph
    if tf1 and "serve" not in meta.meta_info_def.tags:
        tags = ", ".join(t for m in saved.meta_graphs for t in m.meta_info_def.tags) or "none"
        raise ModelError(f"{folder}: no meta graph tagged 'serve' (tags: {tags}); export it with the serve tag")
    # "__saved_model_init_op" is TensorFlow's own entry, not a signature a user exported
    signatures = {s.key: s.value for s in meta.signature_def if not s.key.startswith("__")}
    sig = serving_default(folder, signatures)
    inputs = {e.key: e.value for e in sig.inputs}
    key = image_input(folder, inputs)
    if inputs[key].dtype != DT_UINT8:
        dtype = DTYPES.get(inputs[key].dtype, f"DataType {inputs[key].dtype}")
        raise ModelError(f"{folder}: serving_default input {key!r} is {dtype}; expected uint8 images")
    OutputMap({e.key: e.value for e in sig.outputs}, folder)  # raises when the outputs are not a detector's
    variables = folder / "variables"
    if variables.is_dir() and any(variables.iterdir()) and not (variables / "variables.index").is_file():
        raise ModelError(f"{variables}: variables.index is missing (incomplete copy?); copy or export the model again")
    return "tf1_saved_model" if tf1 else "tf2_saved_model"


