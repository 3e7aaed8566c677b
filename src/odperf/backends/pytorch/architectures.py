"""The builder registry: small torchvision detectors by architecture name and keyword arguments.

``odperf_model.json`` records ``architecture`` and its ``kwargs``; ``build(architecture, **kwargs)``
makes the same untrained module again, into which the saved state_dict loads. ``num_classes`` counts
the classifier's outputs: for Faster R-CNN the background (label 0) plus the largest category id, as
in torchvision's COCO models; for FCOS, which has no background class, the number of categories (see
``specs.TorchModelSpec.labels``).

Tiles are not resized (``min_size = max_size = input_size``, 300 for the workload's tiles): torchvision
would otherwise upscale a 300x300 tile to 800 px, 7x the work. Both normalise pixels to [-1, 1]
(mean 0.5, std 0.5) rather than ImageNet statistics, since nothing was pretrained.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

from odperf.backends.pytorch.triton_guard import keep_triton_out

keep_triton_out()  # before torchvision loads: see triton_guard

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from odperf.errors import ModelError
from odperf.backends.pytorch.backbone import BackboneFPN, max_pool_level

MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]


def fcos_tiny(num_classes: int, widths: tuple[int, ...] = (16, 24, 48, 64, 96),
              depths: tuple[int, ...] = (0, 0, 1, 1, 1), strides: tuple[int, ...] = (8, 16, 32),
              fpn_width: int = 32, head_convs: int = 2,
              input_size: int = 300, score_thresh: float = 0.05, nms_thresh: float = 0.6,
              detections_per_img: int = 100, topk_candidates: int = 300) -> FCOS:
    """FCOS (anchor-free, one point per feature-map cell) on a ``TinyResNet`` + FPN.

    Each level's point size equals its stride, so FCOS's scale ranges put objects up to 64 px from
    their centre on stride 8, up to 128 px on stride 16 and larger ones on stride 32. ``head_convs``
    shared conv-GroupNorm layers per branch instead of FCOS's four keep the head from outweighing the
    backbone; ``fpn_width`` must be a multiple of 32 (the head's GroupNorm groups).
    """
    backbone = BackboneFPN(tuple(widths), tuple(depths), tuple(strides), fpn_width)
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    head = FCOSHead(fpn_width, 1, num_classes, num_convs=head_convs)
    return FCOS(backbone, num_classes, min_size=input_size, max_size=input_size, image_mean=MEAN, image_std=STD,
                anchor_generator=anchors, head=head, score_thresh=score_thresh, nms_thresh=nms_thresh,
                detections_per_img=detections_per_img, topk_candidates=topk_candidates)


def faster_rcnn_fpn_tiny(num_classes: int, widths: tuple[int, ...] = (16, 32, 48, 64, 96),
                         depths: tuple[int, ...] = (0, 1, 1, 1, 1), strides: tuple[int, ...] = (8, 16, 32),
                         fpn_width: int = 48,
                         anchor_sizes: tuple[tuple[float, ...], ...] = ((16.0, 24.0), (40.0, 64.0), (96.0, 144.0),
                                                                        (192.0, 256.0)),
                         aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0), representation_size: int = 256,
                         sampling_ratio: int = 2, input_size: int = 300, rpn_pre_nms_top_n_test: int = 200,
                         rpn_post_nms_top_n_test: int = 32, rpn_pre_nms_top_n_train: int = 400,
                         rpn_post_nms_top_n_train: int = 200, box_batch_size_per_image: int = 64,
                         box_score_thresh: float = 0.05,
                         box_detections_per_img: int = 100) -> FasterRCNN:
    """Faster R-CNN with an FPN on a ``TinyResNet``: RPN on every level plus the max-pooled one,
    then RoIAlign (7x7, levels chosen by box size) and a two-layer MLP box head.

    ``anchor_sizes`` has one tuple per pyramid level (the backbone's strides, then "pool"). The
    proposal counts are far below torchvision's COCO defaults (1000 per image, 512 sampled for
    training) because a tile holds at most six objects and each proposal costs a RoIAlign crop and two
    matrix products; on the CPU, RoIAlign's backward pass is the costliest op of a training step.
    """
    backbone = BackboneFPN(tuple(widths), tuple(depths), tuple(strides), fpn_width, extra=max_pool_level())
    levels = len(strides) + 1
    if len(anchor_sizes) != levels:
        raise ModelError(f"faster_rcnn_fpn_tiny: anchor_sizes needs {levels} tuples (one per level: strides "
                         f"{tuple(strides)} and the pooled level), got {len(anchor_sizes)}")
    if len({len(level) for level in anchor_sizes}) != 1:
        raise ModelError(f"faster_rcnn_fpn_tiny: every level needs as many anchor sizes (the RPN head is "
                         f"shared across levels), got {anchor_sizes}")
    sizes = tuple(tuple(float(a) for a in level) for level in anchor_sizes)
    ratios = (tuple(float(r) for r in aspect_ratios),) * levels
    anchors = AnchorGenerator(sizes, ratios)
    rpn_head = RPNHead(fpn_width, anchors.num_anchors_per_location()[0])
    pool = MultiScaleRoIAlign([str(i) for i in range(len(strides))], output_size=7, sampling_ratio=sampling_ratio)
    box_head = TwoMLPHead(fpn_width * 7 * 7, representation_size)
    predictor = FastRCNNPredictor(representation_size, num_classes)
    return FasterRCNN(backbone, None, min_size=input_size, max_size=input_size, image_mean=MEAN, image_std=STD,
                      rpn_anchor_generator=anchors, rpn_head=rpn_head,
                      rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
                      rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
                      rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
                      box_roi_pool=pool, box_head=box_head, box_predictor=predictor,
                      box_batch_size_per_image=box_batch_size_per_image, box_score_thresh=box_score_thresh,
                      box_detections_per_img=box_detections_per_img)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fcos_tiny": fcos_tiny,
    "faster_rcnn_fpn_tiny": faster_rcnn_fpn_tiny,
}


def _builder(architecture: str) -> Callable[..., nn.Module]:
    builder = BUILDERS.get(architecture)
    if builder is None:
        raise ModelError(f"no torch architecture named {architecture!r}; choose one of: {', '.join(BUILDERS)}")
    return builder


def full_kwargs(architecture: str, **kwargs: Any) -> dict[str, Any]:
    """Every argument of the builder, the defaults filled in, as JSON stores them (lists for tuples).

    The metadata records these, so a model still rebuilds as it was trained after a default changes.
    """
    builder = _builder(architecture)
    try:
        bound = inspect.signature(builder).bind(**kwargs)
    except TypeError as exc:
        raise ModelError(f"{architecture}: bad arguments {sorted(kwargs)} ({exc}); see "
                         f"odperf.backends.pytorch.architectures.{builder.__name__}") from exc
    bound.apply_defaults()
    return json.loads(json.dumps(dict(bound.arguments)))


def build(architecture: str, **kwargs: Any) -> nn.Module:
    """A fresh (untrained) detector of ``architecture``; lists come back as tuples, as JSON stores them."""
    builder = _builder(architecture)
    args = {k: _tuples(v) for k, v in kwargs.items()}
    try:
        return builder(**args)
    except TypeError as exc:
        raise ModelError(f"{architecture}: bad arguments {sorted(kwargs)} ({exc}); see "
                         f"odperf.backends.pytorch.architectures.{builder.__name__}") from exc


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
