"""The environment a worker starts in: which GPU it may see, and quiet runtime logs.

What happens inside the worker once it runs (devices, growth, memory caps) is each runtime's own business:
``odperf.backends``.
"""

from __future__ import annotations

import os


def worker_env(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker on ``device``: the GPU it may see (none for cpu), growth on, quiet logs.

    ``gpu:N`` is the N-th GPU odperf was given: the worker sees that one entry of the inherited
    ``CUDA_VISIBLE_DEVICES`` (index, UUID or MIG id, as the scheduler wrote it), the card whose NVML
    handle the probes read; with nothing inherited it sees NVML's index N.
    """
    from odperf.measure.visible_gpus import worker_entry

    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        env["CUDA_VISIBLE_DEVICES"] = worker_entry(device, env)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # integer entries count as NVML counts, as the probes do
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    return env
