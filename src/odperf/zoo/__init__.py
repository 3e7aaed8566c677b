"""The model zoo: a registry of named detectors, loaders for TF1/TF2 artifacts, and fetching tarballs.

Importing this package does not import TensorFlow: ``load_detector`` and ``Detections``/``Detector``
are resolved on first use, so ``odperf zoo list`` and the pytest plugin's collection stay fast.
"""

from __future__ import annotations

from typing import Any

from odperf.zoo.registry import (
    ModelMissing,
    ModelSpec,
    TF2Equivalent,
    all_models,
    embedded_models,
    fixtures_dir,
    get,
    map_group,
    resolve_model_dir,
    select,
)

_LAZY = {
    "Detections": "odperf.backends.contract",
    "Detector": "odperf.backends.contract",
    "load_detector": "odperf.zoo.loaders",
    "fetch": "odperf.zoo.fetch",
}

__all__ = [
    "ModelMissing", "ModelSpec", "TF2Equivalent", "all_models", "embedded_models", "fixtures_dir", "get", "map_group",
    "resolve_model_dir", "select", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'odperf.zoo' has no attribute {name!r}")
