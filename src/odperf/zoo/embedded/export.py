"""Export a trained detector as a TF2 SavedModel with the TF model zoo's serving contract.

``serving_default`` takes ``input_tensor`` uint8 [B, H, W, 3] of any batch size and tile size (the tile
is resized to the model's input size inside the graph) and returns ``detection_boxes`` [B, 100, 4]
normalised (ymin, xmin, ymax, xmax), ``detection_scores`` [B, 100], ``detection_classes`` [B, 100]
(float, the dataset's own 1-based category ids) and ``num_detections`` [B], all float32; entries past
``num_detections`` are zero, as in the zoo's exports. Unlike the zoo's TF2 exports, batches are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from odperf.zoo.metadata import write_metadata

SAVED_MODEL_DIR = "saved_model"
SCORE_THRESHOLD = 0.02


class Serving(tf.Module):
    """The exported object: the detector's networks plus the id map and the serving function."""

    def __init__(self, detector: tf.Module, category_ids: tuple[int, ...], score_threshold: float = SCORE_THRESHOLD):
        super().__init__(name="odperf_detector")
        self.detector = detector
        self.category_ids = tf.constant([float(c) for c in category_ids], tf.float32)
        self.score_threshold = float(score_threshold)
        self.input_size = int(detector.spec.input_size)

    def detect(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        size = self.input_size
        images = tf.image.resize(tf.cast(input_tensor, tf.float32), [size, size])
        boxes, scores, classes, keep = self.detector.detect(images, self.score_threshold)
        k = tf.cast(keep, tf.float32)
        return {
            "detection_boxes": tf.clip_by_value(boxes / float(size), 0.0, 1.0) * k[..., None],
            "detection_scores": scores * k,
            "detection_classes": tf.gather(self.category_ids, classes) * k,
            "num_detections": tf.reduce_sum(k, axis=1),
        }

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(self, input_tensor):
        return self.detect(input_tensor)


def save(serving: Serving, model_dir: Path, metadata: dict[str, Any]) -> Path:
    """Write ``model_dir/saved_model`` and ``model_dir/odperf_model.json``; return the SavedModel path."""
    model_dir = Path(model_dir)
    path = model_dir / SAVED_MODEL_DIR
    tf.saved_model.save(serving, str(path), signatures={"serving_default": serving.serve})
    write_metadata(model_dir, metadata)
    return path




def flops_per_tile(serving: Serving, tile: int = 300) -> int:
    """Floating-point operations for one tile, counted by TensorFlow's profiler on the serving graph.

    The profiler sums the registered FLOP statistics of each op (convolutions, matmuls, element-wise
    ops; 2 per multiply-add) in the graph traced for a [1, tile, tile, 3] input.
    """
    fn = tf.function(serving.detect).get_concrete_function(tf.TensorSpec([1, tile, tile, 3], tf.uint8))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=fn.graph, options=opts)
    return int(info.total_float_ops)


def parameter_count(detector: tf.Module) -> int:
    """Trainable weights (BatchNorm moving statistics excluded, as the zoo's tables count them)."""
    return int(sum(int(np.prod(v.shape)) for v in detector.trainable))
