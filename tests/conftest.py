"""Fixtures shared by the library's tests (the top-level conftest.py loads odperf's plugin)."""

from engine_models import engine_dataset, engine_models  # noqa: F401  (session fixtures: small models, a dataset)
