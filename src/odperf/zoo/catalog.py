"""The zoo models odperf knows by name: the paper's 22 TF1 detectors and their closest TF2 successors.

Sources: the TF1 and TF2 detection-zoo tables of tensorflow/models (tarball, reported speed in ms per
600x600 image on a GTX TITAN X, reported COCO mAP in percent), the paper's Table I (its own "mAP Tested"
on COCO val) and each model's pipeline.config (input resizer). Kept as plain rows so that the registry
logic in ``registry.py`` stays separate from the data it serves.

``tested_map`` of faster_rcnn_nas is None on purpose: the paper's text extraction garbles that cell
("57.7" next to a stray "8"), so no figure can be read from it with confidence.
"""

from __future__ import annotations

TF1_URL_BASE = "http://download.tensorflow.org/models/object_detection"
"""Where the zoo tarballs live; ``odperf zoo fetch --url-base`` swaps this prefix for a mirror."""

KEEP_ASPECT = "keep_aspect"  # input_size is (min_dimension, max_dimension) of a keep-aspect resizer
FIXED = "fixed"  # input_size is (height, width)

# name, paper id, meta_arch, feature_extractor, tarball, ms, reported mAP, tested mAP, input size,
# resizer, TF2 equivalent name, aliases (the paper's Table I spellings)
PAPER_ROWS: tuple[tuple, ...] = (
    ("ssd_mobilenet_v1", "A", "ssd", "mobilenet_v1", "ssd_mobilenet_v1_coco_2018_01_28",
     30, 21, 26.3, (300, 300), FIXED, None, ()),
    ("ssd_mobilenet_v1_0.75_depth", "B", "ssd", "mobilenet_v1_0.75_depth",
     "ssd_mobilenet_v1_0.75_depth_300x300_coco14_sync_2018_07_03",
     26, 18, 21.7, (300, 300), FIXED, None, ()),
    ("ssd_mobilenet_v1_ppn", "C", "ssd", "mobilenet_v1_ppn",
     "ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync_2018_07_03",
     26, 20, None, (300, 300), FIXED, None, ()),
    ("ssd_mobilenet_v1_fpn", "D", "ssd", "mobilenet_v1_fpn",
     "ssd_mobilenet_v1_fpn_shared_box_predictor_640x640_coco14_sync_2018_07_03",
     56, 32, None, (640, 640), FIXED, "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8", ()),
    ("ssd_resnet_50_fpn", "E", "ssd", "resnet50_v1_fpn",
     "ssd_resnet50_v1_fpn_shared_box_predictor_640x640_coco14_sync_2018_07_03",
     76, 35, None, (640, 640), FIXED, "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", ("ssd_resnet50_v1_fpn",)),
    ("ssd_mobilenet_v2", "F", "ssd", "mobilenet_v2", "ssd_mobilenet_v2_coco_2018_03_29",
     31, 22, None, (300, 300), FIXED, "ssd_mobilenet_v2_320x320_coco17_tpu-8", ()),
    ("ssdlite_mobilenet_v2", "G", "ssdlite", "mobilenet_v2", "ssdlite_mobilenet_v2_coco_2018_05_09",
     27, 22, 27.4, (300, 300), FIXED, None, ()),
    ("ssd_inception_v2", "H", "ssd", "inception_v2", "ssd_inception_v2_coco_2018_01_28",
     42, 24, 30.9, (300, 300), FIXED, None, ()),
    ("faster_rcnn_inception_v2", "I", "faster_rcnn", "inception_v2", "faster_rcnn_inception_v2_coco_2018_01_28",
     58, 28, 31.1, (600, 1024), KEEP_ASPECT, None, ("faster_rcnn_incept_v2",)),
    ("faster_rcnn_resnet50", "J", "faster_rcnn", "resnet50", "faster_rcnn_resnet50_coco_2018_01_28",
     89, 30, 34.5, (600, 1024), KEEP_ASPECT, "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8", ()),
    ("faster_rcnn_resnet50_lowprop", "K", "faster_rcnn", "resnet50",
     "faster_rcnn_resnet50_lowproposals_coco_2018_01_28",
     64, None, None, (600, 1024), KEEP_ASPECT, None, ("faster_rcnn_resnet50_lowproposals",)),
    ("rfcn_resnet101", "L", "rfcn", "resnet101", "rfcn_resnet101_coco_2018_01_28",
     92, 30, 37.3, (600, 1024), KEEP_ASPECT, None, ()),
    ("faster_rcnn_resnet101", "M", "faster_rcnn", "resnet101", "faster_rcnn_resnet101_coco_2018_01_28",
     106, 32, 40.3, (600, 1024), KEEP_ASPECT, "faster_rcnn_resnet101_v1_640x640_coco17_tpu-8", ()),
    ("faster_rcnn_resnet101_lowprop", "N", "faster_rcnn", "resnet101",
     "faster_rcnn_resnet101_lowproposals_coco_2018_01_28",
     82, None, None, (600, 1024), KEEP_ASPECT, None, ("faster_rcnn_resnet101_lowproposals",)),
    ("faster_rcnn_incept_resnet_v2_atrous", "O", "faster_rcnn", "inception_resnet_v2_atrous",
     "faster_rcnn_inception_resnet_v2_atrous_coco_2018_01_28",
     620, 37, 45.2, (600, 1024), KEEP_ASPECT, "faster_rcnn_inception_resnet_v2_640x640_coco17_tpu-8",
     ("faster_rcnn_inception_resnet_v2_atrous",)),
    ("faster_rcnn_incept_resnet_v2_atrs_low", "P", "faster_rcnn", "inception_resnet_v2_atrous",
     "faster_rcnn_inception_resnet_v2_atrous_lowproposals_coco_2018_01_28",
     241, None, None, (600, 1024), KEEP_ASPECT, None, ("faster_rcnn_inception_resnet_v2_atrous_lowproposals",)),
    ("faster_rcnn_nas", "Q", "faster_rcnn", "nas", "faster_rcnn_nas_coco_2018_01_28",
     1833, 43, None, (1200, 1200), FIXED, None, ()),
    ("faster_rcnn_nas_lowprop", "R", "faster_rcnn", "nas", "faster_rcnn_nas_lowproposals_coco_2018_01_28",
     540, None, None, (1200, 1200), FIXED, None, ("faster_rcnn_nas_lowproposals",)),
    ("mask_rcnn_incept_resnet_v2_atrous", "S", "mask_rcnn", "inception_resnet_v2_atrous",
     "mask_rcnn_inception_resnet_v2_atrous_coco_2018_01_28",
     771, 36, 45.6, (800, 1365), KEEP_ASPECT, "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8",
     ("mask_rcnn_inception_resnet_v2_atrous",)),
    ("mask_rcnn_incept_v2", "T", "mask_rcnn", "inception_v2", "mask_rcnn_inception_v2_coco_2018_01_28",
     79, 25, 32.7, (800, 1365), KEEP_ASPECT, None, ("mask_rcnn_inception_v2",)),
    ("mask_rcnn_resnet101_atrous", "U", "mask_rcnn", "resnet101_atrous", "mask_rcnn_resnet101_atrous_coco_2018_01_28",
     470, 33, 41.5, (800, 1365), KEEP_ASPECT, None, ()),
    ("mask_rcnn_resnet50_atrous", "V", "mask_rcnn", "resnet50_atrous", "mask_rcnn_resnet50_atrous_coco_2018_01_28",
     343, 29, 35.7, (800, 1365), KEEP_ASPECT, None, ()),
)

