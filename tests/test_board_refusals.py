"""What a board is refused, in one line and before anything runs on it.

- A board whose python has numpy but neither TensorFlow nor torch with torchvision (``check_board``): over
  the real sshd of ``sshd_board.Sshd``, whose "board" is a real Python 3.6.15 venv made here with numpy
  1.18.5 and no framework (and one that can import the PyTorch stand-in's real torch 1.10.1 but no
  torchvision), directly and through ``pytest benchmarks -m tx2 --odperf-board ...``.
- Model formats that do not go to boards (``zoo.board_model.board_model``): TorchScript and torch.export
  files (real ones, written by ``torch_models``) and a torchvision-registry architecture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odperf.backends.names import BOARD_RUNTIMES
from odperf.engine.request import MeasureRequest
from odperf.errors import ModelError
from odperf.measure.board import Board, BoardError, check_board
from odperf.zoo.board_model import NOT_TO_BOARDS, board_model

import torch_models as tm
from child_env import child_env
from sshd_board import ROOT, Sshd, board_python

REFUSED = "cannot import tensorflow, nor torch with torchvision"
FIX = "install NVIDIA's TensorFlow or PyTorch wheel for the board's JetPack"


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / "python3.6" / "site-packages"


def _run(*cmd: object) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def numpy_board() -> str:
    """A real Python 3.6.15 venv with numpy 1.18.5 and no framework (tests/board_stand_in.sh numpy)."""
    python = board_python("numpy")
    said = _run(python, "-c", "import sys, numpy, importlib.util as u; print(sys.version.split()[0], numpy.__version__, "
                              "[m for m in ('tensorflow', 'torch', 'torchvision') if u.find_spec(m)])")
    assert said.split() == ["3.6.15", "1.18.5", "[]"], said
    return python


@pytest.fixture(scope="module")
def torch_only_board(numpy_board: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python 3.6.15 venv that imports numpy and the PyTorch stand-in's real torch 1.10.1, but not its
    torchvision (a board with NVIDIA's torch wheel and no torchvision built for it)."""
    torch_site = _site_packages(Path(board_python("torch")).parent.parent)
    root = tmp_path_factory.mktemp("board")
    only = root / "torch-no-torchvision"
    only.mkdir()
    for name in ("torch", "typing_extensions.py", "dataclasses.py"):
        (only / name).symlink_to(torch_site / name)
    venv = root / "py36-torch"
    _run(os.path.realpath(numpy_board), "-m", "venv", "--without-pip", venv)  # the same Python 3.6.15
    (_site_packages(venv) / "board.pth").write_text(f"{_site_packages(Path(numpy_board).parent.parent)}\n{only}\n")
    python = venv / "bin" / "python"
    said = _run(python, "-c", "import numpy, torch, importlib.util as u; print(torch.__version__, "
                              "int(torch.ones(3).sum()), u.find_spec('torchvision'), u.find_spec('tensorflow'))")
    version, three, *absent = said.split()
    assert version.startswith("1.10.1") and three == "3" and absent == ["None", "None"], said
    return str(python)


@pytest.mark.parametrize("python", ["numpy_board", "torch_only_board"])
def test_check_board_refuses_a_python_without_a_framework_in_one_line(sshd: Sshd, python: str,
                                                                       request: pytest.FixtureRequest):
    python = request.getfixturevalue(python)
    board = Board.parse(f"tx2={sshd.url}", python=python, ssh_options=sshd.ssh_options())
    with pytest.raises(BoardError) as refused:
        check_board(board)
    said = str(refused.value)
    assert "\n" not in said, said
    assert said == (f"--odperf-board tx2={sshd.user}@127.0.0.1: {python} {REFUSED}; {FIX} "
                    "(see the README's Jetson section)"), said
    assert board.runtimes == BOARD_RUNTIMES  # nothing learnt from a board it refused


def test_the_same_sshd_accepts_the_torch_stand_in_with_its_torchvision(sshd: Sshd):
    """The control of the torch-only board: the interpreter it borrows torch from, with torchvision, passes."""
    board = Board.parse(f"tx2={sshd.url}", python=board_python("torch"), ssh_options=sshd.ssh_options())
    assert check_board(board) == "Python 3.6.15, numpy 1.18.5, torch" and board.runtimes == ("torch",)


def test_suite_refuses_a_board_without_a_framework_in_one_line(sshd: Sshd, numpy_board: str, tmp_path: Path):
    """As tests/test_board.py's test_suite_refuses_a_board_it_cannot_use_in_one_line: exit 4, one line."""
    spec = f"tx2={sshd.url}?python={numpy_board}&ssh_config={sshd.ssh_config()}"
    saved = tmp_path / "tx2.json"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_inference.py"), "-p", "no:cacheprovider",
         "-p", "no:xdist", "-m", "tx2", "--odperf-board", spec, "--odperf-models=centernet_tiny",
         f"--benchmark-json={saved}", "-q"],
        cwd=ROOT, capture_output=True, text=True, env=child_env())
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]  # a usage error, before any case
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("ERROR: odperf:")]
    assert REFUSED in line and FIX in line and "--odperf-board tx2=" in line, line
    assert f"tx2={sshd.user}@127.0.0.1" in line and numpy_board in line, line
    assert "passed" not in out.stdout and "failed" not in out.stdout, out.stdout[-2000:]  # no case ran
    assert not saved.exists()


# --- model formats a board does not take ----------------------------------------------------------------
BOARDS_RUN = ("boards run PyTorch models from a state_dict folder naming one of odperf's embedded "
              "architectures (odperf_model.json), such as faster_rcnn_fpn_torch")


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not tm.HAVE_TORCH:
        pytest.skip("torch is not installed")
    return tm.build(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("kind, fmt", [("script", "torchscript"), ("export", "torch_export")])
def test_a_torchscript_or_torch_export_file_does_not_go_to_a_board(torch_files: dict[str, Path], kind: str,
                                                                     fmt: str):
    model = torch_files[kind]
    assert model.is_file()
    with pytest.raises(ModelError) as refused:
        board_model(MeasureRequest(model=str(model), batch_size=1, images=1, backend="torch"))
    said = str(refused.value)
    assert said == f"model {model.parent.name}: a PyTorch {fmt} ({NOT_TO_BOARDS[fmt]}); {BOARDS_RUN}", said
    assert "tied to the torch that wrote it" in said


def test_a_torchvision_registry_model_does_not_go_to_a_board(tmp_path: Path):
    """Refused from the registry entry alone: no weights file (the folder is empty), nothing built."""
    from odperf.zoo.torchvision_catalog import ARCHITECTURES

    name = "fasterrcnn_mobilenet_v3_large_fpn"
    assert name in ARCHITECTURES
    with pytest.raises(ModelError) as refused:
        board_model(MeasureRequest(model=name, batch_size=1, images=1, backend="torch", model_dir=str(tmp_path)))
    said = str(refused.value)
    assert said == f"model {name}: a PyTorch architecture ({NOT_TO_BOARDS['architecture']}); {BOARDS_RUN}", said
    assert not any(tmp_path.iterdir())
