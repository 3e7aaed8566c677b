"""Loss functions of the embedded detectors (element-wise; callers weight and normalise)."""

from __future__ import annotations

import tensorflow as tf

from odperf.zoo.embedded.boxes import area


def focal_loss(logits: tf.Tensor, targets: tf.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> tf.Tensor:
    """Sigmoid focal loss (RetinaNet): easy negatives fade out, so no hard-negative mining is needed."""
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t) ** gamma * ce


def huber(x: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    a = tf.abs(x)
    return tf.where(a < delta, 0.5 * a * a, delta * (a - 0.5 * delta))


def giou_loss(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """1 - generalised IoU of matching boxes [..., 4] (ymin, xmin, ymax, xmax)."""
    inter_h = tf.maximum(tf.minimum(pred[..., 2], target[..., 2]) - tf.maximum(pred[..., 0], target[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(pred[..., 3], target[..., 3]) - tf.maximum(pred[..., 1], target[..., 1]), 0.0)
    inter = inter_h * inter_w
    union = area(pred) + area(target) - inter
    iou = inter / tf.maximum(union, 1e-6)
    hull_h = tf.maximum(pred[..., 2], target[..., 2]) - tf.minimum(pred[..., 0], target[..., 0])
    hull_w = tf.maximum(pred[..., 3], target[..., 3]) - tf.minimum(pred[..., 1], target[..., 1])
    hull = tf.maximum(hull_h * hull_w, 1e-6)
    return 1.0 - (iou - (hull - union) / hull)
