"""Small convolutional feature extractors and the FPN neck the embedded detectors share.

Plain conv-BN-ReLU stages with optional residual blocks: on a 2-core CPU the oneDNN kernels for dense
3x3 convolutions are the fastest per FLOP, faster than depthwise ones at these tiny widths. BatchNorm
momentum is 0.9 because the detectors train for only a few thousand steps: with Keras' default 0.99
the moving statistics lag the weights and inference-mode outputs collapse.
"""

from __future__ import annotations

import keras
from keras import layers

BN_MOMENTUM = 0.9


def conv_bn(x, filters: int, kernel: int = 3, stride: int = 1, name: str = "", relu: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def residual(x, name: str):
    filters = x.shape[-1]
    y = conv_bn(x, filters, name=f"{name}_a")
    y = conv_bn(y, filters, name=f"{name}_b", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))


def backbone(image, widths: tuple[int, ...], depths: tuple[int, ...]) -> dict[int, object]:
    """Feature maps by stride: stage ``i`` halves the resolution (stride ``2 ** (i + 1)``).

    ``widths[i]`` channels and ``depths[i]`` residual blocks after the strided convolution.
    """
    features = {}
    x = image
    for i, (width, depth) in enumerate(zip(widths, depths)):
        x = conv_bn(x, width, stride=2, name=f"stage{i}_down")
        for j in range(depth):
            x = residual(x, name=f"stage{i}_block{j}")
        features[2 ** (i + 1)] = x
    return features


def fpn(features: dict[int, object], strides: tuple[int, ...], width: int) -> dict[int, object]:
    """Top-down pyramid over ``strides`` (ascending): each level gets the coarser levels' context."""
    out = {}
    top = None
    for stride in sorted(strides, reverse=True):
        lateral = layers.Conv2D(width, 1, name=f"fpn_lateral{stride}")(features[stride])
        if top is not None:
            up = layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up{stride}")(top)
            # odd sizes (300 -> 75 -> 38 -> 19 -> 10): crop the upsampled map to the lateral one
            up = layers.Cropping2D(
                ((0, up.shape[1] - lateral.shape[1]), (0, up.shape[2] - lateral.shape[2])),
                name=f"fpn_crop{stride}",
            )(up)
            lateral = layers.Add(name=f"fpn_add{stride}")([lateral, up])
        top = lateral
        out[stride] = conv_bn(lateral, width, name=f"fpn_out{stride}")
    return out


def preprocess(images):
    """uint8-range float images -> roughly zero-centred inputs (no dataset statistics needed)."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(images)


def input_layer(size: int):
    return keras.Input((size, size, 3), name="image")
