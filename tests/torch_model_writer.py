"""Writes the PyTorch test detectors of ``torch_models.ARTIFACTS`` (run in its own Python, see there).

    python tests/torch_model_writer.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_models import ARTIFACTS, BOX_XYXY, LABEL  # noqa: E402


class TinyTorchDetector(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.register_buffer("box", torch.tensor([BOX_XYXY]))
        self.label = LABEL

    def forward(self, images: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        out: List[Dict[str, torch.Tensor]] = []
        for image in images:
            score = torch.sigmoid(self.conv(image.unsqueeze(0)).mean())
            h, w = float(image.shape[1]), float(image.shape[2])
            box = self.box * torch.tensor([w, h, w, h], device=image.device)
            out.append({"boxes": box, "scores": score.reshape(1),
                        "labels": torch.full([1], self.label, dtype=torch.int64, device=image.device)})
        return out


def write_torchscript(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyTorchDetector().eval()).save(str(path))


def write_export(path: Path) -> None:
    """torch.export fixes the length of the list of images: exported on one, it declares batch 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.export.export(TinyTorchDetector().eval(), ([torch.rand(3, 300, 300)],))
    torch.export.save(program, str(path))


def write_state_dict_folder(folder: Path, architecture: str, **arguments) -> None:
    """A torchvision architecture's random weights as a state_dict, described by odperf_model.json."""
    from torchvision.models import detection

    folder.mkdir(parents=True, exist_ok=True)
    model = getattr(detection, architecture)(weights=None, weights_backbone=None, **arguments)
    torch.save(model.state_dict(), folder / "weights.pth")
    (folder / "odperf_model.json").write_text(json.dumps(
        {"name": folder.name, "backend": "torch", "architecture": architecture, "kwargs": arguments,
         "weights": "weights.pth"}))


def main(out_dir: Path) -> None:
    write_torchscript(out_dir / ARTIFACTS["script"])
    write_export(out_dir / ARTIFACTS["export"])
    # torchvision's transform resizes the 300 px tiles to 400 px (its default of 800 costs 4x the CPU): still a
    # resize, so boxes are mapped back to the tile by the model's own postprocess, and a kwarg besides
    # num_classes that odperf_model.json must carry to the builder
    write_state_dict_folder(out_dir / ARTIFACTS["state_dict"], "fcos_resnet50_fpn", num_classes=6, min_size=400,
                            max_size=400)
    bare = out_dir / ARTIFACTS["bare"]
    bare.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1)}, bare)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
