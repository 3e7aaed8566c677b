"""The model registry: every detector odperf can name, and selectors that pick sets of them.

Four families share one record, ``ModelSpec``:
- ``paper``: the paper's 22 TF1 zoo detectors (ids A..V), with reported and tested mAP;
- ``tf2``: the closest TF2 zoo successors (batch-1 SavedModels; see ``loaders``);
- ``embedded``: the small detectors that ship in ``fixtures/models/<name>/``, described by the
  ``odperf_model.json`` their trainer writes. The folder may be empty while they train: the registry then
  simply holds no embedded model. Each names its runtime (``"backend"``: tensorflow or torch);
- ``torchvision``: torchvision's full-size detection architectures (PyTorch), built with random weights
  unless the user's weights file is in the model folder (``odperf.zoo.torchvision_catalog``).

mAP groups. The paper's Table I sorts the models by reported mAP into five groups. Read off the table,
the boundaries on reported mAP (percent) are:

    Highest  >= 40      faster_rcnn_nas (43)
    High     [35, 40)   faster_rcnn / mask_rcnn incept_resnet_v2_atrous (37, 36), ssd_resnet50_fpn (35)
    Medium   [29, 35)   mask_rcnn_resnet101_atrous (33) .. mask_rcnn_resnet50_atrous (29)
    Low      [24, 29)   faster_rcnn_incept_v2 (28), mask_rcnn_incept_v2 (25), ssd_inception_v2 (24)
    Lowest   < 24       ssdlite / ssd_mobilenet_v2 (22) .. ssd_mobilenet_v1_0.75_depth (18)

Medium starts at 29, not 30, because the table puts mask_rcnn_resnet50_atrous (29) in Medium. The
lowproposals models have no reported mAP and no group ("n/a" in the paper). TF2 models are grouped by
their own reported mAP the same way; embedded models by their measured mAP on the synthetic set (only
comparable among themselves) unless their ``odperf_model.json`` names a group.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from odperf.backends.names import DEFAULT
from odperf.errors import ModelError
from odperf.util.package_data import fixtures_dir
from odperf.results import MAP_GROUPS
from odperf.zoo import catalog, torchvision_catalog
from odperf.zoo.metadata import MODEL_FILE, read_metadata

FAMILIES = ("paper", "tf2", "embedded", "torchvision")
META_ARCHS = ("ssd", "ssdlite", "faster_rcnn", "rfcn", "mask_rcnn", "retinanet", "fcos", "centernet")
# lower bound (percent, inclusive) of each group, best first; below the last bound is "lowest"
GROUP_BOUNDS: tuple[tuple[str, float], ...] = (("highest", 40.0), ("high", 35.0), ("medium", 29.0), ("low", 24.0))


def map_group(map_percent: float | None) -> str | None:
    """The paper's mAP group for a mAP in percent; None when there is no figure (lowproposals)."""
    if map_percent is None:
        return None
    for group, lower in GROUP_BOUNDS:
        if map_percent >= lower:
            return group
    return "lowest"


@dataclass(frozen=True)
class TF2Equivalent:
    """The TF2 zoo model that replaces a TF1 one, where there is one."""

    name: str
    tarball: str
    url: str


