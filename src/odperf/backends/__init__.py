"""Inference runtimes behind one seam: a module per runtime, one line each in ``BACKENDS``.

Adding a runtime is one module (``odperf/backends/<name>/``, exposing ``BACKEND``: see ``base.Backend``)
plus its line here. The engine, the suite, the results and the reports name no framework: they carry the
backend's name. Backend modules import their framework only inside the worker, so this registry can be
read where a framework is missing.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path

from odperf.backends.base import Backend, RuntimeInfo, version_of
from odperf.backends.names import BACKENDS, DEFAULT
from odperf.errors import ModelError, OdperfError


__all__ = ["BACKENDS", "DEFAULT", "Backend", "RuntimeInfo", "check_model", "find_artifact", "get_backend",
           "installed"]


@lru_cache(maxsize=None)
def get_backend(name: str) -> Backend:
    """The backend called ``name``; OdperfError naming the known ones for anything else."""
    module = BACKENDS.get(name)
    if module is None:
        raise OdperfError(f"unknown runtime {name!r}; odperf knows: {', '.join(BACKENDS)}")
    return importlib.import_module(module).BACKEND


def find_artifact(path: Path) -> tuple[str, str, Path]:
    """(backend, format, artifact) for a model file or folder, asking each runtime in turn."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file or folder")
    for name in BACKENDS:
        found = get_backend(name).find_artifact(path)
        if found is not None:
            return (name, *found)
    what = (", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing") if path.is_dir() else path.name
    expected = "; ".join(f"{n}: {get_backend(n).expects}" for n in BACKENDS)
    raise ModelError(f"{path}: holds no detector (expected {expected}; found {what})")


def check_model(path: str | Path, deep: bool = True) -> str:
    """The format of the detector at ``path``, checked by its runtime without importing the framework
    (a typo or a truncated download costs milliseconds in the parent, not a worker per case)."""
    backend, fmt, artifact = find_artifact(Path(path).expanduser())
    return get_backend(backend).check(fmt, artifact, deep)


def installed() -> dict[str, str | None]:
    """Each runtime's installed version (None where it is not installed), without importing any."""
    return {name: version_of(get_backend(name).distribution) for name in BACKENDS}
