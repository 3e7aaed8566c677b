"""Command-line hook of the embedded detectors.

The zoo's command owns the ``odperf zoo ...`` namespace, so this module adds no sub-command of its own:
``odperf zoo train NAME`` calls :func:`odperf.zoo.embedded.train.train` with this signature::

    train(name: str, out_dir: str | Path, dataset_root: str | Path | None = None, seed: int = 0,
          steps: int | None = None, batch_size: int | None = None,
          train_split: str = "train2017", val_split: str = "val2017",
          n_val: int | None = None, log: Callable[[str], None] = print) -> dict

It writes ``out_dir/NAME/saved_model`` and ``out_dir/NAME/odperf_model.json`` (the committed models live
in ``fixtures/models``) and returns the metadata written. ``NAME`` is one of :data:`MODEL_NAMES`.
"""

from __future__ import annotations

import argparse

from odperf.zoo.embedded.specs import SPECS

MODEL_NAMES: tuple[str, ...] = tuple(SPECS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Nothing to add: see the module docstring for what ``odperf zoo train`` calls."""