@dataclass(frozen=True)
class ModelSpec:
    """One detector the registry knows: where it comes from and what was reported or measured for it."""

    name: str
    family: str
    meta_arch: str
    feature_extractor: str
    paper_id: str | None = None
    tarball: str | None = None
    url: str | None = None
    reported_ms: float | None = None  # ms per 600x600 image on a GTX TITAN X (zoo table)
    reported_map: float | None = None  # COCO mAP, percent (zoo table); None for lowproposals
    tested_map: float | None = None  # the paper's Table I "mAP Tested", percent, where legible
    map_group: str | None = None
    input_size: tuple[int, int] | None = None  # see ``resizer``
    resizer: str = catalog.FIXED  # "fixed": (height, width); "keep_aspect": (min_dim, max_dim)
    tf2_equivalent: TF2Equivalent | None = None
    sha256: str | None = None
    size: int | None = None  # bytes of the tarball
    path: Path | None = None  # embedded models: the exported detector's folder
    measured: dict[str, Any] = field(default_factory=dict, compare=False)  # embedded: odperf_model.json
    aliases: tuple[str, ...] = ()
    backend: str = DEFAULT  # the runtime that reads it (odperf.backends)
    architecture: str | None = None  # a builder the runtime knows: no file needed, weights optional

    @property
    def measured_map(self) -> float | None:
        """Embedded models: mAP measured on the synthetic set, percent."""
        value = self.measured.get("map")
        if value is None:
            return None
        return float(value) * 100.0 if float(value) <= 1.0 else float(value)

    def local_dir(self, model_dir: str | Path | None = None) -> Path:
        """Where this model is (embedded) or would be once fetched (zoo)."""
        if self.path is not None:
            return self.path
        if self.architecture is not None:  # where a user's weights for it would be
            return resolve_model_dir(model_dir) / self.name
        if self.tarball is None:
            raise ModelError(f"model {self.name}: has neither a path nor a tarball")
        return resolve_model_dir(model_dir) / self.tarball

    def is_present(self, model_dir: str | Path | None = None) -> bool:
        if self.architecture is not None:
            return True  # built by its runtime; trained only where weights are found
        try:
            folder = self.local_dir(model_dir)
        except ModelError:
            return False
        if not folder.is_dir():
            return False
        from odperf.backends import get_backend

        return get_backend(self.backend).find_artifact(folder) is not None


class ModelMissing(ModelError):
    """A registry model whose tarball has not been fetched into the model folder."""


def require_local(spec: ModelSpec, model_dir: str | Path | None = None) -> Path:
    """The folder holding ``spec`` on disk, or ModelMissing saying how to fetch it (or its runtime)."""
    from odperf.backends import get_backend, version_of

    runtime = get_backend(spec.backend)
    if version_of(runtime.distribution) is None:
        raise ModelMissing(f"model {spec.name} runs on {spec.backend}, which is not installed here: "
                           f"pip install {runtime.distribution} (or odperf's [{spec.backend}] extra)")
    folder = spec.local_dir(model_dir)
    if spec.is_present(model_dir):
        return folder
    if spec.family == "embedded":
        raise ModelMissing(f"embedded model {spec.name}: no exported detector in {folder}; "
                           f"train it with `odperf zoo train {spec.name}`")
    where = resolve_model_dir(model_dir)
    raise ModelMissing(
        f"model {spec.name} is not in {where} (expected {folder}). Download {spec.url} with "
        f"`odperf zoo fetch {spec.name} --model-dir {where}`, or point ODPERF_MODEL_DIR at a folder "
        "holding the extracted tarball."
    )


# --- locations ----------------------------------------------------------------------------------
def resolve_model_dir(model_dir: str | Path | None = None) -> Path:
    """Folder of extracted zoo tarballs: the argument, else ``ODPERF_MODEL_DIR``, else the user cache."""
    if model_dir is not None:
        return Path(model_dir).expanduser()
    env = os.environ.get("ODPERF_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/odperf/models").expanduser()


# --- building the registry ----------------------------------------------------------------------
def _tf2_specs() -> list[ModelSpec]:
    out = []
    for name, arch, fe, tarball, ms, mAP, size in catalog.TF2_ROWS:
        out.append(
            ModelSpec(
                name=name, family="tf2", meta_arch=arch, feature_extractor=fe, tarball=tarball,
                url=f"{catalog.TF1_URL_BASE}/tf2/{catalog.TF2_DATE}/{tarball}.tar.gz",
                reported_ms=ms, reported_map=mAP, map_group=map_group(mAP), input_size=size,
                aliases=(tarball,),
            )
        )
    return out


