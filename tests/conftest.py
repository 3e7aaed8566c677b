"""Fixtures shared by the library's tests (the top-level conftest.py loads odperf's plugin)."""

import importlib.util

# TensorFlow then PyTorch in one process crashes it (a segfault when torch loads after TensorFlow's
# libraries); PyTorch first works. odperf's workers each load one runtime, but a test process may use
# both: load PyTorch first, where it is installed.
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

import pytest  # noqa: E402

from engine_models import engine_dataset, engine_models  # noqa: E402, F401  (session fixtures: small models, a dataset)


@pytest.fixture(autouse=True)
def _fresh_detection():
    """Each test detects the hardware afresh: a test that stands in for NVML must not leave its GPUs in
    the process's once-per-run detection (``odperf.measure.kinds.detected``)."""
    from odperf.measure.kinds import detect_once

    detect_once.cache_clear()
    yield
    detect_once.cache_clear()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 for the module's board tests (``sshd_board.Sshd``)."""
    from sshd_board import Sshd

    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def val_root(tmp_path_factory):
    """The embedded dataset's validation split, CI_TILES tiles of it, generated in the module's folder."""
    from odperf.datasets.synthetic import ensure_embedded
    from odperf.zoo.embedded.data import CI_TILES

    return ensure_embedded(tmp_path_factory.mktemp("synthetic"), seed=0, n_val=CI_TILES, n_train=0)


@pytest.fixture(scope="module")
def val_split(val_root):
    """``val_root``'s tiles decoded once (``odperf.zoo.embedded.data.Split``)."""
    from odperf.datasets.synthetic import VAL_SPLIT
    from odperf.zoo.embedded.data import load_split

    return load_split(val_root, VAL_SPLIT)
