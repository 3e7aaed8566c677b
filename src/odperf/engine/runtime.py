"""The environment a worker starts in: which device it may see, and quiet runtime logs.

What happens inside the worker once it runs (devices, growth, memory caps) is each runtime's own business:
``odperf.backends``.
"""

from __future__ import annotations

import os

from odperf.measure.devices import parse_device
from odperf.measure.kinds import kind_of


def worker_env(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker on ``device``: what its kind of device lets it see (``measure.kinds``),
    unbuffered output, quiet logs."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    ref = parse_device(device)
    kind_of(ref).worker_env(ref, env)
    return env
