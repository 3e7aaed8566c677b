"""`pip install odperf` from its wheel gives a working tool, away from this checkout.

The wheel is built offline (no build isolation: this environment's setuptools) from a copy of the checkout
and installed with --no-deps into a fresh virtual environment, which sees this environment's packages
(TensorFlow, pytest-benchmark, ...) through a .pth line, and never this checkout's src/. From a folder
outside the checkout: `odperf zoo list` shows the embedded models, the shipped suite runs by
`--pyargs odperf.benchmarks` beside a team's own benchmark file that uses odperf's fixtures (its conftest.py
also loads the plugin), and `odperf report` renders what they saved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("src", "benchmarks", "fixtures", "setup.py", "pyproject.toml", "README.md")

TEAM_BENCHMARK = '''
from odperf.engine.client import WorkerSession


def test_team_model(odperf_case, odperf_suite, benchmark):
    """A team's own benchmark on odperf's fixtures: one camera image of the case, timed in its worker."""
    with WorkerSession(odperf_suite.request(odperf_case)) as worker:
        worker.start()
        benchmark.pedantic(worker.run_image, args=(0,), rounds=1, iterations=1)
        worker.finish()
'''


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding only the odperf wheel (and this environment's packages beneath it)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, source / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ODPERF_FIXTURES", "PYTEST_CURRENT_TEST") and not k.startswith("PYTEST_XDIST_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(base / "dist"), str(source)],
         cwd=base, env=env)
    (wheel,) = (base / "dist").glob("odperf-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, env=env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=base, env=env).stdout.strip())
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
          str(wheel)], cwd=base, env=env)
    return venv, env


def test_installed_odperf_is_the_wheel_not_this_checkout(installed):
    venv, env = installed
    found = _run([str(venv / "bin" / "python"), "-c", "import odperf, sys; print(odperf.__file__); print(sys.path)"],
                 cwd=venv.parent, env=env).stdout
    where, path = found.splitlines()
    assert Path(where).is_relative_to(venv), where
    assert str(ROOT / "src") not in path


def test_zoo_list_shows_the_embedded_models_from_package_data(installed):
    venv, env = installed
    listed = _run([str(venv / "bin" / "odperf"), "zoo", "list"], cwd=venv.parent, env=env).stdout
    rows = {ln.split()[1]: ln.split() for ln in listed.splitlines() if len(ln.split()) > 3}
    embedded = sorted(p.name for p in (ROOT / "fixtures" / "models").iterdir() if p.is_dir())
    assert embedded and all(name in rows for name in embedded), listed
    present = {name: rows[name][-2] for name in embedded}  # the "present" column: found on disk
    assert set(present.values()) == {"yes"}, present


def test_training_into_the_installed_package_is_refused_with_the_fix(installed):
    venv, env = installed
    done = subprocess.run([str(venv / "bin" / "odperf"), "zoo", "train", "centernet_tiny", "--steps", "1"],
                          cwd=venv.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--out-dir" in done.stderr and "installed as a package" in done.stderr, done.stderr[-2000:]
    assert not any((venv / "lib").rglob("centernet_tiny/*.tmp*"))  # nothing was trained or written


def test_suite_and_a_teams_own_benchmark_run_from_the_wheel(installed, tmp_path):
    venv, env = installed
    team = tmp_path / "team-repo"
    team.mkdir()
    (team / "conftest.py").write_text('pytest_plugins = ["odperf.pytest_plugin"]\n')
    (team / "test_team.py").write_text(TEAM_BENCHMARK)
    (team / "expectations.toml").write_text("")  # the team's own rules: none (this machine's load varies)
    out = team / "run.json"
    done = _run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                 "--strict-markers", "--pyargs", "odperf.benchmarks", "test_team.py", "-m", "centernet and cpu",
                 "-k", "b64", "--odperf-models=centernet_tiny", "--odperf-batch-sizes=64", "--odperf-images=1",
                 "--odperf-devices=cpu", "--odperf-expectations=expectations.toml", f"--benchmark-json={out}",
                 "--benchmark-group-by=param:model"], cwd=team, env=env)
    assert "2 passed" in done.stdout, done.stdout[-3000:]
    assert "model=centernet_tiny" in done.stdout  # pytest-benchmark grouped by the plain parameter
    saved = json.loads(out.read_text())
    names = sorted(b["name"] for b in saved["benchmarks"])
    assert names == ["test_inference[centernet_tiny-b64-cpu]", "test_team_model[centernet_tiny-b64-cpu]"]
    for bench in saved["benchmarks"]:
        assert bench["params"] == {"model": "centernet_tiny", "batch": 64, "device": "cpu", "backend": "tensorflow"}
    _run([str(venv / "bin" / "odperf"), "report", str(out), "--out", str(team / "report")], cwd=team, env=env)
    assert "centernet_tiny" in (team / "report" / "index.md").read_text()
