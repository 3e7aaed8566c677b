"""Names odperf makes up from free text: profile names of unknown GPUs, names of models given by path."""

from __future__ import annotations

import re


def slug(text: str, empty: str = "unknown") -> str:
    """``"NVIDIA GeForce RTX 4090"`` -> ``"nvidia_geforce_rtx_4090"``: lower case, ``_`` between words,
    usable as a marker, a profile name and an id; ``empty`` when nothing is left."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or empty
