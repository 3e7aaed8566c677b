"""Whether a pytest run reaches benchmarks that use odperf's fixtures, decided before collection.

odperf checks its inputs and prepares a measuring run once, at configure time (before any worker or xdist
process starts), so it must know then whether the run's paths hold odperf benchmarks: the shipped suite
(``benchmarks/`` of a checkout, ``odperf.benchmarks`` installed, by path or ``--pyargs``) or a team's own
benchmark files in its own repository. A test module counts when one of its functions takes a case fixture;
modules are parsed, not imported, and folders are walked as pytest walks them (``python_files``,
``norecursedirs``), so ``pytest tests`` of a library never pays for a measuring run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterable, Sequence

STREAM_FIXTURE = "odperf_stream_case"
PIPELINE_FIXTURE = "odperf_pipeline_case"
MEASURED_FIXTURES = ("odperf_case", "odperf_accuracy_case")  # a timed or scored case, parametrised per model
CASE_FIXTURES = frozenset({*MEASURED_FIXTURES, STREAM_FIXTURE, PIPELINE_FIXTURE})


def arg_paths(args: Iterable[str], invocation_dir: Path, pyargs: bool) -> list[Path]:
    """The files and folders pytest's arguments name (node ids cut at ``::``; with --pyargs, a module name
    resolves to its file or package folder)."""
    out = []
    for arg in args:
        raw = str(arg).split("::", 1)[0]
        path = (invocation_dir / raw).resolve()
        if not path.exists() and pyargs:
            path = _module_path(raw) or path
        out.append(path)
    return out


def _module_path(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("namespace", "built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def uses_case_fixture(module: Path, fixtures: frozenset[str] = CASE_FIXTURES) -> bool:
    """Whether a function of this module takes one of ``fixtures`` (odperf's case fixtures; a module that does
    not parse is left to pytest to report)."""
    try:
        tree = ast.parse(module.read_bytes(), filename=str(module))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and fixtures & {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)}
        for node in ast.walk(tree)
    )


def _test_modules(folder: Path, python_files: Sequence[str], norecurse: Sequence[str]) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not any(fnmatch(d, pattern) for pattern in norecurse)]
        for name in files:
            if name.endswith(".py") and any(fnmatch(name, pattern) for pattern in python_files):
                yield Path(root) / name


def reaches_benchmarks(paths: Iterable[Path], python_files: Sequence[str], norecurse: Sequence[str]) -> bool:
    """Whether any named test file, or any test module under a named folder, uses a case fixture."""
    for path in paths:
        if path.is_file() and uses_case_fixture(path):
            return True
        if path.is_dir() and any(uses_case_fixture(m) for m in _test_modules(path, python_files, norecurse)):
            return True
    return False


def names_stream_module(paths: Iterable[Path]) -> bool:
    """Whether a test file named on the command line (not a folder) holds stream benchmarks: naming one is
    asking for the streams, which a folder's run leaves out (they take minutes)."""
    return any(p.is_file() and uses_case_fixture(p, frozenset({STREAM_FIXTURE})) for p in paths)
