"""The benchmark matrix: which (model, batch size, device) cases a run holds, their ids and markers.

Ids never name the machine (``tiny_centernet-b64-cpu``, ``ssd_mobilenet_v2-b64-gpu``) so that
pytest-benchmark's ``--benchmark-compare`` matches a run on one GPU with a run on another benchmark by
benchmark. The hardware is carried by markers (``gpu``, ``v100``, ``v100_sxm2``...) so that ``-k v100`` and
``-m tx2`` select by it, and by the machine_info saved beside the results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from odperf.backends.names import DEFAULT
from odperf.errors import OdperfError
from odperf.util.names import slug
from odperf.suite.expectations import ModelTags
from odperf.workload import PAPER_BATCH_SIZES, PAPER_GRID
from odperf.zoo.registry import FAMILIES, MAP_GROUPS, META_ARCHS, ExportedModel, path_model_name

MAX_BATCH = PAPER_GRID.tiles_per_image
EMULATED_MARKER = "emulated"


@dataclass(frozen=True)
class Target:
    """A device a case runs on: ``device`` for the worker ("cpu", "gpu:0"), ``label`` for ids.

    ``profile`` is what results are filed and compared under: the real hardware's profile, or a name of
    the emulation's own (``p100_on_h100``, ``cpu_400mb``), never a real profile the run did not run on.
    ``rules_profile`` is whose expectations apply (``p100`` when emulating one).
    """

    device: str
    label: str
    profile: str
    markers: tuple[str, ...]
    memory_mb: float | None = None
    emulated_from: str | None = None  # the real profile when this target emulates another
    rules_profile: str | None = None  # None: the profile itself

    @property
    def expectations_profile(self) -> str:
        return self.rules_profile or self.profile


@dataclass(frozen=True)
class ModelRef:
    """A model as the suite sees it: a registry entry or a path to a user's exported detector."""

    name: str
    ref: str  # what the loader is given: registry name or path
    meta_arch: str | None = None
    family: str | None = None
    map_group: str | None = None
    backend: str = DEFAULT  # the runtime that reads it (odperf.backends); a marker too
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
    def params(self) -> dict[str, str | int]:
        """The case as plain values, pytest-benchmark's ``params`` (its group-by, compare and histogram)."""
        return {"model": self.model.name, "batch": self.batch_size, "device": self.target.label,
                "backend": self.model.backend}

    @property
    def accuracy_id(self) -> str:
        """Accuracy does not depend on the batch size: one case per model and target."""
        return f"{self.model.name}-{self.target.label}"

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.model.markers + self.target.markers))


def model_refs(selected: Iterable[object], model_dir: str | None = None) -> list[ModelRef]:
    """ModelRefs from the registry's selection (ModelSpecs, paths, NAME=PATH models); names must be unique.

    Results are filed and compared by model name, so two models of one name would hide each other: that
    is refused, with the fix (``NAME=PATH`` names a path explicitly). A path's runtime is the one that
    reads its files.
    """
    out: list[ModelRef] = []
    for item in selected:
        if isinstance(item, ExportedModel):
            out.append(ModelRef(name=item.name, ref=str(item.path), family="custom"))
        elif isinstance(item, (str, Path)):
            out.append(ModelRef(name=slug(path_model_name(Path(item)), empty="model"), ref=str(item), family="custom"))
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
    _refuse_duplicate_names(out)  # before reading any file: the naming fault is the one to report
    return [replace(r, backend=_runtime_of(r.name, Path(r.ref))) if r.family == "custom" else r for r in out]


def _runtime_of(name: str, path: Path) -> str:
    """The runtime that reads the detector at ``path``; one line naming the model when none does."""
    from odperf.backends import find_artifact
    from odperf.errors import ModelError

    try:
        return find_artifact(Path(path).expanduser())[0]
    except ModelError as exc:
        raise OdperfError(f"--odperf-models: {name}: {exc}") from None


def _untrained(spec: object, model_dir: str | None) -> bool:
    """A registry architecture with no weights file in the model folder runs with random weights."""
    if getattr(spec, "architecture", None) is None:
        return False
    from odperf.backends import get_backend

    backend = get_backend(getattr(spec, "backend", DEFAULT))
    return backend.weights_for(spec.local_dir(model_dir)) is None  # type: ignore[attr-defined]


def _refuse_duplicate_names(refs: Sequence[ModelRef]) -> None:
    by_name: dict[str, list[ModelRef]] = {}
    for ref in refs:
        by_name.setdefault(ref.name, []).append(ref)
    for name, same in by_name.items():
        if len(same) > 1:
            given = ", ".join(r.ref for r in same)
            fix = ",".join(f"{name}_{i + 1}={r.ref}" if r.family == "custom" else r.ref for i, r in enumerate(same))
            raise OdperfError(
                f"--odperf-models: {len(same)} models would be named {name!r} ({given}) and one would hide the "
                f"other in the results; name each path yourself with NAME=PATH, e.g. --odperf-models={fix}"
            )


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
    too_big = [b for b in sizes if b > MAX_BATCH]
    if too_big:
        raise OdperfError(
            f"--odperf-batch-sizes={text}: a batch holds at most {MAX_BATCH} tiles, the tiles of one camera image "
            f"({PAPER_GRID.image_tiles} of {PAPER_GRID.tile}x{PAPER_GRID.tile} px plus {PAPER_GRID.blank_tiles} blank), so batch {too_big[0]} would run as batch {MAX_BATCH} again; "
            f"use sizes from 1 to {MAX_BATCH}"
        )
    return tuple(dict.fromkeys(sizes))


def build_cases(models: Sequence[ModelRef], batch_sizes: Sequence[int], targets: Sequence[Target]) -> list[Case]:
    """Every model x batch size x target, in that nesting (one model's batches stay together)."""
    return [Case(m, b, t) for t in targets for m in models for b in batch_sizes]


def marker_catalogue(models: Iterable[object] = (), device_markers: Iterable[str] = ()) -> dict[str, str]:
    """Every marker a case can carry, with a description: families, meta-architectures, mAP groups, runtimes
    and device profiles, from the registry's and the device table's own values, and the benchmarks' kinds (so
    ``--strict-markers`` never meets one it does not know, whatever the ini file lists)."""
    out = {f: f"model family {f}" for f in (*FAMILIES, "custom")}
    for arch in sorted({*META_ARCHS, *(getattr(m, "meta_arch", None) or "" for m in models)} - {""}):
        out[arch] = f"meta-architecture {arch}"
    out.update({f"map_{g}": f"mAP group {g.capitalize()}" for g in MAP_GROUPS})
    from odperf.backends import BACKENDS

    out.update({b: f"runs on the {b} runtime" for b in BACKENDS})
    for marker in device_markers:
        out.setdefault(marker, "device profile (fixtures/devices.toml or detected)")
    out[EMULATED_MARKER] = "runs on an emulated device (a memory cap on real hardware)"
    out["timing"] = "times inference (refuses xdist)"
    out["accuracy"] = "computes COCO mAP"
    return out
