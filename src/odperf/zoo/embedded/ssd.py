"""SSD with a feature pyramid and focal loss (RetinaNet, which the zoo also files under meta-arch "ssd").

Anchors on four pyramid levels (strides 8 to 64), one shared class head and one shared box head over
all levels, sigmoid focal loss so no hard-negative mining is needed, and batched
``tf.image.combined_non_max_suppression`` per class at the end.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from odperf.zoo.embedded import boxes as bx
from odperf.zoo.embedded.backbone import backbone, conv_bn, fpn, input_layer, preprocess
from odperf.zoo.embedded.losses import focal_loss, huber
from odperf.zoo.embedded.specs import TfModelSpec

PRIOR = 0.01
PRE_NMS = 1000
NMS_IOU = 0.5


def level_sizes(input_size: int, strides) -> dict[int, int]:
    """Feature-map side per stride for 'same' padding: ceil division at every halving."""
    sizes, side = {}, input_size
    for stride in (2, 4, 8, 16, 32, 64, 128):
        side = -(-side // 2)
        sizes[stride] = side
    return {s: sizes[s] for s in strides}


class SSD(tf.Module):
    def __init__(self, spec: TfModelSpec, num_classes: int, max_detections: int = 100):
        super().__init__(name=spec.name)
        self.spec = spec
        self.num_classes = num_classes
        self.max_detections = max_detections
        strides = tuple(sorted(spec.anchors))
        per_cell = {s: len(spec.anchors[s]) for s in strides}
        if len(set(per_cell.values())) != 1:
            raise ValueError("ssd: every level needs the same number of anchors (shared heads)")
        n_anchors = per_cell[strides[0]]
        image = input_layer(spec.input_size)
        feats = backbone(preprocess(image), spec.widths, spec.depths)
        top = max(feats)
        pyramid = fpn(feats, tuple(s for s in strides if s <= top), spec.neck_width)
        x = pyramid[top]
        for s in strides:  # extra coarse levels beyond the backbone, as SSD adds them
            if s > top:
                x = conv_bn(x, spec.neck_width, stride=2, name=f"extra{s}")
                pyramid[s] = x
        init = keras.initializers.RandomNormal(stddev=0.01)
        cls_convs = [layers.Conv2D(spec.head_width, 3, padding="same", activation="relu",
                                   kernel_initializer=init, name=f"cls_conv{i}") for i in range(2)]
        box_convs = [layers.Conv2D(spec.head_width, 3, padding="same", activation="relu",
                                   kernel_initializer=init, name=f"box_conv{i}") for i in range(2)]
        cls_out = layers.Conv2D(n_anchors * num_classes, 3, padding="same", kernel_initializer=init,
                                bias_initializer=keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR)),
                                name="cls_out")
        box_out = layers.Conv2D(n_anchors * 4, 3, padding="same", kernel_initializer=init, name="box_out")
        cls_all, box_all = [], []
        for s in strides:
            c = pyramid[s]
            for conv in cls_convs:
                c = conv(c)
            b = pyramid[s]
            for conv in box_convs:
                b = conv(b)
            cls_all.append(layers.Reshape((-1, num_classes), name=f"cls_flat{s}")(cls_out(c)))
            box_all.append(layers.Reshape((-1, 4), name=f"box_flat{s}")(box_out(b)))
        cls = layers.Concatenate(axis=1, name="cls")(cls_all)
        box = layers.Concatenate(axis=1, name="box")(box_all)
        self.model = keras.Model(image, [cls, box], name=spec.name)
        sides = level_sizes(spec.input_size, strides)
        self.anchors = tf.constant(
            np.concatenate([bx.grid_anchors(sides[s], s, spec.anchors[s], (1.0,)) for s in strides]),
        )

    @property
    def trainable(self) -> list:
        return self.model.trainable_variables

    def losses(self, images, gt_boxes, gt_classes, gt_valid) -> dict[str, tf.Tensor]:
        cls, box = self.model(images, training=True)
        index, positive, negative = bx.match(self.anchors, gt_boxes, gt_valid, 0.5, 0.4)
        classes = bx.gather_gt(gt_classes, index)
        targets = tf.one_hot(classes, self.num_classes) * tf.cast(positive, tf.float32)[..., None]
        care = tf.cast(positive | negative, tf.float32)[..., None]
        n_pos = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
        cls_loss = tf.reduce_sum(focal_loss(cls, targets) * care) / n_pos
        anchors = tf.broadcast_to(self.anchors[None], tf.shape(box))
        box_targets = bx.encode(bx.gather_gt(gt_boxes, index), anchors)
        box_error = tf.reduce_sum(huber(box_targets - box), axis=-1)
        box_loss = tf.reduce_sum(box_error * tf.cast(positive, tf.float32)) / n_pos
        return {"class": cls_loss, "box": box_loss}

    def detect(self, images, score_threshold: float):
        cls, box = self.model(images, training=False)
        scores = tf.sigmoid(cls)
        best = tf.reduce_max(scores, axis=-1)
        k = min(PRE_NMS, int(self.anchors.shape[0]))
        _, top = tf.math.top_k(best, k=k)
        scores = tf.gather(scores, top, batch_dims=1)
        boxes = bx.decode(tf.gather(box, top, batch_dims=1), tf.gather(self.anchors, top))
        size = float(self.spec.input_size)
        boxes = tf.clip_by_value(boxes, 0.0, size)
        return nms(boxes, scores, self.max_detections, score_threshold, size)


def nms(boxes, scores, max_detections: int, score_threshold: float, size: float):
    """Per-class batched NMS; boxes [B, N, 4] px, scores [B, N, C] -> the detect() tuple."""
    out_boxes, out_scores, out_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :] / size,
        scores,
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=NMS_IOU,
        score_threshold=score_threshold,
        pad_per_class=False,
        clip_boxes=False,
    )
    keep = tf.range(max_detections)[None, :] < valid[:, None]
    return out_boxes * size, out_scores, tf.cast(out_classes, tf.int32), keep
