"""Small real PyTorch detectors in each format the PyTorch backend reads, written by the tests themselves.

``TinyTorchDetector`` follows torchvision's calling convention (a list of float CHW images in, a list of
``boxes``/``scores``/``labels`` dicts out) with one detection per image at a known place: (x 0.1-0.5,
y 0.2-0.6 of the image, class 3), its score computed by a real convolution of the image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import torch

BOX_XYXY = (0.1, 0.2, 0.5, 0.6)
LABEL = 3


class TinyTorchDetector(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.register_buffer("box", torch.tensor([BOX_XYXY]))

    def forward(self, images: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        out: List[Dict[str, torch.Tensor]] = []
        for image in images:
            score = torch.sigmoid(self.conv(image.unsqueeze(0)).mean())
            h, w = float(image.shape[1]), float(image.shape[2])
            box = self.box * torch.tensor([w, h, w, h], device=image.device)
            out.append({"boxes": box, "scores": score.reshape(1),
                        "labels": torch.full([1], 3, dtype=torch.int64, device=image.device)})
        return out


def write_torchscript(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyTorchDetector().eval()).save(str(path))
    return path


def write_export(path: Path, images: int = 1) -> Path:
    """An exported program; torch.export fixes the length of its list of images (here: ``images``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [torch.rand(3, 300, 300) for _ in range(images)]
    torch.export.save(torch.export.export(TinyTorchDetector().eval(), (images,)), str(path))
    return path


def write_state_dict_folder(folder: Path, architecture: str, **arguments) -> Path:
    """A torchvision architecture's random weights as a state_dict, described by odperf_model.json."""
    from torchvision.models import detection

    folder.mkdir(parents=True, exist_ok=True)
    model = getattr(detection, architecture)(weights=None, weights_backbone=None, **arguments)
    torch.save(model.state_dict(), folder / "weights.pth")
    (folder / "odperf_model.json").write_text(json.dumps(
        {"name": folder.name, "backend": "torch", "architecture": architecture, "arguments": arguments,
         "weights": "weights.pth"}))
    return folder
