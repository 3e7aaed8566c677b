"""Fixtures shared by the library's tests (the top-level conftest.py loads odperf's plugin)."""

import importlib.util

# TensorFlow then PyTorch in one process crashes it (a segfault when torch loads after TensorFlow's
# libraries); PyTorch first works. odperf's workers each load one runtime, but a test process may use
# both: load PyTorch first, where it is installed.
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

from engine_models import engine_dataset, engine_models  # noqa: E402, F401  (session fixtures: small models, a dataset)
