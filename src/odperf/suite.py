"""The benchmark matrix: which (model, batch size, device) cases a run holds, their ids and markers.

Ids never name the machine (``tiny_centernet-b64-cpu``, ``ssd_mobilenet_v2-b64-gpu``) so that
pytest-benchmark's ``--benchmark-compare`` matches a run on one GPU with a run on another benchmark by
benchmark. The hardware is carried by markers (``gpu``, ``v100``, ``v100_sxm2``...) so that ``-k v100`` and
``-m tx2`` select by it, and by the machine_info saved beside the results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from odperf.errors import OdperfError
from odperf.expectations import ModelTags
from odperf.workload import PAPER_BATCH_SIZES
from odperf.zoo.registry import MAP_GROUPS



@dataclass(frozen=True)
class Target:
    """A device a case runs on: ``device`` for the worker ("cpu", "gpu:0"), ``label`` for ids."""

    device: str
    label: str
    profile: str  # device profile name used for expectations (the emulated one when emulating)
    markers: tuple[str, ...]
    memory_mb: float | None = None
    emulated_from: str | None = None  # the real profile when this target emulates another


@dataclass(frozen=True)
class ModelRef:
    """A model as the suite sees it: a registry entry or a path to a user's exported detector."""

    name: str
    ref: str  # what the loader is given: registry name or path
    meta_arch: str | None = None
    family: str | None = None
    map_group: str | None = None
    backend: str = "tensorflow"  # the runtime that reads it (odperf.backends); a marker too
    untrained: bool = False  # random weights (an architecture without the user's weights): no mAP

    @property
    def tags(self) -> ModelTags:
        return ModelTags(self.name, self.meta_arch, self.family, self.map_group)

    @property
    def markers(self) -> tuple[str, ...]:
        out = [m for m in (self.meta_arch, self.family, self.backend) if m]
        if self.map_group and self.map_group.lower() in MAP_GROUPS:
            out.append(f"map_{self.map_group.lower()}")  # the registered markers map_highest ... map_lowest
        return tuple(out)


@dataclass(frozen=True)
class Case:
    model: ModelRef
    batch_size: int
    target: Target

    @property
    def id(self) -> str:
        return f"{self.model.name}-b{self.batch_size}-{self.target.label}"

    @property
    def accuracy_id(self) -> str:
        """Accuracy does not depend on the batch size: one case per model and target."""
        return f"{self.model.name}-{self.target.label}"

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.model.markers + self.target.markers))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "model"


def model_refs(selected: Iterable[object], model_dir: str | None = None) -> list[ModelRef]:
    """ModelRefs from the registry's selection (ModelSpec objects or paths to exported detectors)."""
    from odperf.backends import find_artifact
    from odperf.zoo.loaders import path_label

    out: list[ModelRef] = []
    for item in selected:
        if isinstance(item, (str, Path)):
            p = Path(item)
            backend = find_artifact(p)[0]
            out.append(ModelRef(name=slug(path_label(p)), ref=str(p), family="custom", backend=backend))
        else:
            out.append(
                ModelRef(
                    name=item.name,
                    ref=item.name,
                    meta_arch=getattr(item, "meta_arch", None),
                    family=getattr(item, "family", None),
                    map_group=getattr(item, "map_group", None),
                    backend=item.backend,
                    untrained=_untrained(item, model_dir),
                )
            )
    return out


def _untrained(spec: object, model_dir: str | None) -> bool:
    """A registry architecture with no weights file in the model folder runs with random weights."""
    if getattr(spec, "architecture", None) is None:
        return False
    from odperf.backends.pytorch import weights_file

    return weights_file(spec.local_dir(model_dir)) is None  # type: ignore[attr-defined]


def parse_batch_sizes(text: str | Sequence[int] | None) -> tuple[int, ...]:
    if text is None or text == "" or text == "paper":
        return PAPER_BATCH_SIZES
    if not isinstance(text, str):
        return tuple(int(b) for b in text)
    try:
        sizes = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise OdperfError(
            f"--odperf-batch-sizes: expected comma-separated positive integers like 1,8,64, got {text!r}"
        ) from None
    if not sizes or any(b < 1 for b in sizes):
        raise OdperfError(f"--odperf-batch-sizes: batch sizes must be positive integers, got {text!r}")
    return tuple(dict.fromkeys(sizes))


def build_cases(models: Sequence[ModelRef], batch_sizes: Sequence[int], targets: Sequence[Target]) -> list[Case]:
    """Every model x batch size x target, in that nesting (one model's batches stay together)."""
    return [Case(m, b, t) for t in targets for m in models for b in batch_sizes]
