"""The embedded detectors: one frozen spec per model, the single place their shapes and budgets live.

The three specs span the paper's trade-off on a small scale: a CenterNet on a downscaled tile (cheapest),
an SSD with a feature pyramid over the full tile, and a two-stage Faster R-CNN (region proposals, then
a second stage on features cropped with ``tf.image.crop_and_resize``), the most accurate and costly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from odperf.errors import ModelError


@dataclass(frozen=True)
class TfModelSpec:
    """Architecture and training budget of one embedded detector."""

    name: str
    meta_arch: str  # "centernet", "ssd" or "faster_rcnn", as the zoo names meta-architectures
    input_size: int  # the tile is resized to input_size x input_size inside the graph
    widths: tuple[int, ...]  # backbone stage widths; stage i has stride 2 ** (i + 1)
    depths: tuple[int, ...]  # residual blocks per stage
    neck_width: int
    head_width: int
    steps: int
    batch_size: int = 16
    learning_rate: float = 2e-3
    # centernet: output stride; ssd / faster_rcnn: anchor sizes in input pixels per stride
    out_stride: int = 4
    anchors: dict[int, tuple[float, ...]] = field(default_factory=dict)
    proposals: int = 64  # faster_rcnn: second-stage boxes per tile
    roi_size: int = 7

    @property
    def feature_extractor(self) -> str:
        """What the zoo calls the feature extractor, in words: backbone stages and neck."""
        blocks = ", ".join(f"{w}ch+{d}res" for w, d in zip(self.widths, self.depths))
        levels = {
            "centernet": f"stride {self.out_stride}",
            "ssd": "strides " + "/".join(str(s) for s in sorted(self.anchors)),
            "faster_rcnn": "stride 8",
        }[self.meta_arch]
        return (
            f"ResNet-style conv-BN-ReLU backbone on {self.input_size}x{self.input_size} input "
            f"(stages {blocks}), FPN {self.neck_width}ch to {levels}"
        )


SPECS: dict[str, TfModelSpec] = {
    spec.name: spec
    for spec in (
        TfModelSpec(
            name="centernet_tiny",
            meta_arch="centernet",
            input_size=128,
            widths=(16, 24, 48, 64, 96),
            depths=(0, 0, 1, 1, 1),
            neck_width=32,
            head_width=32,
            out_stride=4,
            steps=3000,
        ),
        TfModelSpec(
            name="ssd_fpn",
            meta_arch="ssd",
            input_size=300,
            widths=(16, 32, 48, 96, 128),
            depths=(0, 0, 1, 1, 1),
            neck_width=48,
            head_width=48,
            anchors={8: (12.0, 16.0, 22.0), 16: (30.0, 40.0, 54.0), 32: (72.0, 96.0, 128.0), 64: (160.0, 200.0, 250.0)},
            steps=3000,
            batch_size=8,
            learning_rate=1.5e-3,
        ),
        TfModelSpec(
            name="faster_rcnn_fpn",
            meta_arch="faster_rcnn",
            input_size=300,
            widths=(24, 32, 64, 96, 128),
            depths=(0, 1, 1, 1, 1),
            neck_width=64,
            head_width=256,
            anchors={8: (12.0, 18.0, 27.0, 40.0, 60.0, 90.0, 135.0, 200.0)},
            proposals=32,
            steps=2500,
            batch_size=8,
            learning_rate=1.5e-3,
        ),
    )
}


def get_spec(name: str) -> TfModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ModelError(
            f"no embedded model named {name!r}; choose one of: {', '.join(SPECS)}"
        ) from None
