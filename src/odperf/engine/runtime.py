"""The environment a worker starts in: which device it may see, how its threads wait, and quiet runtime logs.

What happens inside the worker once it runs (devices, growth, memory caps) is each runtime's own business:
``odperf.backends``.

OpenMP threads wait as the runtime's defaults say, unless the caller's environment sets ``OMP_WAIT_POLICY``
(each record names the policy). PyTorch's CPU operators run on OpenMP with one thread per core, and GNU
OpenMP's default wait spins briefly at every barrier before it sleeps. That is what a deployment gets, and
on an idle machine it is the fastest: measured on a 2-core machine, fcos_tiny_torch took 9-11 ms per tile
at batch 1 with the default, 23 ms with ``OMP_WAIT_POLICY=PASSIVE`` (its threads sleep at once and each
barrier pays a wake-up), 7.5 against 9.8 ms at batch 8. With another process on one of the cores the
default's spinning threads compete with the descheduled one they wait for: 22-26 ms at batch 1 and 17-50 ms
at batch 8, against 14-18 and 12-13 ms passive (a case once collapsed 16x under a concurrent test run). So
the default is kept, for figures a deployment would see; on a machine shared with other work, set
``OMP_WAIT_POLICY=PASSIVE`` (the test command does, for its parallel tests): a shared core then slows a case
in proportion. The setting is read once, when the OpenMP library loads, so it goes in the environment before
the worker starts.
"""

from __future__ import annotations

import os

from odperf.measure.devices import parse_device
from odperf.measure.kinds import kind_of

SHARED_MACHINE_POLICY = "PASSIVE"  # OMP_WAIT_POLICY for a machine shared with other work (see above)


def worker_env(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker on ``device``: what its kind of device lets it see (``measure.kinds``),
    unbuffered output, quiet logs."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    ref = parse_device(device)
    kind_of(ref).worker_env(ref, env)
    return env
