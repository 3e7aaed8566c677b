"""``odperf_model.json``: the description every embedded or described model folder carries, whatever runtime.

The trainers write it, the registry reads it to list a model, the PyTorch runtime reads it to rebuild an
architecture. One reader and one writer, so the file reads the same everywhere and a broken one is one
clear error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from odperf.errors import ModelError

MODEL_FILE = "odperf_model.json"


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The JSON object in ``folder/odperf_model.json``; ModelError naming the file and the fix if it is not."""
    path = Path(folder) / MODEL_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable model description ({exc}); retrain the model with "
                         f"`odperf zoo train {Path(folder).name}` or rewrite the file") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: expected a JSON object describing the model")
    return meta


def write_metadata(folder: str | Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    (Path(folder) / MODEL_FILE).write_text(text, encoding="utf-8")
