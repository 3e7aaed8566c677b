"""Where odperf finds what it ships, and which pytest paths make a measuring run (both without installing)."""

from __future__ import annotations

from pathlib import Path

import pytest

import odperf
from odperf.plugin.discovery import arg_paths, names_stream_module, reaches_benchmarks, uses_case_fixture
from odperf.measure.devices import default_table_path
from odperf.util.package_data import fixtures_dir, shipped, benchmarks_dir
from odperf.zoo.embedded import models_dir

ROOT = Path(__file__).resolve().parents[1]
PYTHON_FILES = ["test_*.py", "*_test.py"]
NORECURSE = ["*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}"]


def test_a_checkout_finds_its_top_level_folders(monkeypatch):
    monkeypatch.delenv("ODPERF_FIXTURES", raising=False)
    assert fixtures_dir() == ROOT / "fixtures" and benchmarks_dir() == ROOT / "benchmarks"
    assert default_table_path() == ROOT / "fixtures" / "devices.toml"
    assert models_dir() == ROOT / "fixtures" / "models"
    assert not (Path(odperf.__file__).parent / "fixtures").exists()  # a source tree: nothing inside the package
    # (the installed layout, odperf/fixtures and odperf/benchmarks inside the package: test_wheel.py)


def test_odperf_fixtures_names_another_folder_and_unknown_names_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ODPERF_FIXTURES", str(tmp_path))
    assert fixtures_dir() == tmp_path and default_table_path() == tmp_path / "devices.toml"
    assert benchmarks_dir() == ROOT / "benchmarks"  # the override is for fixtures only
    with pytest.raises(ValueError, match="ships no folder 'tests'"):
        shipped("tests")


def _module(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_module_counts_when_a_function_takes_a_case_fixture(tmp_path):
    assert uses_case_fixture(ROOT / "benchmarks" / "test_inference.py")
    assert uses_case_fixture(ROOT / "benchmarks" / "test_accuracy.py")
    takes = _module(tmp_path / "a" / "test_team.py", "def test_x(benchmark, *, odperf_case):\n    pass\n")
    assert uses_case_fixture(takes)
    mentions = _module(tmp_path / "b" / "test_words.py", 'CODE = "def test_x(odperf_case): pass"\n'
                                                            "def test_y(odperf_suite):\n    pass\n")
    assert not uses_case_fixture(mentions)  # a string, or the suite fixture alone, is no benchmark
    broken = _module(tmp_path / "c" / "test_broken.py", "def test_x(odperf_case:\n")
    assert not uses_case_fixture(broken)  # left to pytest to report


def test_naming_a_file_of_stream_benchmarks_asks_for_the_streams_whatever_its_name(tmp_path):
    team = _module(tmp_path / "repo" / "bench" / "test_line.py", "def test_x(benchmark, odperf_stream_case): pass\n")
    timing = _module(tmp_path / "repo" / "bench" / "test_stream.py", "def test_x(odperf_case): pass\n")
    assert names_stream_module([team])
    assert names_stream_module(arg_paths(["benchmarks/test_stream.py::test_stream"], ROOT, pyargs=False))
    assert not names_stream_module([timing])  # the file's name is not what counts
    assert not names_stream_module([tmp_path / "repo" / "bench"])  # a folder's run leaves the streams out
    assert not names_stream_module([ROOT / "benchmarks"])


def test_folders_are_walked_as_pytest_walks_them(tmp_path):
    _module(tmp_path / "repo" / "venv" / "test_hidden.py", "def test_x(odperf_case): pass\n")
    _module(tmp_path / "repo" / "bench" / "helpers.py", "def test_x(odperf_case): pass\n")
    _module(tmp_path / "repo" / "tests" / "test_lib.py", "def test_x(): pass\n")
    assert not reaches_benchmarks([tmp_path / "repo"], PYTHON_FILES, NORECURSE)
    _module(tmp_path / "repo" / "bench" / "detector_test.py", "def test_x(odperf_accuracy_case): pass\n")
    assert reaches_benchmarks([tmp_path / "repo"], PYTHON_FILES, NORECURSE)
    assert not reaches_benchmarks([tmp_path / "repo" / "tests"], PYTHON_FILES, NORECURSE)


def test_arguments_resolve_node_ids_and_module_names(tmp_path):
    suite = ROOT / "benchmarks"
    assert arg_paths(["benchmarks/test_inference.py::test_inference[x]"], ROOT, pyargs=False) == [
        suite / "test_inference.py"]
    assert arg_paths(["odperf.report"], tmp_path, pyargs=True) == [Path(odperf.__file__).parent / "report"]
    assert arg_paths(["odperf.cli"], tmp_path, pyargs=True) == [Path(odperf.__file__).parent / "cli.py"]
    assert arg_paths(["no.such.module"], tmp_path, pyargs=True) == [tmp_path / "no.such.module"]
    assert not reaches_benchmarks(arg_paths(["tests"], ROOT, pyargs=False), PYTHON_FILES, NORECURSE)
    assert reaches_benchmarks(arg_paths([str(ROOT)], ROOT, pyargs=False), PYTHON_FILES, NORECURSE)
