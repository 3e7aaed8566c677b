"""Build a detector from its spec: the meta-architecture picks the class."""

from __future__ import annotations

import tensorflow as tf

from odperf.zoo.embedded.centernet import CenterNet
from odperf.zoo.embedded.faster_rcnn import FasterRCNN
from odperf.zoo.embedded.specs import TfModelSpec
from odperf.zoo.embedded.ssd import SSD

DETECTOR_CLASSES = {"centernet": CenterNet, "ssd": SSD, "faster_rcnn": FasterRCNN}


def build(spec: TfModelSpec, num_classes: int, max_detections: int = 100) -> tf.Module:
    """A fresh detector with ``losses(images, boxes, classes, valid)`` and ``detect(images, threshold)``."""
    return DETECTOR_CLASSES[spec.meta_arch](spec, num_classes, max_detections)
