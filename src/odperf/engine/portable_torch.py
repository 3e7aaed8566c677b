"""The worker core's PyTorch half: odperf's embedded PyTorch detectors and the conversion of torchvision's
outputs, in code a board's PyTorch runs.

Self-contained like ``engine.portable``: Python 3.6 or newer, numpy, torch and torchvision, nothing else of
odperf. A Jetson TX2's last JetPack (4.6) has PyTorch 1.10 and torchvision 0.11, which lack what newer
torchvision builds these models from (``Conv2dNormActivation``, an FPN with norm layers, FCOS before 0.12),
so the layers are written here with the same parameter names and the same arithmetic; the host's PyTorch
backend (``backends.pytorch``) builds from this module too, so a local run and a board run the same model
code. On a board the weights arrive as numpy arrays (``load_state``: no pickle across torch versions).
"""

from collections import OrderedDict
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]
MAX_DETECTIONS = 100
# (newer torchvision's name, older torchvision's name) of the same parameter
RENAMES = (("rpn.head.conv.0.0.", "rpn.head.conv."),)


def detection_slots(meta: Dict[str, Any], model: Any = None) -> int:
    """Detection slots per tile: the model folder's ``max_detections`` where it says, else as many as the model
    keeps an image (torchvision's ``detections_per_img``: RetinaNet and SSDlite 300, SSD 200, FCOS and Faster
    R-CNN's ``roi_heads`` 100), else ``MAX_DETECTIONS``. Fewer slots than the model keeps would cut its
    lowest-scoring boxes, and its mAP with them."""
    if meta.get("max_detections"):
        return int(meta["max_detections"])
    for owner in (model, getattr(model, "roi_heads", None)):
        kept = getattr(owner, "detections_per_img", None) if owner is not None else None
        if isinstance(kept, int) and kept > 0:
            return kept
    return MAX_DETECTIONS


class ArchitectureError(ValueError):
    """An architecture's arguments that do not fit together, or one this torchvision cannot build."""


# --- layers ----------------------------------------------------------------------------------------
def conv_norm(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): torchvision's ``Conv2dNormActivation``, parameter for parameter."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """Two 3x3 conv-BN layers added to their input (ResNet's basic block at constant width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = conv_norm(width, width, 3)
        self.b = conv_norm(width, width, 3, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.b(self.a(x)))


