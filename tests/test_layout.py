"""The house's layout, read from the imports themselves: no import circle, and no import that runs up a layer.

Every module of ``src/odperf`` belongs to a unit (a top-level module or a sub-package), and every unit to a
layer; data flows up the list (dataset -> workload -> engine -> measurements -> results -> reports), so a
unit may import its own layer and those below, never one above. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "odperf"

LAYERS: list[tuple[str, ...]] = [  # lowest first
    ("odperf", "odperf.errors", "odperf.util"),  # plumbing every layer may use
    ("odperf.workload", "odperf.results"),  # the core records: camera images, saved measurements
    ("odperf.datasets", "odperf.backends"),  # images and annotations; the runtimes and their contract
    ("odperf.zoo", "odperf.measure"),  # models in the runtimes; devices, memory, scoring
    ("odperf.engine",),  # a worker process per case
    ("odperf.stream", "odperf.pipeline"),  # LoadGen streams and the broker pipeline over the engine
    ("odperf.suite",),  # the benchmark matrix, its state, expectations, the one launcher of the suite
    ("odperf.report",),  # reading saved runs: tables, figures, compare, gate
    ("odperf.plugin", "odperf.scaleout"),  # a measuring pytest session; the matrix over a Ray cluster
    ("odperf.commands",),  # odperf bench, ab, validate, gpu_check
    ("odperf.cli", "odperf.pytest_plugin", "odperf.checks", "odperf.gpu_check"),  # entry points users name
]
# Modules that import nothing of odperf, whatever package holds them, sit below every layer: the worker core
# and its board side run alone on an edge board (Python 3.6, numpy and the board's framework), and the datasets build camera
# images with its code, so that a local run and a board build them the same way; its PyTorch half holds the
# embedded PyTorch architectures, which the PyTorch backend builds from too.
SELF_CONTAINED = ("odperf.engine.portable", "odperf.engine.portable_board", "odperf.engine.portable_torch")
LAYER_OF = {unit: n for n, units in enumerate(LAYERS) for unit in units} | {m: -1 for m in SELF_CONTAINED}
LOOSE_AT_TOP = 10  # at most this many modules directly in src/odperf/


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The odperf modules ``path`` imports (absolute or relative, at top level or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "odperf"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            if base.split(".")[0] == "odperf":  # a submodule by name, else the module the names come from
                out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return out


def resolve(target: str) -> str | None:
    """The module an import names (``from odperf.x import name`` names odperf.x, or its submodule)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def unit_of(module: str) -> str:
    if module in SELF_CONTAINED:
        return module
    parts = module.split(".")
    if len(parts) == 1:
        return module
    top = ".".join(parts[:2])
    return top


GRAPH = {m: {t for t in map(resolve, imports_of(p)) if t and t != m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_import_circle() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_circle_between_packages() -> None:
    units: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        units.setdefault(unit_of(m), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(m))
    assert _cycles(units) == []


def test_a_self_contained_module_imports_nothing_of_odperf_but_the_others() -> None:
    """(The board's side imports the core: on a board, the copy its bootstrap loaded; tests/test_board.py
    runs it so under Python 3.6.)"""
    assert {m: sorted(GRAPH[m] - set(SELF_CONTAINED)) for m in SELF_CONTAINED} == {m: [] for m in SELF_CONTAINED}


def test_every_unit_has_a_layer() -> None:
    assert sorted({unit_of(m) for m in MODULES} - set(LAYER_OF)) == []


def test_no_import_runs_up_a_layer() -> None:
    upward = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                    if LAYER_OF.get(unit_of(t), -1) > LAYER_OF.get(unit_of(m), 99))
    assert upward == []


def test_the_top_of_the_package_holds_few_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_AT_TOP, loose


@pytest.mark.parametrize("probe", [
    "from odperf.checks import check_run",  # a team's own benchmark file
    "import odperf.pytest_plugin",  # the pytest11 entry point and conftest.py's pytest_plugins
    "from odperf.cli import main",  # the odperf command
    "import odperf.gpu_check",  # python -m odperf.gpu_check
])
def test_the_names_users_type_still_import(probe: str) -> None:
    exec(probe, {})  # noqa: S102 (fixed strings above)


def test_a_circle_and_an_upward_import_are_found() -> None:
    """The checks above can fail: a planted circle and a planted upward import are reported."""
    planted = {"odperf.engine.a": {"odperf.engine.b"}, "odperf.engine.b": {"odperf.engine.a"}}
    assert _cycles(planted) == [["odperf.engine.a", "odperf.engine.b"]]
    assert LAYER_OF[unit_of("odperf.report.gate")] > LAYER_OF[unit_of("odperf.engine.worker")]