# TF2 zoo successors (COCO 2017 val mAP): name, meta_arch, feature_extractor, tarball, ms, mAP, input size
TF2_DATE = "20200711"
TF2_ROWS: tuple[tuple, ...] = (
    ("ssd_mobilenet_v2_320x320", "ssd", "mobilenet_v2", "ssd_mobilenet_v2_320x320_coco17_tpu-8",
     19, 20.2, (320, 320)),
    ("ssd_mobilenet_v1_fpn_640x640", "ssd", "mobilenet_v1_fpn", "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8",
     48, 29.1, (640, 640)),
    ("ssd_resnet50_v1_fpn_640x640", "ssd", "resnet50_v1_fpn", "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8",
     46, 34.3, (640, 640)),
    ("faster_rcnn_resnet50_v1_640x640", "faster_rcnn", "resnet50",
     "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8", 53, 29.3, (640, 640)),
    ("faster_rcnn_resnet101_v1_640x640", "faster_rcnn", "resnet101",
     "faster_rcnn_resnet101_v1_640x640_coco17_tpu-8", 55, 31.8, (640, 640)),
    ("faster_rcnn_inception_resnet_v2_640x640", "faster_rcnn", "inception_resnet_v2",
     "faster_rcnn_inception_resnet_v2_640x640_coco17_tpu-8", 206, 37.7, (640, 640)),
    ("mask_rcnn_inception_resnet_v2_1024x1024", "mask_rcnn", "inception_resnet_v2",
     "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8", 301, 39.0, (1024, 1024)),
)
