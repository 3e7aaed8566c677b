"""The runtimes odperf knows, by name, and the default one: the one place a framework is named outside its
own backend module (the registry, the request, the matrix and the contract take the default from here)."""

from __future__ import annotations

# name -> module; the first is the default (the paper's runtime)
BACKENDS: dict[str, str] = {
    "tensorflow": "odperf.backends.tensorflow",
    "torch": "odperf.backends.pytorch",
}
DEFAULT = next(iter(BACKENDS))
BOARD = "tensorflow"  # the runtime an edge board's worker core starts (engine/portable.py: TF 1.15 or 2.x)