class TinyResNet(nn.Module):
    """Stages that each halve the resolution: stage ``i`` has stride ``2 ** (i + 1)``.

    ``widths[i]`` channels after the strided 3x3 convolution, then ``depths[i]`` residual blocks.
    ``forward`` returns the maps of the stages whose stride is in ``strides``, keyed by stride.
    """

    def __init__(self, widths: Sequence[int], depths: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if len(widths) != len(depths):
            raise ArchitectureError("widths {} and depths {} must name the same stages".format(widths, depths))
        have = tuple(2 ** (i + 1) for i in range(len(widths)))
        if not set(strides) <= set(have):
            raise ArchitectureError("strides {}: the stages give strides {}".format(tuple(strides), have))
        stages = []
        previous = 3
        for width, depth in zip(widths, depths):
            blocks = [conv_norm(previous, width, 3, stride=2)]  # type: List[nn.Module]
            blocks += [Residual(width) for _ in range(depth)]
            stages.append(nn.Sequential(*blocks))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.strides = tuple(sorted(strides))
        self.channels = {2 ** (i + 1): w for i, w in enumerate(widths)}

    def forward(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        out = {}
        last = max(self.strides)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            stride = 2 ** (i + 1)
            if stride in self.strides:
                out[stride] = x
            if stride == last:
                break
        return out


class FeaturePyramid(nn.Module):
    """torchvision's ``FeaturePyramidNetwork`` with BatchNorm after each convolution (its ``norm_layer``,
    torchvision 0.13 and newer) and optionally its max-pooled extra level ("pool", ``LastLevelMaxPool``)."""

    def __init__(self, in_channels: Sequence[int], width: int, pool_level: bool = False) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList([conv_norm(c, width, 1, relu=False) for c in in_channels])
        self.layer_blocks = nn.ModuleList([conv_norm(width, width, 3, relu=False) for _ in in_channels])
        self.pool_level = pool_level

    def forward(self, x: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        names, maps = list(x.keys()), list(x.values())
        last_inner = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(maps) - 2, -1, -1):
            lateral = self.inner_blocks[idx](maps[idx])
            last_inner = lateral + F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.pool_level:
            names.append("pool")
            results.append(F.max_pool2d(results[-1], 1, 2, 0))
        return OrderedDict(zip(names, results))


class BackboneFPN(nn.Module):
    """``TinyResNet`` plus the feature pyramid: maps keyed "0", "1", ... finest first (then "pool")."""

    def __init__(self, widths: Sequence[int], depths: Sequence[int], strides: Sequence[int], fpn_width: int,
                 pool_level: bool = False) -> None:
        super().__init__()
        self.body = TinyResNet(widths, depths, strides)
        self.fpn = FeaturePyramid([self.body.channels[s] for s in self.body.strides], fpn_width, pool_level)
        self.out_channels = fpn_width

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        # oneDNN's convolutions run about 1.5x faster on channels-last tensors than on NCHW ones here
        features = self.body(x.contiguous(memory_format=torch.channels_last))
        named = OrderedDict((str(i), features[s]) for i, s in enumerate(self.body.strides))
        return self.fpn(named)


# --- architectures ---------------------------------------------------------------------------------
def fcos_tiny(num_classes: int, widths: Sequence[int] = (16, 24, 48, 64, 96), depths: Sequence[int] = (0, 0, 1, 1, 1),
              strides: Sequence[int] = (8, 16, 32), fpn_width: int = 32, head_convs: int = 2,
              input_size: int = 300, score_thresh: float = 0.05, nms_thresh: float = 0.6,
              detections_per_img: int = 100, topk_candidates: int = 300) -> nn.Module:
    """FCOS (anchor-free, one point per feature-map cell) on a ``TinyResNet`` + FPN.

    Each level's point size equals its stride, so FCOS's scale ranges put objects up to 64 px from
    their centre on stride 8, up to 128 px on stride 16 and larger ones on stride 32. ``head_convs``
    shared conv-GroupNorm layers per branch instead of FCOS's four keep the head from outweighing the
    backbone; ``fpn_width`` must be a multiple of 32 (the head's GroupNorm groups).
    """
    import torchvision
    from torchvision.models import detection
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if not hasattr(detection, "FCOS"):
        raise ArchitectureError("fcos_tiny needs torchvision 0.12 or newer (FCOS); this one is "
                                "{}".format(torchvision.__version__))
    from torchvision.models.detection.fcos import FCOSHead

    backbone = BackboneFPN(tuple(widths), tuple(depths), tuple(strides), fpn_width)
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    head = FCOSHead(fpn_width, 1, num_classes, num_convs=head_convs)
    return detection.FCOS(backbone, num_classes, min_size=input_size, max_size=input_size, image_mean=MEAN,
                          image_std=STD, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                          nms_thresh=nms_thresh, detections_per_img=detections_per_img,
                          topk_candidates=topk_candidates)


def faster_rcnn_fpn_tiny(num_classes: int, widths: Sequence[int] = (16, 32, 48, 64, 96),
                         depths: Sequence[int] = (0, 1, 1, 1, 1), strides: Sequence[int] = (8, 16, 32),
                         fpn_width: int = 48,
                         anchor_sizes: Sequence[Sequence[float]] = ((16.0, 24.0), (40.0, 64.0), (96.0, 144.0),
                                                                    (192.0, 256.0)),
                         aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), representation_size: int = 256,
                         sampling_ratio: int = 2, input_size: int = 300, rpn_pre_nms_top_n_test: int = 200,
                         rpn_post_nms_top_n_test: int = 32, rpn_pre_nms_top_n_train: int = 400,
                         rpn_post_nms_top_n_train: int = 200, box_batch_size_per_image: int = 64,
                         box_score_thresh: float = 0.05, box_detections_per_img: int = 100) -> nn.Module:
    """Faster R-CNN with an FPN on a ``TinyResNet``: RPN on every level plus the max-pooled one,
    then RoIAlign (7x7, levels chosen by box size) and a two-layer MLP box head.

    ``anchor_sizes`` has one tuple per pyramid level (the backbone's strides, then "pool"). The
    proposal counts are far below torchvision's COCO defaults (1000 per image, 512 sampled for
    training) because a tile holds at most six objects and each proposal costs a RoIAlign crop and two
    matrix products; on the CPU, RoIAlign's backward pass is the costliest op of a training step.
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    backbone = BackboneFPN(tuple(widths), tuple(depths), tuple(strides), fpn_width, pool_level=True)
    levels = len(strides) + 1
    if len(anchor_sizes) != levels:
        raise ArchitectureError("anchor_sizes needs {} tuples (one per level: strides {} and "
                                "the pooled level), got {}".format(levels, tuple(strides), len(anchor_sizes)))
    if len({len(level) for level in anchor_sizes}) != 1:
        raise ArchitectureError("every level needs as many anchor sizes (the RPN head is "
                                "shared across levels), got {}".format(anchor_sizes))
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


BUILDERS = {"fcos_tiny": fcos_tiny, "faster_rcnn_fpn_tiny": faster_rcnn_fpn_tiny}


def tuples(value: Any) -> Any:
    """Lists back to tuples, as JSON stores a builder's tuple arguments."""
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    return value


def load_state(model: nn.Module, arrays: Dict[str, np.ndarray]) -> None:
    """Load a state_dict sent as numpy arrays, parameter names of newer torchvision mapped to this one's."""
    expected = model.state_dict()
    state = {}
    for name, value in arrays.items():
        if name not in expected:
            for new, old in RENAMES:
                if name.startswith(new) and old + name[len(new):] in expected:
                    name = old + name[len(new):]
        state[name] = torch.from_numpy(np.asarray(value))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArchitectureError("the weights do not fit the architecture: {} missing, {} unexpected (e.g. {})".format(
            len(missing), len(unexpected), (missing or unexpected)[0]))
    model.load_state_dict(state)


# --- run -------------------------------------------------------------------------------------------
def to_tensor_batch(batch: np.ndarray, device: Any = "cpu") -> List[torch.Tensor]:
    """uint8 [B, H, W, 3] -> B float32 tensors [3, H, W] in [0, 1] on ``device`` (what torchvision takes).

    One conversion for the whole batch; the list holds views of it, so no per-image copy is made here.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return list(tensor.unbind(0))


def output_arrays(out: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's torchvision output (``boxes``, ``scores``, ``labels``) as host numpy arrays."""
    return (out["boxes"].detach().cpu().numpy().reshape(-1, 4), out["scores"].detach().cpu().numpy().reshape(-1),
            out["labels"].detach().cpu().numpy().reshape(-1))


def pack(per_image: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], height: int, width: int,
         max_detections: int = MAX_DETECTIONS, label_map: Any = None) -> List[np.ndarray]:
    """Per-image (xyxy px, scores, labels) -> [boxes, scores, classes, counts] as the TensorFlow zoo gives
    them: normalized ymin, xmin, ymax, xmax clipped to [0, 1], best first, labels mapped to category ids
    (``label_map``: a sequence indexed by label, or a dict), zero-padded to ``max_detections`` slots."""
    b, n = len(per_image), int(max_detections)
    boxes = np.zeros((b, n, 4), np.float32)
    scores = np.zeros((b, n), np.float32)
    classes = np.zeros((b, n), np.int32)
    counts = np.zeros(b, np.int32)
    for i, (xyxy, score, label) in enumerate(per_image):
        order = np.argsort(-score, kind="stable")[:n]
        k = len(order)
        x1, y1, x2, y2 = (xyxy[order, j] for j in range(4))
        boxes[i, :k] = np.clip(np.stack([y1 / height, x1 / width, y2 / height, x2 / width], axis=1), 0.0, 1.0)
        scores[i, :k] = score[order]
        labels = label[order]
        classes[i, :k] = labels if label_map is None else np.array([label_map[int(v)] for v in labels], np.int64)
        counts[i] = k
    return [boxes, scores, classes, counts]


