"""Save and load an embedded torch detector: a state_dict plus the ``odperf_model.json`` describing it.

The JSON names the builder (``architecture``) and its keyword arguments (``kwargs``, with
``num_classes``) so the module is rebuilt exactly and the state_dict loaded into it; no pickled code is
stored, and the weights are read with ``torch.load(weights_only=True)``. ``label_map`` (null when the
labels are the category ids) gives the category id of each label the model outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from odperf.backends.pytorch.convert import make_run
from odperf.engine.portable_torch import detection_slots
from odperf.errors import ModelError
from odperf.backends.contract import RunFn
from odperf.zoo.metadata import MODEL_FILE, read_metadata, write_metadata

WEIGHTS_FILE = "weights.pt"


def save(model: nn.Module, model_dir: Path, metadata: dict[str, Any]) -> Path:
    """Write ``model_dir/weights.pt`` (contiguous tensors) and the metadata; return the weights' path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / metadata.get("weights", WEIGHTS_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    write_metadata(model_dir, metadata)
    return path


def load_embedded(model_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The detector in ``model_dir`` rebuilt from its metadata, weights loaded, in eval mode."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    if meta.get("backend") != "torch":
        raise ModelError(f"{model_dir}: backend is {meta.get('backend', 'tensorflow')!r}, not 'torch'; load it "
                         "with odperf.zoo.loaders.load_detector")
    for key in ("architecture", "kwargs"):
        if key not in meta:
            raise ModelError(f"{model_dir / MODEL_FILE}: no {key!r}; retrain with "
                             f"`odperf zoo train {model_dir.name}`")
    weights = model_dir / meta.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file missing; retrain with `odperf zoo train {model_dir.name}`")
    from odperf.backends.pytorch import load_folder

    return load_folder(model_dir, device)[0]


def load_run(model_dir: str | Path, device: str | torch.device = "cpu") -> RunFn:
    """``run(batch) -> Detections`` of the detector in ``model_dir``, classes mapped to its categories."""
    meta = read_metadata(model_dir)
    model = load_embedded(model_dir, device)
    return make_run(model, device, detection_slots(meta, model), meta.get("label_map"))


def parameter_count(model: nn.Module) -> int:
    """Trainable weights (BatchNorm running statistics excluded, as the zoo's tables count them)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
