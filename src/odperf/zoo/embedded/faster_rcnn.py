"""Faster R-CNN: a region proposal network, then a second stage on features cropped per proposal.

Stage one scores anchors on the stride-8 level of a feature pyramid and keeps the best ``proposals``
boxes per tile after NMS. Stage two crops those regions from the same feature map with
``tf.image.crop_and_resize`` (ROI align), classifies them (background + classes) and refines their
boxes. Both stages are batched over tiles: proposals are a fixed-size padded tensor per tile, so a batch
of 64 tiles is one call, and batched results equal one-by-one results.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from odperf.zoo.embedded import boxes as bx
from odperf.zoo.embedded.backbone import backbone, conv_bn, fpn, input_layer, preprocess
from odperf.zoo.embedded.specs import TfModelSpec
from odperf.zoo.embedded.losses import focal_loss, huber
from odperf.zoo.embedded.ssd import PRIOR, level_sizes, nms

RPN_PRE_NMS = 600
RPN_NMS_IOU = 0.7
FEATURE_STRIDE = 8


class FasterRCNN(tf.Module):
    def __init__(self, spec: TfModelSpec, num_classes: int, max_detections: int = 100):
        super().__init__(name=spec.name)
        self.spec = spec
        self.num_classes = num_classes
        self.max_detections = max_detections
        sizes = spec.anchors[FEATURE_STRIDE]
        image = input_layer(spec.input_size)
        feats = backbone(preprocess(image), spec.widths, spec.depths)
        strides = tuple(s for s in feats if s >= FEATURE_STRIDE)
        p = fpn(feats, strides, spec.neck_width)[FEATURE_STRIDE]
        r = conv_bn(p, spec.neck_width, name="rpn_conv")
        objectness = layers.Conv2D(len(sizes), 1, name="rpn_objectness",
                                   bias_initializer=keras.initializers.Constant(-np.log((1 - PRIOR) / PRIOR)))(r)
        deltas = layers.Conv2D(len(sizes) * 4, 1, name="rpn_deltas",
                               kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))(r)
        objectness = layers.Reshape((-1,), name="rpn_objectness_flat")(objectness)
        deltas = layers.Reshape((-1, 4), name="rpn_deltas_flat")(deltas)
        self.model = keras.Model(image, [p, objectness, deltas], name=f"{spec.name}_rpn")

        crops = keras.Input((spec.roi_size, spec.roi_size, spec.neck_width), name="roi_features")
        h = conv_bn(crops, spec.neck_width, name="roi_conv")
        h = layers.Flatten(name="roi_flat")(h)
        h = layers.Dense(spec.head_width, activation="relu", name="roi_fc1")(h)
        h = layers.Dense(spec.head_width, activation="relu", name="roi_fc2")(h)
        logits = layers.Dense(num_classes + 1, name="roi_class")(h)
        refine = layers.Dense(4, name="roi_box", kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(h)
        self.head = keras.Model(crops, [logits, refine], name=f"{spec.name}_roi_head")

        side = level_sizes(spec.input_size, (FEATURE_STRIDE,))[FEATURE_STRIDE]
        self.anchors = tf.constant(bx.grid_anchors(side, FEATURE_STRIDE, sizes, (1.0,)))

    @property
    def trainable(self) -> list:
        return self.model.trainable_variables + self.head.trainable_variables

    def _proposals(self, objectness, deltas):
        """Top anchors -> decoded, clipped, NMS'd boxes [B, P, 4] px and their validity [B, P]."""
        k = min(RPN_PRE_NMS, int(self.anchors.shape[0]))
        scores, top = tf.math.top_k(tf.sigmoid(objectness), k=k)
        boxes = bx.decode(tf.gather(deltas, top, batch_dims=1), tf.gather(self.anchors, top))
        size = float(self.spec.input_size)
        boxes = tf.clip_by_value(boxes, 0.0, size) / size
        n = self.spec.proposals
        boxes, _, _, valid = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], scores[..., None],
            max_output_size_per_class=n, max_total_size=n,
            iou_threshold=RPN_NMS_IOU, score_threshold=0.0, pad_per_class=False, clip_boxes=False,
        )
        return boxes * size, tf.range(n)[None, :] < valid[:, None]

    def _second_stage(self, features, rois, training: bool):
        """Crop ``rois`` [B, R, 4] px from ``features`` and run the head -> logits, refinement [B, R, ...]."""
        batch, n = tf.shape(rois)[0], tf.shape(rois)[1]
        # crop_and_resize maps normalised 0..1 onto the centres of the first and last feature cells
        side = tf.cast(tf.shape(features)[1], tf.float32)
        scale = float(FEATURE_STRIDE) * side
        norm = (rois - FEATURE_STRIDE / 2) / (scale - FEATURE_STRIDE)
        flat = tf.reshape(norm, [-1, 4])
        index = tf.repeat(tf.range(batch), n)
        crops = tf.image.crop_and_resize(features, flat, index, [self.spec.roi_size] * 2)
        logits, refine = self.head(crops, training=training)
        return tf.reshape(logits, [batch, n, self.num_classes + 1]), tf.reshape(refine, [batch, n, 4])

    def losses(self, images, gt_boxes, gt_classes, gt_valid) -> dict[str, tf.Tensor]:
        features, objectness, deltas = self.model(images, training=True)
        # stage one: anchors against ground truth
        index, positive, negative = bx.match(self.anchors, gt_boxes, gt_valid, 0.6, 0.3)
        pos = tf.cast(positive, tf.float32)
        care = tf.cast(positive | negative, tf.float32)
        n_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
        rpn_cls = tf.reduce_sum(focal_loss(objectness, pos) * care) / n_pos
        anchors = tf.broadcast_to(self.anchors[None], tf.shape(deltas))
        target = bx.encode(bx.gather_gt(gt_boxes, index), anchors)
        rpn_box = tf.reduce_sum(tf.reduce_sum(huber(target - deltas), -1) * pos) / n_pos
        # stage two: proposals (plus the ground truth itself, so the head sees good boxes from step one)
        proposals, valid = self._proposals(tf.stop_gradient(objectness), tf.stop_gradient(deltas))
        rois = tf.concat([proposals, gt_boxes], axis=1)
        roi_valid = tf.concat([valid, gt_valid], axis=1)
        index, positive, _ = bx.match(rois, gt_boxes, gt_valid, 0.5, 0.5)
        positive &= roi_valid
        pos = tf.cast(positive, tf.float32)
        labels = tf.where(positive, bx.gather_gt(gt_classes, index) + 1, 0)
        logits, refine = self._second_stage(features, rois, training=True)
        weight = tf.cast(roi_valid, tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        roi_cls = tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
        target = bx.encode(bx.gather_gt(gt_boxes, index), rois)
        roi_box = tf.reduce_sum(tf.reduce_sum(huber(target - refine), -1) * pos) / tf.maximum(tf.reduce_sum(pos), 1.0)
        return {"rpn_class": rpn_cls, "rpn_box": rpn_box, "roi_class": roi_cls, "roi_box": roi_box}

    def detect(self, images, score_threshold: float):
        features, objectness, deltas = self.model(images, training=False)
        proposals, valid = self._proposals(objectness, deltas)
        logits, refine = self._second_stage(features, proposals, training=False)
        scores = tf.nn.softmax(logits)[..., 1:] * tf.cast(valid, tf.float32)[..., None]
        size = float(self.spec.input_size)
        boxes = tf.clip_by_value(bx.decode(refine, proposals), 0.0, size)
        return nms(boxes, scores, self.max_detections, score_threshold, size)