def _paper_specs(tf2: Iterable[ModelSpec]) -> list[ModelSpec]:
    by_tarball = {s.tarball: s for s in tf2}
    out = []
    for name, pid, arch, fe, tarball, ms, rep, tested, size, resizer, tf2_tar, aliases in catalog.PAPER_ROWS:
        eq = None
        if tf2_tar is not None:
            t = by_tarball[tf2_tar]
            eq = TF2Equivalent(name=t.name, tarball=t.tarball or "", url=t.url or "")
        out.append(
            ModelSpec(
                name=name, family="paper", paper_id=pid, meta_arch=arch, feature_extractor=fe,
                tarball=tarball, url=f"{catalog.TF1_URL_BASE}/{tarball}.tar.gz", reported_ms=ms,
                reported_map=rep, tested_map=tested, map_group=map_group(rep), input_size=size,
                resizer=resizer, tf2_equivalent=eq, aliases=tuple(aliases) + (tarball,),
            )
        )
    return out


def _torchvision_specs() -> list[ModelSpec]:
    return [
        ModelSpec(name=name, family="torchvision", meta_arch=arch, feature_extractor=fe, reported_map=mAP,
                  map_group=map_group(mAP), backend="torch", architecture=name)
        for name, (arch, fe, mAP) in torchvision_catalog.ARCHITECTURES.items()
    ]


def _embedded_spec(folder: Path) -> ModelSpec:
    meta = read_metadata(folder)
    size = meta.get("input_size")
    if isinstance(size, int):
        size = (size, size)
    elif isinstance(size, (list, tuple)) and len(size) >= 2:
        size = (int(size[0]), int(size[1]))
    else:
        size = None
    spec = ModelSpec(
        name=str(meta.get("name") or folder.name), family="embedded",
        meta_arch=str(meta.get("meta_arch") or "unknown"),
        feature_extractor=str(meta.get("feature_extractor") or "unknown"),
        input_size=size, path=folder, measured=meta, backend=str(meta.get("backend") or DEFAULT),
    )
    group = meta.get("map_group")
    group = group.lower() if isinstance(group, str) and group.lower() in MAP_GROUPS else map_group(spec.measured_map)
    return replace(spec, map_group=group)


def embedded_models(fixtures: Path | None = None) -> list[ModelSpec]:
    """Embedded detectors found under ``fixtures/models``; a folder without its JSON is skipped."""
    root = (fixtures or fixtures_dir()) / "models"
    if not root.is_dir():
        return []
    return [_embedded_spec(p) for p in sorted(root.iterdir()) if (p / MODEL_FILE).is_file()]


def all_models() -> list[ModelSpec]:
    """Paper models (A..V), TF2 successors, torchvision's, then embedded models (read fresh from disk)."""
    tf2 = _tf2_specs()
    return _paper_specs(tf2) + tf2 + _torchvision_specs() + embedded_models()


def _index(models: Iterable[ModelSpec]) -> dict[str, ModelSpec]:
    index: dict[str, ModelSpec] = {}
    for spec in models:
        for key in (spec.name, *spec.aliases):
            index.setdefault(key.lower(), spec)
        if spec.paper_id:
            index.setdefault(spec.paper_id.lower(), spec)
    return index


def get(name: str | ModelSpec) -> ModelSpec:
    """A model by registry name, alias (the paper's spelling, the tarball name) or paper id (A..V)."""
    if isinstance(name, ModelSpec):
        return name
    models = all_models()
    index = _index(models)
    spec = index.get(name.lower())
    if spec is None and name in _untrained_embedded():
        raise ModelMissing(f"embedded model {name} has not been trained yet (no {MODEL_FILE} under "
                           f"{fixtures_dir() / 'models' / name}): run `odperf zoo train {name}`")
    if spec is None:
        raise ModelError(f"no model named {name!r} in the registry.{_close(name, models)}"
                         " `odperf zoo list` shows them all.")
    return spec


def _untrained_embedded() -> tuple[str, ...]:
    """Names the embedded trainers know (both runtimes'), whether or not their export is on disk yet."""
    from odperf.zoo.embedded import MODEL_NAMES
    from odperf.zoo.embedded_torch import MODEL_NAMES as TORCH_NAMES

    return (*MODEL_NAMES, *TORCH_NAMES)


