"""What a board's worker loads for a model, made on the host: the entries sent beside the tiles once per case.

- TensorFlow: the frozen graph (``zoo.freeze``), which TensorFlow 1.15 and 2.x both load.
- PyTorch: odperf's embedded architectures (a state_dict folder whose ``odperf_model.json`` names one of
  ``engine.portable_torch.BUILDERS``): the metadata, the state_dict as numpy arrays (a board's older torch
  cannot be trusted to unpickle a newer one's file) and the source of ``engine.portable_torch``, which
  rebuilds the model with the board's own torchvision.

Other PyTorch formats (TorchScript, torch.export, torchvision registry architectures) do not go to boards
yet: their files are tied to the torch version that wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odperf.errors import ModelError


@dataclass
class BoardModel:
    """The runtime a board starts for a model and the payload entries it loads the model from."""

    backend: str
    entries: dict[str, np.ndarray]
    source: Path

    @classmethod
    def graph(cls, path: Path) -> "BoardModel":
        """A TF1-convention frozen GraphDef file (``zoo.freeze``, or a TF1 zoo model's own)."""
        return cls("tensorflow", {"graph": _bytes(path.read_bytes())}, path)


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


# why a PyTorch model of these formats does not go to a board
NOT_TO_BOARDS = {
    "torchscript": "a TorchScript file is tied to the torch that wrote it",
    "torch_export": "a torch.export file is tied to the torch that wrote it",
    "architecture": "torchvision's registry builds it with the host's torchvision, which a board's need not match",
}


def board_model(request: Any) -> BoardModel:
    """The BoardModel of ``request.model``; ModelError naming what a board can run otherwise."""
    from odperf.backends.names import BOARD_RUNTIMES
    from odperf.zoo.freeze import board_graph
    from odperf.zoo.loaders import resolve

    name, _, backend, fmt, artifact = resolve(request.model, request.model_dir)
    if backend not in BOARD_RUNTIMES:
        raise ModelError(f"model {name}: a {backend} model; boards run {' and '.join(BOARD_RUNTIMES)} models")
    if backend == "tensorflow":
        return BoardModel.graph(board_graph(request))
    if fmt != "torch_state_dict":
        why = NOT_TO_BOARDS.get(fmt, "odperf cannot rebuild it on a board")
        raise ModelError(f"model {name}: a PyTorch {fmt} ({why}); boards run PyTorch models from a state_dict folder "
                         "naming one of odperf's embedded architectures (odperf_model.json), such as "
                         "faster_rcnn_fpn_torch")
    return torch_board_model(Path(artifact))


def torch_board_model(folder: Path) -> BoardModel:
    """An embedded PyTorch model's folder as board entries: metadata, weights as arrays, the builders' source."""
    from odperf.backends.pytorch import MODEL_FILE, WEIGHTS_NAMES, read_state_dict
    from odperf.engine import portable_torch
    from odperf.engine.portable_board import BoardPlatform

    meta = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    if meta.get("architecture") not in portable_torch.BUILDERS:
        raise ModelError(f"{folder / MODEL_FILE}: architecture {meta.get('architecture')!r} is not one of odperf's "
                         f"embedded ones ({', '.join(portable_torch.BUILDERS)}), which boards rebuild")
    state = read_state_dict(folder / str(meta.get("weights", WEIGHTS_NAMES[0])))
    entries = {BoardPlatform.WEIGHT_PREFIX + k: v.detach().cpu().numpy() for k, v in state.items()}
    entries["torch_meta"] = _bytes(json.dumps({k: meta.get(k) for k in ("architecture", "kwargs", "label_map",
                                                                        "max_detections")}).encode())
    entries["torch_code"] = _bytes(Path(portable_torch.__file__).read_bytes())
    return BoardModel("torch", entries, folder)
