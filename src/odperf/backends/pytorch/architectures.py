"""The builder registry: small torchvision detectors by architecture name and keyword arguments.

``odperf_model.json`` records ``architecture`` and its ``kwargs``; ``build(architecture, **kwargs)``
makes the same untrained module again, into which the saved state_dict loads. ``num_classes`` counts
the classifier's outputs: for Faster R-CNN the background (label 0) plus the largest category id, as
in torchvision's COCO models; for FCOS, which has no background class, the number of categories (see
``specs.TorchModelSpec.labels``).

Tiles are not resized (``min_size = max_size = input_size``, 300 for the workload's tiles): torchvision
would otherwise upscale a 300x300 tile to 800 px, 7x the work. Both normalise pixels to [-1, 1]
(mean 0.5, std 0.5) rather than ImageNet statistics, since nothing was pretrained.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable

from odperf.backends.pytorch.triton_guard import keep_triton_out

keep_triton_out()  # before torchvision loads: see triton_guard

from torch import nn

from odperf.engine.portable_torch import BUILDERS as _PORTABLE, ArchitectureError, tuples
from odperf.errors import ModelError

# The builders live in the worker core's PyTorch half, so a board with an older torchvision builds the same
# modules (engine/portable_torch.py).
BUILDERS: dict[str, Callable[..., nn.Module]] = dict(_PORTABLE)


def _builder(architecture: str) -> Callable[..., nn.Module]:
    builder = BUILDERS.get(architecture)
    if builder is None:
        raise ModelError(f"no torch architecture named {architecture!r}; choose one of: {', '.join(BUILDERS)}")
    return builder


def full_kwargs(architecture: str, **kwargs: Any) -> dict[str, Any]:
    """Every argument of the builder, the defaults filled in, as JSON stores them (lists for tuples).

    The metadata records these, so a model still rebuilds as it was trained after a default changes.
    """
    builder = _builder(architecture)
    try:
        bound = inspect.signature(builder).bind(**kwargs)
    except TypeError as exc:
        raise ModelError(f"{architecture}: bad arguments {sorted(kwargs)} ({exc}); see "
                         f"odperf.backends.pytorch.architectures.{builder.__name__}") from exc
    bound.apply_defaults()
    return json.loads(json.dumps(dict(bound.arguments)))


def build(architecture: str, **kwargs: Any) -> nn.Module:
    """A fresh (untrained) detector of ``architecture``; lists come back as tuples, as JSON stores them."""
    builder = _builder(architecture)
    args = {k: tuples(v) for k, v in kwargs.items()}
    try:
        return builder(**args)
    except ArchitectureError as exc:
        raise ModelError(f"{architecture}: {exc}") from None
    except TypeError as exc:
        raise ModelError(f"{architecture}: bad arguments {sorted(kwargs)} ({exc}); see "
                         f"odperf.backends.pytorch.architectures.{builder.__name__}") from exc

