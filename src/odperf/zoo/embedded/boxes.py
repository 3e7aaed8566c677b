"""Box arithmetic in TensorFlow ops, shared by the anchor-based detectors (SSD, Faster R-CNN).

Boxes are [ymin, xmin, ymax, xmax], the zoo's order, in whatever unit the caller uses (the detectors
work in input pixels and normalise only at export). Everything is batched over leading dimensions so
that target assignment runs inside the training graph on padded ground truth.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BOX_SCALE = (10.0, 10.0, 5.0, 5.0)
"""Faster R-CNN's delta scaling (ty, tx, th, tw): makes the regression targets about unit variance."""


def grid_anchors(
    feature_size: int, stride: float, sizes: tuple[float, ...], ratios: tuple[float, ...]
) -> np.ndarray:
    """Anchors of one feature level, [feature_size**2 * len(sizes) * len(ratios), 4] in pixels.

    Order is row-major over cells, then sizes, then ratios: the same order a head's
    [B, H, W, A * k] output reshapes to [B, H * W * A, k].
    """
    centers = (np.arange(feature_size, dtype=np.float32) + 0.5) * stride
    cy, cx = np.meshgrid(centers, centers, indexing="ij")
    shapes = []
    for size in sizes:
        for ratio in ratios:  # ratio = height / width, area kept at size**2
            shapes.append((size * np.sqrt(ratio), size / np.sqrt(ratio)))
    hw = np.asarray(shapes, np.float32)  # [A, 2]
    cy = cy.reshape(-1, 1)
    cx = cx.reshape(-1, 1)
    anchors = np.stack(
        [cy - hw[:, 0] / 2, cx - hw[:, 1] / 2, cy + hw[:, 0] / 2, cx + hw[:, 1] / 2], axis=-1
    )  # [HW, A, 4]
    return anchors.reshape(-1, 4).astype(np.float32)


def area(boxes: tf.Tensor) -> tf.Tensor:
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def pairwise_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of every box in ``a`` [..., N, 4] with every box in ``b`` [..., M, 4] -> [..., N, M]."""
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    ymin = tf.maximum(a[..., 0], b[..., 0])
    xmin = tf.maximum(a[..., 1], b[..., 1])
    ymax = tf.minimum(a[..., 2], b[..., 2])
    xmax = tf.minimum(a[..., 3], b[..., 3])
    inter = tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)
    union = area(a) + area(b) - inter
    return inter / tf.maximum(union, 1e-6)


def _center_size(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + h / 2, boxes[..., 1] + w / 2, h, w


def encode(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Regression targets (ty, tx, th, tw) of ``boxes`` relative to ``anchors`` (same shape)."""
    cy, cx, h, w = _center_size(boxes)
    acy, acx, ah, aw = _center_size(anchors)
    h, w = tf.maximum(h, 1e-3), tf.maximum(w, 1e-3)
    ah, aw = tf.maximum(ah, 1e-3), tf.maximum(aw, 1e-3)  # padded boxes are all zero
    return tf.stack(
        [
            BOX_SCALE[0] * (cy - acy) / ah,
            BOX_SCALE[1] * (cx - acx) / aw,
            BOX_SCALE[2] * tf.math.log(h / ah),
            BOX_SCALE[3] * tf.math.log(w / aw),
        ],
        axis=-1,
    )


def decode(deltas: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`encode`; the log-size deltas are clipped so exp() never overflows."""
    acy, acx, ah, aw = _center_size(anchors)
    cy = deltas[..., 0] / BOX_SCALE[0] * ah + acy
    cx = deltas[..., 1] / BOX_SCALE[1] * aw + acx
    limit = float(np.log(1000.0 / 16))
    h = tf.exp(tf.minimum(deltas[..., 2] / BOX_SCALE[2], limit)) * ah
    w = tf.exp(tf.minimum(deltas[..., 3] / BOX_SCALE[3], limit)) * aw
    return tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def match(
    anchors: tf.Tensor,
    gt_boxes: tf.Tensor,
    gt_valid: tf.Tensor,
    positive_iou: float,
    negative_iou: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Assign each anchor (or proposal) to a ground-truth box, batched over images.

    ``anchors`` [A, 4] or [B, A, 4]; ``gt_boxes`` [B, M, 4] padded, ``gt_valid`` [B, M] bool.
    Returns (matched index [B, A] int32, positive [B, A] bool, negative [B, A] bool). Each valid
    ground-truth box also claims its best anchor, so small or oddly shaped objects always get one.
    """
    if len(anchors.shape) == 2:
        anchors = tf.broadcast_to(anchors[None], [tf.shape(gt_boxes)[0], tf.shape(anchors)[0], 4])
    iou = pairwise_iou(anchors, gt_boxes)  # [B, A, M]
    iou = tf.where(gt_valid[:, None, :], iou, -1.0)
    best_gt = tf.argmax(iou, axis=2, output_type=tf.int32)
    best_iou = tf.reduce_max(iou, axis=2)
    positive = best_iou >= positive_iou
    negative = best_iou < negative_iou  # includes images without any ground truth (-1)
    # force-match: the anchor with the highest IoU for each valid gt box
    best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [B, M]
    n_anchors = tf.shape(iou)[1]
    forced = tf.one_hot(best_anchor, n_anchors, dtype=tf.float32) * tf.cast(gt_valid, tf.float32)[..., None]
    forced_any = tf.reduce_max(forced, axis=1) > 0  # [B, A]
    forced_gt = tf.argmax(forced, axis=1, output_type=tf.int32)
    best_gt = tf.where(forced_any, forced_gt, best_gt)
    positive = positive | forced_any
    negative = negative & ~positive
    return best_gt, positive, negative


def gather_gt(values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """``values`` [B, M, ...] picked per anchor by ``index`` [B, A] -> [B, A, ...]."""
    return tf.gather(values, index, batch_dims=1)
