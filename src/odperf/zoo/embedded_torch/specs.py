"""The two PyTorch embedded detectors: architecture, its arguments and the training budget of each.

A single-stage detector (FCOS) and a two-stage one (Faster R-CNN with an FPN), both torchvision's own
classes on a small backbone trained from scratch, so that the PyTorch runtime has real models of both
kinds to run offline. Each budget is about 13 minutes of CPU time on one thread (2,000 and 1,400 steps of
8 tiles); on a busy shared machine the wall time is a multiple of that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from odperf.errors import ModelError


@dataclass(frozen=True)
class TorchModelSpec:
    """One embedded torch detector: ``build(architecture, num_classes=..., **kwargs)`` and how to train it."""

    name: str
    meta_arch: str  # as the zoo names meta-architectures ("fcos", "faster_rcnn")
    architecture: str  # a key of architectures.BUILDERS
    kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 8
    learning_rate: float = 1.5e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 150
    background: bool = False  # the classifier has a background class 0 (Faster R-CNN), FCOS has none

    def labels(self, category_ids: tuple[int, ...]) -> list[int]:
        """The training label of each 0-based dataset class.

        With a background class, torchvision's COCO convention: the label is the category id (0 is
        background). Without one (FCOS), the label is the class index: an unused class 0 would still
        get scores and could come out as a detection of a category the dataset does not have.
        """
        return [int(c) for c in category_ids] if self.background else list(range(len(category_ids)))

    def num_classes(self, category_ids: tuple[int, ...]) -> int:
        return max(self.labels(category_ids)) + 1

    def label_map(self, category_ids: tuple[int, ...]) -> list[int] | None:
        """Category id of each label, where labels are not category ids already (None: they are)."""
        return None if self.background else [int(c) for c in category_ids]

    @property
    def input_size(self) -> int:
        return int(self.kwargs.get("input_size", 300))

    @property
    def feature_extractor(self) -> str:
        """The backbone and neck in words, like the TensorFlow embedded models' metadata."""
        k = self.kwargs
        blocks = ", ".join(f"{w}ch+{d}res" for w, d in zip(k["widths"], k["depths"]))
        strides = "/".join(str(s) for s in k["strides"])
        extra = "+pool" if self.meta_arch == "faster_rcnn" else ""
        return (f"ResNet-style conv-BN-ReLU backbone on {self.input_size}x{self.input_size} input "
                f"(stages {blocks}), torchvision FPN {k['fpn_width']}ch on strides {strides}{extra}")


SPECS: dict[str, TorchModelSpec] = {
    spec.name: spec
    for spec in (
        TorchModelSpec(
            name="fcos_tiny_torch",
            meta_arch="fcos",
            architecture="fcos_tiny",
            kwargs={"widths": (16, 24, 48, 64, 96), "depths": (0, 0, 1, 1, 1), "strides": (8, 16, 32),
                    "fpn_width": 32, "head_convs": 2, "input_size": 300},
            steps=2000,
            batch_size=8,
            learning_rate=2e-3,
        ),
        TorchModelSpec(
            name="faster_rcnn_fpn_torch",
            meta_arch="faster_rcnn",
            architecture="faster_rcnn_fpn_tiny",
            kwargs={"widths": (16, 32, 48, 64, 96), "depths": (0, 0, 1, 1, 1), "strides": (8, 16, 32),
                    "fpn_width": 48, "representation_size": 256, "input_size": 300},
            steps=1400,
            batch_size=8,
            background=True,
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(SPECS)


def get_spec(name: str) -> TorchModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ModelError(f"no embedded torch model named {name!r}; choose one of: {', '.join(SPECS)}") from None