class TorchDetector:
    """A board's embedded PyTorch detector: uint8 tiles in, [boxes, scores, classes, counts] out, the
    outputs on the host (numpy) before a call returns, as the local worker's ``backends.pytorch`` runs it."""

    format = "torch_state_dict"
    batch_mode = "batched"
    untrained = False

    def __init__(self, meta: Dict[str, Any], arrays: Dict[str, np.ndarray], device: Any) -> None:
        architecture = str(meta["architecture"])
        builder = BUILDERS.get(architecture)
        if builder is None:
            raise ArchitectureError("no embedded PyTorch architecture named {!r} (known: {})".format(
                architecture, ", ".join(BUILDERS)))
        kwargs = {k: tuples(v) for k, v in (meta.get("kwargs") or {}).items()}
        self.model = builder(**kwargs)
        load_state(self.model, arrays)
        self.model = self.model.eval().to(device)
        self.device = device
        label_map = meta.get("label_map")
        self.label_map = {int(k): v for k, v in label_map.items()} if isinstance(label_map, dict) else label_map
        self.slots = detection_slots(meta, self.model)
        self.no_grad = getattr(torch, "inference_mode", torch.no_grad)  # inference_mode: torch 1.9 and newer

    def __call__(self, batch: np.ndarray) -> List[np.ndarray]:
        with self.no_grad():
            outputs = self.model(to_tensor_batch(batch, self.device))
        return pack([output_arrays(o) for o in outputs], batch.shape[1], batch.shape[2], self.slots,
                    self.label_map)


def runtime_settings() -> Dict[str, Any]:
    """What shapes a PyTorch worker's figures on every device (a record's ``runtime_settings``)."""
    import os

    out = {"precision": "float32", "threads": torch.get_num_threads(),
           "interop_threads": torch.get_num_interop_threads(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "runtime default"}
    if hasattr(os, "sched_getaffinity"):  # the cores the worker may run on (a pinned worker: fewer)
        out["cpu_affinity"] = len(os.sched_getaffinity(0))
    return out


def start_runtime() -> Tuple[Any, Dict[str, Any]]:
    """PyTorch on the board: its GPU where CUDA sees one (a Jetson's), else the CPU; what was chosen."""
    torch.set_grad_enabled(False)
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    _ = (torch.ones(1, device=device) + 1).cpu()  # brings up the runtime (and the CUDA context)
    names = [torch.cuda.get_device_name(0)] if device.type == "cuda" else ["cpu"]
    return device, {"backend": "torch", "version": torch.__version__, "devices": names,
                    "settings": runtime_settings()}
