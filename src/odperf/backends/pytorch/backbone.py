"""A small ResNet-style feature extractor with a feature pyramid, shaped for torchvision's detectors.

torchvision's detection classes take any ``nn.Module`` that maps a batch [B, 3, H, W] to an ordered
dict of feature maps and says how many channels they have (``out_channels``); its own backbones
(ResNet-50, MobileNet) are far too slow to train from scratch on two CPU cores. Plain conv-BN-ReLU
stages with a few residual blocks are the cheapest per FLOP on the CPU (dense 3x3 convolutions run
faster than depthwise ones at these widths), as for the TensorFlow embedded detectors.
"""

from __future__ import annotations

from collections import OrderedDict

from odperf.backends.pytorch.triton_guard import keep_triton_out

keep_triton_out()  # before torchvision loads: see triton_guard

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation


class Residual(nn.Module):
    """Two 3x3 conv-BN layers added to their input (ResNet's basic block at constant width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = Conv2dNormActivation(width, width, 3)
        self.b = Conv2dNormActivation(width, width, 3, activation_layer=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.b(self.a(x)))


class TinyResNet(nn.Module):
    """Stages that each halve the resolution: stage ``i`` has stride ``2 ** (i + 1)``.

    ``widths[i]`` channels after the strided 3x3 convolution, then ``depths[i]`` residual blocks.
    ``forward`` returns the maps of the stages whose stride is in ``strides``, keyed by stride.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], strides: tuple[int, ...]) -> None:
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths {widths} and depths {depths} must name the same stages")
        have = tuple(2 ** (i + 1) for i in range(len(widths)))
        if not set(strides) <= set(have):
            raise ValueError(f"strides {strides}: the stages give strides {have}")
        stages = []
        previous = 3
        for width, depth in zip(widths, depths):
            blocks: list[nn.Module] = [Conv2dNormActivation(previous, width, 3, stride=2)]
            blocks += [Residual(width) for _ in range(depth)]
            stages.append(nn.Sequential(*blocks))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.strides = tuple(sorted(strides))
        self.channels = {2 ** (i + 1): w for i, w in enumerate(widths)}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
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


class BackboneFPN(nn.Module):
    """``TinyResNet`` plus torchvision's ``FeaturePyramidNetwork``: maps keyed "0", "1", ... finest first.

    ``extra`` is an optional extra level ("pool": a max-pooled coarsest level, as Faster R-CNN's FPN
    adds for its region proposals); the detectors read the keys in order, so "0" is stride
    ``min(strides)``.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], strides: tuple[int, ...],
                 fpn_width: int, extra: ExtraFPNBlock | None = None) -> None:
        super().__init__()
        self.body = TinyResNet(widths, depths, strides)
        self.fpn = FeaturePyramidNetwork([self.body.channels[s] for s in self.body.strides], fpn_width,
                                         extra_blocks=extra, norm_layer=nn.BatchNorm2d)
        self.out_channels = fpn_width

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        # oneDNN's convolutions run about 1.5x faster on channels-last tensors than on NCHW ones here
        features = self.body(x.contiguous(memory_format=torch.channels_last))
        named = OrderedDict((str(i), features[s]) for i, s in enumerate(self.body.strides))
        return self.fpn(named)


def max_pool_level() -> ExtraFPNBlock:
    """The extra "pool" level torchvision's Faster R-CNN FPN backbones add (stride of the coarsest x2)."""
    return LastLevelMaxPool()
