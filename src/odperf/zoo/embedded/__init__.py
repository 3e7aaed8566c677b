"""Embedded detectors: small models trained on odperf's synthetic dataset, shipped in ``fixtures/models``.

They give the suite something real to run offline, with the TF model zoo's SavedModel contract and a
speed/accuracy spread like the paper's: ``centernet_tiny`` (cheapest), ``ssd_fpn``, and the two-stage
``faster_rcnn_fpn`` (most accurate). ``train.train`` trains and exports one; ``specs.SPECS`` lists them;
``odperf.zoo.metadata.read_metadata`` reads the ``odperf_model.json`` next to each SavedModel.
"""

from __future__ import annotations

from pathlib import Path

from odperf.util.package_data import fixtures_dir
from odperf.zoo.embedded.specs import SPECS, TfModelSpec, get_spec

MODEL_NAMES: tuple[str, ...] = tuple(SPECS)


def models_dir() -> Path:
    """The shipped ``fixtures/models``, where the trained embedded detectors are committed."""
    return fixtures_dir() / "models"


__all__ = ["MODEL_NAMES", "SPECS", "TfModelSpec", "get_spec", "models_dir"]