def _close(name: str, models: list[ModelSpec], extra: Iterable[str] = ()) -> str:
    names = [m.name for m in models] + list(extra)
    close = difflib.get_close_matches(name.lower(), names, n=5, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _backend_names() -> tuple[str, ...]:
    from odperf.backends import BACKENDS

    return tuple(BACKENDS)


def looks_like_path(selector: str) -> bool:
    """Whether a model reference names a file or folder rather than a registry entry."""
    return os.sep in selector or "/" in selector or selector.endswith(".pb") or Path(selector).exists()


@dataclass(frozen=True)
class ExportedModel:
    """A user's exported detector given as ``NAME=PATH``: the name its results are filed under, and where."""

    name: str
    path: Path


_NAMED = re.compile(r"([^=/\\]+)=(.+)")
_NAME = re.compile(r"[A-Za-z0-9_]+")


def path_model_name(path: Path) -> str:
    """The name of an exported detector given by path: its folder, as the zoo lays models out.

    ``<name>/frozen_inference_graph.pb``, ``<name>/saved_model/`` and ``<name>/saved_model/saved_model.pb``
    are all ``<name>``; any other folder is its own name. Only that one folder name is used, never the
    rest of the path, so the same model is named alike on every machine.
    """
    p = Path(path).expanduser()
    if p.name in ("", ".", ".."):
        p = p.resolve()
    if p.suffix == ".pb" or p.is_file():  # a model file is named by its folder
        p = p.parent if p.parent.name else p.resolve().parent
    if p.name == "saved_model":  # the zoo's <name>/saved_model/
        p = p.parent if p.parent.name else p.resolve().parent
    return p.name or "model"


def select(selectors: Iterable[str]) -> list[ModelSpec | Path | ExportedModel]:
    """Models picked by selectors, in registry order, each once.

    A selector is a registry name (or alias, or paper id), a meta_arch, an mAP group, a family
    (``paper``, ``tf2``, ``embedded``, ``torchvision``), a runtime (``tensorflow``, ``torch``), ``all``, a
    path to an exported detector (returned as a Path), or ``NAME=PATH``: such a path under a name of the
    user's choosing (returned as an ExportedModel).
    """
    models = all_models()
    index = _index(models)
    picked: list[ModelSpec | Path | ExportedModel] = []
    seen: set[str] = set()

    def add(specs: Iterable[ModelSpec]) -> None:
        for s in specs:
            if s.name not in seen:
                seen.add(s.name)
                picked.append(s)

    for raw in selectors:
        sel = raw.strip()
        key = sel.lower()
        if key == "all":
            add(models)
        elif key in FAMILIES:
            add(m for m in models if m.family == key)
        elif key in _backend_names():
            add(m for m in models if m.backend == key)
        elif key in MAP_GROUPS or key.removeprefix("map_") in MAP_GROUPS:
            group = key.removeprefix("map_")
            add(m for m in models if m.map_group == group)
        elif key in index:
            add([index[key]])
        elif any(m.meta_arch == key for m in models) or key in META_ARCHS:
            add(m for m in models if m.meta_arch == key)
        elif _NAMED.fullmatch(sel) and not Path(sel).exists():
            name, where = _NAMED.fullmatch(sel).groups()  # type: ignore[union-attr]
            if not _NAME.fullmatch(name):
                raise ModelError(f"{sel}: the name {name!r} must be letters, digits and _ (it is part of test ids)")
            path = Path(where).expanduser()
            if not path.exists():
                raise ModelError(f"{sel}: no such model file or folder {path} (NAME=PATH names an exported detector)")
            picked.append(ExportedModel(name=name, path=path))
        elif looks_like_path(sel):
            path = Path(sel).expanduser()
            if not path.exists():
                raise ModelError(f"{path}: no such model file or folder (expected an exported detector)")
            if str(path) not in seen:
                seen.add(str(path))
                picked.append(path)
        elif sel in _untrained_embedded():
            get(sel)  # raises ModelMissing with the train command
        else:
            kinds = ["all", *FAMILIES, *_backend_names(), *MAP_GROUPS, *sorted({m.meta_arch for m in models})]
            raise ModelError(
                f"unknown model selector {sel!r}: not a registry name, meta_arch, mAP group, family, "
                f"'all', an existing path or NAME=PATH.{_close(sel, models, kinds)} Selectors: {', '.join(kinds)}; "
                "`odperf zoo list` shows the names."
            )
    return picked
