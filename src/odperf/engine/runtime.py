"""The environment a worker starts in: which device it may see, how its threads wait, and quiet runtime logs.

What happens inside the worker once it runs (devices, growth, memory caps) is each runtime's own business:
``odperf.backends``.

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, unless the caller's environment says otherwise).
PyTorch's CPU operators run on OpenMP with one thread per core, and GNU OpenMP's default wait spins at
every barrier: with another process on one of the cores, the spinning threads compete with the
descheduled one they wait for, each operator waits for a time slice, and a case collapsed 16x. Measured on
a 2-core machine under other work (fcos_tiny_torch, batch 8, median of 3): spinning 2.1-5.3 s wall for
0.7-1.0 s of CPU per batch; passive 0.1-0.6 s wall for 0.09-0.13 s of CPU; one thread 0.38-0.45 s. The
setting is read once, when the OpenMP library loads, so it is set here, before the worker starts.
"""

from __future__ import annotations

import os

from odperf.measure.devices import parse_device
from odperf.measure.kinds import kind_of

OMP_WAIT_POLICY = "PASSIVE"  # a waiting OpenMP thread sleeps: a shared core slows a case in proportion


def worker_env(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker on ``device``: what its kind of device lets it see (``measure.kinds``),
    unbuffered output, quiet logs."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    env["PYTHONUNBUFFERED"] = "1"
    ref = parse_device(device)
    kind_of(ref).worker_env(ref, env)
    return env
