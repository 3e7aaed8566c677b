"""torchvision's full-size detection architectures, the paper's model sizes for PyTorch users.

No model hub is reachable from the machines odperf must run on, so these build with random weights and
are measured for time and memory only (recorded ``untrained``: no mAP, no mAP floor). A user's weights
file (a state_dict) in ``<model dir>/<name>/weights.pth`` or ``<model dir>/<name>.pth`` makes a run
trained, with real mAP. Reported COCO box mAP is torchvision's own figure for its published weights,
used for the paper's mAP groups.
"""

from __future__ import annotations

from odperf.backends.pytorch.labels import COCO_CLASSES  # noqa: F401 (the catalog's label space)

# name (torchvision's builder) -> (meta_arch, feature extractor, reported COCO box mAP in percent)
ARCHITECTURES: dict[str, tuple[str, str, float]] = {
    "fasterrcnn_resnet50_fpn_v2": ("faster_rcnn", "ResNet-50 FPN (v2)", 46.7),
    "fasterrcnn_resnet50_fpn": ("faster_rcnn", "ResNet-50 FPN", 37.0),
    "fasterrcnn_mobilenet_v3_large_fpn": ("faster_rcnn", "MobileNetV3-Large FPN", 32.8),
    "maskrcnn_resnet50_fpn": ("mask_rcnn", "ResNet-50 FPN", 37.9),
    "retinanet_resnet50_fpn_v2": ("retinanet", "ResNet-50 FPN (v2)", 41.5),
    "fcos_resnet50_fpn": ("fcos", "ResNet-50 FPN", 39.2),
    "ssd300_vgg16": ("ssd", "VGG-16", 25.1),
    "ssdlite320_mobilenet_v3_large": ("ssdlite", "MobileNetV3-Large", 21.3),
}
