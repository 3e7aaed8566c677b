"""Tiny detectors exported in each zoo format, for the loader tests (no zoo download can happen here).

Every artifact computes the same toy detector (``toy_reference`` is its numpy twin): two boxes per image
placed from the image's mean colour, scores from its brightness, classes 1 and 3. Different images give
different detections, so a model that answers for the first image only is caught.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def toy_reference(images: np.ndarray) -> dict[str, np.ndarray]:
    x = images.astype(np.float32) / 255.0
    m = x.mean(axis=(1, 2))  # [B, 3]
    b = images.shape[0]
    cy, cx, h = m[:, 0], m[:, 1], 0.1 + 0.3 * m[:, 2]
    box1 = np.stack([cy - h / 2, cx - h / 2, cy + h / 2, cx + h / 2], -1)
    box2 = np.stack([cy * 0.5, cx * 0.5, cy * 0.5 + h, cx * 0.5 + h], -1)
    bright = m.mean(axis=1)
    return {
        "detection_boxes": np.stack([box1, box2], 1),
        "detection_scores": np.stack([0.5 + 0.5 * bright, 0.25 + 0.5 * bright], 1),
        "detection_classes": np.tile(np.array([[1.0, 3.0]], np.float32), (b, 1)),
        "num_detections": np.full((b,), 2.0, np.float32),
    }


def toy_ops(image: tf.Tensor, gain: tf.Tensor | float = 1.0) -> dict[str, tf.Tensor]:
    """The toy detector as TensorFlow ops (graph or eager); ``gain`` lets a variable take part."""
    x = tf.cast(image, tf.float32) / 255.0 * gain
    m = tf.reduce_mean(x, axis=[1, 2])
    cy, cx, h = m[:, 0], m[:, 1], 0.1 + 0.3 * m[:, 2]
    box1 = tf.stack([cy - h / 2, cx - h / 2, cy + h / 2, cx + h / 2], -1)
    box2 = tf.stack([cy * 0.5, cx * 0.5, cy * 0.5 + h, cx * 0.5 + h], -1)
    bright = tf.reduce_mean(m, axis=1)
    b = tf.shape(image)[0]
    return {
        "detection_boxes": tf.stack([box1, box2], 1),
        "detection_scores": tf.stack([0.5 + 0.5 * bright, 0.25 + 0.5 * bright], 1),
        "detection_classes": tf.tile(tf.constant([[1.0, 3.0]]), [b, 1]),
        "num_detections": tf.fill([b], 2.0),
    }


def _tf1_graph(input_name: str, outputs: tuple[str, ...] = OUTPUT_NAMES, masks: bool = False):
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name=input_name)
        gain = tf.compat.v1.get_variable("gain", initializer=tf.constant(1.0))
        ops = toy_ops(image, gain)
        if masks:  # box-relative 15x15 masks, as the zoo's Mask R-CNN exports give
            level = ops["detection_scores"][:, :, None, None]
            ops["detection_masks"] = tf.tile(level, [1, 1, 15, 15])
            outputs = (*outputs, "detection_masks")
        named = {n: tf.identity(ops[n], name=n) for n in outputs}
    return graph, image, named


def write_frozen_graph(folder: Path, outputs: tuple[str, ...] = OUTPUT_NAMES, input_name: str = "image_tensor",
                       masks: bool = False) -> Path:
    """A TF1 ``frozen_inference_graph.pb`` (variables folded into constants, as the zoo ships them)."""
    folder.mkdir(parents=True, exist_ok=True)
    graph, _, named = _tf1_graph(input_name, outputs, masks)
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), list(named))
    path = folder / "frozen_inference_graph.pb"
    path.write_bytes(frozen.SerializeToString())
    return path


def write_tf1_saved_model(folder: Path) -> Path:
    """A TF1 saved_model: signature ``serving_default`` with input key ``inputs``."""
    graph, image, named = _tf1_graph("image_tensor")
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(folder))
        sig = tf.compat.v1.saved_model.predict_signature_def(inputs={"inputs": image}, outputs=named)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.save()
    return folder


class _Toy(tf.Module):
    def __init__(self, behaviour: str) -> None:
        super().__init__()
        self.gain = tf.Variable(1.0)
        self.behaviour = behaviour

    def detect(self, input_tensor: tf.Tensor):
        if self.behaviour == "first_only":  # a map_fn traced for batch 1: answers image 0 for every slot
            first = toy_ops(input_tensor[:1], self.gain)
            b = tf.shape(input_tensor)[0]
            return {k: tf.repeat(v, b, axis=0) for k, v in first.items()}
        if self.behaviour == "drops_batch":  # gives one result whatever the batch
            return toy_ops(input_tensor[:1], self.gain)
        out = toy_ops(input_tensor, self.gain)
        if self.behaviour == "unnamed":  # a tuple: the signature names its outputs output_0..output_3
            return (out["detection_boxes"], out["num_detections"], out["detection_scores"], out["detection_classes"])
        return out


def write_tf2_saved_model(folder: Path, batch: int | None = None, behaviour: str = "ok") -> Path:
    """A TF2 SavedModel with input ``input_tensor`` of batch ``batch`` (None = any).

    behaviour: ``ok``; ``first_only`` (batch dim kept, only image 0 processed); ``drops_batch`` (one
    result for any batch); ``unnamed`` (outputs come out as output_0..).
    """
    module = _Toy(behaviour)
    fn = tf.function(module.detect, input_signature=[tf.TensorSpec([batch, None, None, 3], tf.uint8, name="input_tensor")])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": fn.get_concrete_function()})
    return folder
