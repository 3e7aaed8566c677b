"""Embedded PyTorch detectors: torchvision's FCOS and Faster R-CNN on small backbones, trained from
scratch on odperf's synthetic dataset and shipped in ``fixtures/models/<name>/`` as a state_dict plus
``odperf_model.json``.

``architectures.build`` rebuilds a model from the recorded architecture and arguments,
``load_embedded`` loads a shipped one (``load_run`` wraps it as a ``Detector``'s run function; the
``Detector`` contract in torch terms is the PyTorch backend's, ``odperf.backends.pytorch.convert``),
``train.train`` trains and measures one. Importing this package does not import torch: the registry
lists these names without it.
"""

from __future__ import annotations

from pathlib import Path

from odperf.util.package_data import fixtures_dir
from odperf.zoo.embedded_torch.specs import MODEL_NAMES, SPECS, TorchModelSpec, get_spec


def models_dir() -> Path:
    """The shipped ``fixtures/models``, where the trained embedded detectors are committed."""
    return fixtures_dir() / "models"




def build(architecture: str, **kwargs):  # -> torch.nn.Module
    """A fresh detector of ``architecture`` (see :mod:`odperf.backends.pytorch.architectures`)."""
    from odperf.backends.pytorch.architectures import build as _build

    return _build(architecture, **kwargs)


def load_embedded(folder: str | Path, device: str = "cpu"):  # -> torch.nn.Module
    """The shipped detector in ``folder`` (its metadata and state_dict), in eval mode."""
    from odperf.zoo.embedded_torch.export import load_embedded as _load

    return _load(folder, device)


def load_run(folder: str | Path, device: str = "cpu"):  # -> odperf.backends.contract.RunFn
    """``run(uint8 batch) -> Detections`` of the shipped detector in ``folder``, classes as category ids."""
    from odperf.zoo.embedded_torch.export import load_run as _load_run

    return _load_run(folder, device)


__all__ = ["MODEL_NAMES", "SPECS", "TorchModelSpec", "build", "get_spec", "load_embedded", "load_run", "models_dir"]
