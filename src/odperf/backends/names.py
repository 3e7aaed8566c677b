"""The runtimes odperf knows, by name, and the default one: the one place a framework is named outside its
own backend module (the registry, the request, the matrix and the contract take the default from here)."""

from __future__ import annotations

# name -> module; the first is the default (the paper's runtime)
BACKENDS: dict[str, str] = {
    "tensorflow": "odperf.backends.tensorflow",
    "torch": "odperf.backends.pytorch",
}
DEFAULT = next(iter(BACKENDS))
# the runtimes an edge board's worker core starts (engine/portable_board.py: TensorFlow 1.15 or 2.x frozen graphs;
# engine/portable_torch.py: odperf's embedded PyTorch architectures, torch 1.10 and newer)
BOARD_RUNTIMES = ("tensorflow", "torch")
