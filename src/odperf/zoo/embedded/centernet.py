"""CenterNet (objects as points) with TTFNet's box head, the cheapest embedded detector.

Why TTFNet's variant: plain CenterNet regresses a box only at the one centre cell of each object and
needs long schedules; TTFNet regresses distances to the four box sides at every cell of a Gaussian
around the centre, weighted by the Gaussian, with a GIoU loss, and converges several times faster,
which is what a few minutes of CPU training can afford. Decoding is peak extraction (3x3 max-pool)
and a top-k over all classes: no NMS, fully batched.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from odperf.zoo.embedded.backbone import backbone, conv_bn, fpn, input_layer, preprocess
from odperf.zoo.embedded.boxes import area
from odperf.zoo.embedded.losses import giou_loss
from odperf.zoo.embedded.specs import TfModelSpec

ALPHA = 0.54  # Gaussian radius as a fraction of the box side (TTFNet)
DISTANCE_SCALE = 16.0  # distances = softplus(raw) * 16 px, so the initial boxes are object-sized
HEAT_PRIOR = 0.01


class CenterNet(tf.Module):
    def __init__(self, spec: TfModelSpec, num_classes: int, max_detections: int = 100):
        super().__init__(name=spec.name)
        self.spec = spec
        self.num_classes = num_classes
        self.max_detections = max_detections
        image = input_layer(spec.input_size)
        feats = backbone(preprocess(image), spec.widths, spec.depths)
        strides = tuple(s for s in feats if s >= spec.out_stride)
        p = fpn(feats, strides, spec.neck_width)[spec.out_stride]
        h = conv_bn(p, spec.head_width, name="heat_head")
        heat = layers.Conv2D(
            num_classes, 1, name="heat",
            bias_initializer=keras.initializers.Constant(-math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)),
        )(h)
        r = conv_bn(p, spec.head_width, name="box_head")
        dist = layers.Conv2D(4, 1, name="distances")(r)
        self.model = keras.Model(image, [heat, dist], name=spec.name)

    @property
    def trainable(self) -> list:
        return self.model.trainable_variables

    def _locations(self, height: int, width: int) -> tf.Tensor:
        s = float(self.spec.out_stride)
        ys = (tf.range(height, dtype=tf.float32) + 0.5) * s
        xs = (tf.range(width, dtype=tf.float32) + 0.5) * s
        return tf.stack(tf.meshgrid(ys, xs, indexing="ij"), axis=-1)  # [H, W, 2]

    def _boxes(self, dist: tf.Tensor) -> tf.Tensor:
        """[B, H, W, 4] raw distances (top, left, bottom, right) -> boxes in input pixels."""
        d = tf.nn.softplus(dist) * DISTANCE_SCALE
        loc = self._locations(tf.shape(dist)[1], tf.shape(dist)[2])[None]
        return tf.concat([loc - d[..., :2], loc + d[..., 2:]], axis=-1)

    def losses(self, images, gt_boxes, gt_classes, gt_valid) -> dict[str, tf.Tensor]:
        heat_logits, dist = self.model(images, training=True)
        height, width = tf.shape(heat_logits)[1], tf.shape(heat_logits)[2]
        s = float(self.spec.out_stride)
        valid = tf.cast(gt_valid, tf.float32)  # [B, M]
        cy = (gt_boxes[..., 0] + gt_boxes[..., 2]) / 2
        cx = (gt_boxes[..., 1] + gt_boxes[..., 3]) / 2
        bh = gt_boxes[..., 2] - gt_boxes[..., 0]
        bw = gt_boxes[..., 3] - gt_boxes[..., 1]
        ci = tf.clip_by_value(tf.floor(cy / s), 0.0, tf.cast(height - 1, tf.float32))
        cj = tf.clip_by_value(tf.floor(cx / s), 0.0, tf.cast(width - 1, tf.float32))
        sy = tf.maximum(ALPHA * bh / 6 / s, 0.3)
        sx = tf.maximum(ALPHA * bw / 6 / s, 0.3)
        ii = tf.range(height, dtype=tf.float32)[None, None, :, None]
        jj = tf.range(width, dtype=tf.float32)[None, None, None, :]
        gauss = tf.exp(
            -((ii - ci[..., None, None]) ** 2) / (2 * sy[..., None, None] ** 2)
            - ((jj - cj[..., None, None]) ** 2) / (2 * sx[..., None, None] ** 2)
        ) * valid[..., None, None]  # [B, M, H, W]
        onehot = tf.one_hot(tf.maximum(gt_classes, 0), self.num_classes) * valid[..., None]  # [B, M, C]
        target = tf.reduce_max(gauss[..., None] * onehot[:, :, None, None, :], axis=1)  # [B, H, W, C]

        p = tf.clip_by_value(tf.sigmoid(heat_logits), 1e-4, 1 - 1e-4)
        pos = tf.cast(target >= 1.0 - 1e-6, tf.float32)
        pos_loss = -tf.math.log(p) * (1 - p) ** 2 * pos
        neg_loss = -tf.math.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos)
        n_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
        heat_loss = (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n_pos

        # each cell regresses the smallest object whose Gaussian covers it
        covers = gauss > 0.05
        box_area = area(gt_boxes)
        cost = tf.where(covers, box_area[..., None, None], 1e12)
        owner = tf.argmin(cost, axis=1, output_type=tf.int32)  # [B, H, W]
        weight = tf.reduce_max(tf.where(covers, gauss, 0.0), axis=1)
        weight *= tf.cast(tf.reduce_any(covers, axis=1), tf.float32)
        # TTFNet weights by log(area) so large objects do not dominate through their many cells
        owner_area = tf.gather(box_area, owner, batch_dims=1)
        owner_gauss_sum = tf.gather(
            tf.reduce_sum(tf.where(covers, gauss, 0.0), axis=[2, 3]), owner, batch_dims=1
        )
        weight = weight * tf.math.log(tf.maximum(owner_area, 2.0)) / tf.maximum(owner_gauss_sum, 1e-6)
        target_boxes = tf.gather(gt_boxes, owner, batch_dims=1)  # [B, H, W, 4]
        pred_boxes = self._boxes(dist)
        giou = giou_loss(pred_boxes, target_boxes)
        box_loss = tf.reduce_sum(weight * giou) / tf.maximum(tf.reduce_sum(weight), 1e-6)
        return {"heatmap": heat_loss, "box": 5.0 * box_loss}

    def detect(self, images, score_threshold: float):
        """Model-size images -> boxes px [B,K,4], scores [B,K], 0-based classes [B,K], keep [B,K] (sorted)."""
        heat_logits, dist = self.model(images, training=False)
        heat = tf.sigmoid(heat_logits)
        peaks = tf.cast(tf.nn.max_pool2d(heat, 3, 1, "SAME") == heat, heat.dtype) * heat
        shape = tf.shape(heat)
        batch, height, width = shape[0], shape[1], shape[2]
        scores, index = tf.math.top_k(tf.reshape(peaks, [batch, -1]), k=self.max_detections)
        cell = index // self.num_classes
        classes = index % self.num_classes
        boxes = tf.gather(tf.reshape(self._boxes(dist), [batch, height * width, 4]), cell, batch_dims=1)
        size = float(self.spec.input_size)
        boxes = tf.clip_by_value(boxes, 0.0, size)
        return boxes, scores, classes, scores >= score_threshold

