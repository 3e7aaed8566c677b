"""Training runs end to end on a tiny dataset and exports a SavedModel with the serving contract."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from odperf.datasets.synthetic import generate
from odperf.errors import ModelError
from odperf.zoo.embedded import MODEL_NAMES, SPECS
from odperf.zoo.embedded.export import SAVED_MODEL_DIR
from odperf.zoo.metadata import read_metadata
from odperf.zoo.embedded.train import train

from test_embedded_models import check_contract


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(root, "train2017", 8, seed=3)
    generate(root, "val2017", 4, seed=3)
    return root


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_exports_a_loadable_detector(name, tiny_root, tmp_path):
    lines = []
    meta = train(name, tmp_path, dataset_root=tiny_root, steps=2, batch_size=4, log=lines.append)
    assert any("step 1/2" in line for line in lines)
    assert meta == read_metadata(tmp_path / name)
    assert meta["train_steps"] == 2 and meta["meta_arch"] == SPECS[name].meta_arch
    assert meta["parameters"] > 0 and meta["flops_per_tile"] > 0
    assert 0.0 <= meta["map"] <= 1.0 and meta["accuracy"]["tiles"] == 4
    fn = tf.saved_model.load(str(tmp_path / name / SAVED_MODEL_DIR)).signatures["serving_default"]
    tiles = np.random.default_rng(0).integers(0, 256, (3, 300, 300, 3), dtype=np.uint8)
    check_contract(fn, tiles, meta["categories"])


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="centernet_tiny"):
        train("no_such_model", tmp_path)


def test_missing_dataset_is_a_dataset_error(tmp_path):
    from odperf.errors import DatasetError

    with pytest.raises(DatasetError, match="train2017"):
        train("centernet_tiny", tmp_path / "models", dataset_root=tmp_path)
