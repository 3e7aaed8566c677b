"""Boards over SSH, for real: a real sshd on 127.0.0.1 started here, a "board" that is this machine's
Python 3.6.15 with TensorFlow 1.15.5 and numpy 1.18.5 (the TX2's stack; tests/board_stand_in.sh makes its
venv), the embedded TF detectors as frozen graphs. Only /proc/meminfo's Jetson fields are a stand-in."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odperf.engine import WorkerFailed, WorkerSession
from odperf.engine.remote import BoardSession
from odperf.measure.board import Board, BoardError
from odperf.engine.request import MeasureRequest
from odperf.zoo.board_model import BoardModel
from odperf.zoo.freeze import frozen_graph

from child_env import child_env
from sshd_board import ROOT, Sshd, board_python

GRID = (2, 3, 300)  # 6 tiles + 1 blank per camera image: the real path, sized for a shared CI machine


@pytest.fixture(scope="module")
def py36() -> str:
    return board_python()


def _board(sshd: Sshd, python: str, **kw: object) -> Board:
    return Board.parse(f"tx2={sshd.url}", python=python, ssh_options=sshd.ssh_options(), **kw)


def _request(model: str = "centernet_tiny", **kw: object) -> MeasureRequest:
    args = dict(model=model, batch_size=7, images=3, grid=GRID, keep_detections=True, timeout_s=300.0)
    args.update(kw)
    return MeasureRequest(**args)  # type: ignore[arg-type]


def _graph(model: str) -> BoardModel:
    return BoardModel.graph(frozen_graph(ROOT / "fixtures" / "models" / model / "saved_model", ROOT / ".odperf-cache"))


def _gone(pid: int) -> bool:
    """The process ended (a zombie not yet reaped counts as ended)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_portable_core_is_python36():
    out = subprocess.run([str(Path(sys.executable).with_name("vermin")), "-t=3.6-", "--no-tips", "--violations",
                          *[str(ROOT / "src/odperf/engine" / f"{m}.py") for m in ("portable", "portable_board", "portable_torch")]],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_board_spelling_is_one_line():
    with pytest.raises(BoardError, match=r"expected \[PROFILE=\]ssh://"):
        Board.parse("tx2=nvidia@tx2.local")
    board = Board.parse("tx2=ssh://nvidia@tx2.local:2222", python="/usr/bin/python3")
    assert (board.profile, board.user, board.host, board.port) == ("tx2", "nvidia", "tx2.local", 2222)
    assert board.link == "ssh" and board.command("true")[0] == "ssh"
    local = Board.parse("tx2=local://?python=/usr/bin/python3")  # the board's interpreter here, no SSH
    assert (local.profile, local.python, local.link, local.destination) == ("tx2", "/usr/bin/python3", "local pipes",
                                                                          "this host")
    assert local.command("exec true") == ["sh", "-c", "exec true"]
    with pytest.raises(BoardError, match=r"PROFILE=local://\?python=PATH"):
        Board.parse("local://?python=/usr/bin/python3")  # a local board has no device tree to name it


@pytest.mark.parametrize("model", ["centernet_tiny", "ssd_fpn", "faster_rcnn_fpn"])
def test_tx2_over_ssh_same_map_as_saved_model(sshd: Sshd, py36: str, model: str):
    with BoardSession(_request(model), _graph(model), _board(sshd, py36)) as session:
        deploy = session.start()
        for i in range(3):
            session.prepare(i)
            assert session.run_image(i) > 0
        board = session.finish()
    assert board.outcome == "ok"
    assert deploy.runtime_version == "1.15.5" and deploy.model_format == "tf1_frozen_graph"
    assert board.device_info["python"] == "3.6.15" and board.device_info["profile"] == "tx2"
    assert board.device_info["link_rtt_s"] > 0
    assert board.memory.samples > 10 and board.memory.probe.startswith("board_ram")
    assert board.memory.peak_mb is not None and board.memory.period_mean_ms is not None
    # the same camera images through today's local worker and the SavedModel
    with WorkerSession(_request(model)) as local:
        local.start()
        for i in range(3):
            local.prepare(i)
            local.run_image(i)
        here = local.finish()
    for figure in ("AP", "AP50"):
        assert board.accuracy[figure] == pytest.approx(here.accuracy[figure], abs=1e-3)
    assert here.accuracy["AP50"] > 0


def test_oom_under_a_cap(sshd: Sshd, py36: str):
    request = _request(batch_size=7, memory_limit_mb=20, emulate_profile="tx2_small")
    with BoardSession(request, _graph("ssd_fpn"), _board(sshd, py36)) as session:
        with pytest.raises(WorkerFailed) as failed:
            session.start()
    m = failed.value.measurement
    assert m.outcome == "oom", m.error
    assert m.memory is not None and m.memory.samples > 0  # the supervisor's samples outlive the worker
    assert "20 MB" in m.error or "OOM" in m.error or "alloc" in m.error.lower(), m.error


def test_nvmap_tegrastats_and_jtop_stand_ins_cross_check(sshd: Sshd, py36: str, tmp_path: Path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(Path("/proc/meminfo").read_text() + "NvMapMemUsed:     123456 kB\n")
    board = _board(sshd, py36, meminfo=str(meminfo), tegrastats=str(ROOT / "tests" / "tegrastats_stand_in.sh"),
                   jtop=str(ROOT / "tests" / "jtop_on_board"))
    with BoardSession(_request(images=1, keep_detections=False), _graph("centernet_tiny"), board) as session:
        session.start()
        session.run_image(session.prepare(0))
        m = session.finish()
    assert set(m.memory.probes) == {"board_ram", "board_nvmap", "board_tegrastats", "board_jtop"}
    assert m.memory.probes["board_nvmap"].baseline_mb == pytest.approx(123456 * 1024 / 1e6)
    assert m.memory.probes["board_tegrastats"].samples > 10 and m.memory.probes["board_jtop"].samples > 10
    # jtop's RAM "used" is meminfo's, read by its service: the same machine's figure, at its own refresh
    ram, jtop = m.memory.probes["board_ram"], m.memory.probes["board_jtop"]
    assert jtop.baseline_mb == pytest.approx(ram.baseline_mb, rel=0.1)
    assert "board_tegrastats peak" in m.memory.probe and "board_jtop peak" in m.memory.probe
    assert "board_nvmap peak 0 MB" in m.memory.probe


def test_jtop_whose_service_does_not_answer_is_named_not_sampled(sshd: Sshd, py36: str, tmp_path: Path):
    folder = tmp_path / "jtop"
    folder.mkdir()
    (folder / "jtop.py").write_text((ROOT / "tests" / "jtop_on_board" / "jtop.py").read_text())
    (folder / "service_down").touch()
    board = _board(sshd, py36, jtop=str(folder), tegrastats=None)
    with BoardSession(_request(images=1, keep_detections=False), _graph("centernet_tiny"), board) as session:
        session.start()
        session.run_image(session.prepare(0))
        m = session.finish()
    assert set(m.memory.probes) == {"board_ram"}  # no jetson-stats figure, and a run all the same
    assert "jtop: The jetson_stats.service is not active" in m.memory.probe


def test_killed_worker_is_a_crash_record(sshd: Sshd, py36: str):
    with BoardSession(_request(), _graph("centernet_tiny"), _board(sshd, py36)) as session:
        session.start()
        session.run_image(0)
        pid = session.measurement.device_info["pid"]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerFailed) as failed:
            session.run_image(1)
    assert failed.value.outcome == "crash"
    assert "killed by signal SIGKILL" in failed.value.message, failed.value.message
    assert failed.value.measurement.memory.samples > 0
    assert _gone(pid)


def test_dropped_connection_leaves_nothing_on_the_board(sshd: Sshd, py36: str):
    with BoardSession(_request(), _graph("centernet_tiny"), _board(sshd, py36)) as session:
        session.start()
        pid = session.measurement.device_info["pid"]
        os.kill(session.proc.pid, signal.SIGKILL)  # the link goes: ssh dies mid-run
        with pytest.raises(WorkerFailed) as failed:
            session.run_image(0)
    assert failed.value.outcome == "crash"
    assert _gone(pid), "the board's worker outlived its SSH session"


@pytest.mark.parametrize("python, said", [("/nonexistent/python3", "/nonexistent/python3"),
                                          ("PY36_BARE", "No module named 'numpy'")])
def test_wrong_python_or_missing_framework_is_one_line(sshd: Sshd, py36: str, python: str, said: str):
    if python == "PY36_BARE":  # the interpreter itself, without the venv's packages
        python = os.path.realpath(py36)
    with BoardSession(_request(), _graph("centernet_tiny"), _board(sshd, python)) as session:
        with pytest.raises(WorkerFailed) as failed:
            session.start()
    assert said in failed.value.message or said in (failed.value.measurement.error or ""), failed.value.measurement.error


def test_unknown_host_key_is_refused(sshd: Sshd, py36: str, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    board = Board.parse(f"tx2={sshd.url}", python=py36, ssh_options=sshd.ssh_options(known_hosts=empty))
    with BoardSession(_request(), _graph("centernet_tiny"), board) as session:
        with pytest.raises(WorkerFailed) as failed:
            session.start()
    assert "Host key verification failed" in (failed.value.measurement.error or ""), failed.value.measurement.error


def test_board_names_itself_from_its_device_tree(sshd: Sshd, py36: str, tmp_path: Path):
    from odperf.measure.board import board_target

    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson TX2 Developer Kit\0")  # the stand-in of /proc/device-tree/model
    found = board_target(f"{sshd.url}?python={py36}&ssh_config={sshd.ssh_config()}&device_tree={model}")
    assert found.board.profile == "tx2" and found.model == "NVIDIA Jetson TX2 Developer Kit"
    assert {"jetson", "tx2", "board"} <= set(found.markers) and found.memory_mb and found.memory_mb > 8000
    with pytest.raises(BoardError, match="name it: tx2=ssh://"):
        board_target(f"{sshd.url}?python={py36}&ssh_config={sshd.ssh_config()}&device_tree={tmp_path / 'none'}")


def _suite_on_tx2(sshd: Sshd, python: str, models: str, saved: Path, named: bool = False) -> subprocess.CompletedProcess:
    """``pytest benchmarks -m tx2`` on the host with the board over SSH: batch 7, 2 images, scored. With
    ``named`` the board is ``--odperf-board lab-tx2``, a ``[[board]]`` entry of a site's table beside ``saved``."""
    spec = f"tx2={sshd.url}?python={python}&ssh_config={sshd.ssh_config()}"
    env = child_env()
    if named:
        table = saved.with_name("site-devices.toml")
        table.write_text(f'[[board]]\nname = "lab-tx2"\nprofile = "tx2"\nurl = {json.dumps(spec.split("=", 1)[1])}\n')
        spec, env = "lab-tx2", child_env(ODPERF_DEVICES=str(table))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_inference.py"), "-p", "no:cacheprovider",
         "-p", "no:xdist", "-m", "tx2", "--odperf-board", spec, f"--odperf-models={models}",
         "--odperf-batch-sizes=7", "--odperf-images=2", "--odperf-accuracy", f"--benchmark-json={saved}", "-q"],
        cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_suite_runs_exactly_the_tx2_cases_on_the_board_named_in_a_sites_table(sshd: Sshd, py36: str, tmp_path: Path):
    out = _suite_on_tx2(sshd, py36, "centernet_tiny,fcos_tiny_torch", tmp_path / "tx2.json", named=True)
    # the host's own cpu cases are not run, and the board has no case of the PyTorch model
    assert "1 passed, 2 deselected" in out.stdout, out.stdout[-2000:]
    saved = json.loads((tmp_path / "tx2.json").read_text())
    (record,) = saved["odperf"]["records"]
    assert saved["odperf"]["profile"] == "tx2"
    assert record["device_profile"] == "tx2" and record["outcome"] == "ok" and record["runtime_version"] == "1.15.5"
    assert record["memory_probe"].startswith("board_ram") and record["map"] is not None
    assert record["runtime_settings"]["python"] == "3.6.15" and record["runtime_settings"]["link_rtt_s"] > 0
    assert record["device_name"].startswith("tx2 board at ")
    (bench,) = saved["benchmarks"]
    assert bench["name"] == "test_inference[centernet_tiny-b7-tx2]"


def test_tf2_board_runs_the_same_frozen_graph(sshd: Sshd):
    """An Orin-like board (TensorFlow 2.x: this host's own interpreter) loads the same frozen graph."""
    board = _board(sshd, sys.executable)
    with BoardSession(_request(images=2), _graph("centernet_tiny"), board) as session:
        deploy = session.start()
        for i in range(2):
            session.run_image(session.prepare(i))
        m = session.finish()
    from importlib.metadata import version

    assert m.outcome == "ok" and deploy.runtime_version == version("tensorflow") and deploy.runtime_version.startswith("2.")
    assert m.accuracy["AP50"] > 0


def test_worker_core_imports_nothing_of_odperf_and_the_local_worker_no_stream(py36: str):
    engine = ROOT / "src" / "odperf" / "engine"
    # as the bootstrap loads them on a board: the core under its own name, then the board's side
    check = ("import runpy, sys, types; core = sys.modules['odperf_portable'] = types.ModuleType('odperf_portable'); "
             "exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'), core.__dict__); "
             "side = runpy.run_path(sys.argv[2]); assert side['portable'] is core; "
             "assert not [m for m in sys.modules if m == 'odperf' or m.startswith('odperf.')], sorted(sys.modules)")
    subprocess.run([py36, "-c", check, str(engine / "portable.py"), str(engine / "portable_board.py")],
                   check=True)  # under the board's Python 3.6
    local = "import sys, odperf.engine.worker; assert not [m for m in sys.modules if m.startswith('odperf.stream')]"
    subprocess.run([sys.executable, "-c", local], check=True)


@pytest.mark.parametrize("python, said", [("/nonexistent/python3", "cannot run /nonexistent/python3"),
                                          ("PY36_BARE", "has no numpy"),
                                          ("UNKNOWN_HOST_KEY", "Host key verification failed")])
def test_suite_refuses_a_board_it_cannot_use_in_one_line(sshd: Sshd, py36: str, python: str, said: str,
                                                         tmp_path: Path):
    config = sshd.ssh_config()
    if python == "UNKNOWN_HOST_KEY":
        (tmp_path / "known_hosts").write_text("")
        config = tmp_path / "ssh_config"
        config.write_text(sshd.ssh_config().read_text().replace(str(sshd.known_hosts), str(tmp_path / "known_hosts")))
    python = {"PY36_BARE": os.path.realpath(py36), "UNKNOWN_HOST_KEY": py36}.get(python, python)
    spec = f"tx2={sshd.url}?python={python}&ssh_config={config}"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_inference.py"), "-p", "no:cacheprovider",
         "-p", "no:xdist", "-m", "tx2", "--odperf-board", spec, "--odperf-models=centernet_tiny", "-q"],
        cwd=ROOT, capture_output=True, text=True, env=child_env())
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]  # a usage error, before any case
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("ERROR: odperf:")]
    assert said in line and "--odperf-board tx2=" in line


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
def test_a_ray_node_next_to_the_board_runs_its_shards_over_ssh(sshd: Sshd, py36: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    from test_scaleout import Driver, saved, start_cluster

    from odperf.scaleout.task import BOARDS_ENV, node_board

    spec = f"tx2={sshd.url}?python={py36}&ssh_config={sshd.ssh_config()}"
    assert node_board("tx2", {BOARDS_ENV: f"orin=ssh://a {spec}"}) == spec and node_board("cpu", {}) is None
    monkeypatch.setenv(BOARDS_ENV, spec)  # what `ray start` on the host next to the board is given
    cluster = start_cluster({"num_cpus": 1, "resources": {"odperf:tx2": 1}})
    try:
        code = Driver(cluster.address, tmp_path, batch_sizes="7").finish()
    finally:
        cluster.shutdown()
    assert code == 0
    (record,) = saved(tmp_path, "tx2")["odperf"]["records"]
    assert (record["device_profile"], record["outcome"], record["runtime_version"]) == ("tx2", "ok", "1.15.5")
    assert record["device_name"].startswith("tx2 board at ")


def test_a_tf1_zoo_frozen_graph_goes_through_the_same_path(sshd: Sshd, py36: str, tmp_path: Path):
    """The paper's TF1 zoo models are frozen graphs already: sent as they are (a toy graph in the zoo's
    format here; no zoo download can happen in tests)."""
    from zoo_artifacts import write_frozen_graph

    from odperf.engine.remote import board_model

    pb = write_frozen_graph(tmp_path / "toy_tf1")
    request = _request(model=str(tmp_path / "toy_tf1"), keep_detections=False, images=2)
    model = board_model(request)
    assert model.source == pb and model.backend == "tensorflow"
    with BoardSession(request, model, _board(sshd, py36)) as session:
        deploy = session.start()
        times = [session.run_image(session.prepare(i)) for i in range(2)]
        m = session.finish()
    assert m.outcome == "ok" and deploy.model_format == "tf1_frozen_graph" and min(times) > 0


def test_freeze_command_names_the_graph_or_refuses_in_one_line():
    def freeze(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "odperf.cli", "zoo", "freeze", name], cwd=ROOT,
                              capture_output=True, text=True, env=child_env(TF_CPP_MIN_LOG_LEVEL="3"))

    ok = freeze("centernet_tiny")
    assert ok.returncode == 0 and Path(ok.stdout.strip().splitlines()[-1]).name == "frozen_inference_graph.pb"
    refused = freeze("fcos_tiny_torch")
    assert refused.returncode != 0 and "has no TensorFlow graph" in refused.stderr


def test_the_same_worker_without_the_link_gives_the_same_detections(sshd: Sshd, py36: str):
    """The board's interpreter, TensorFlow and frozen graph run as a local process (no SSH): the link's
    cost is then what separates the two (timing is not compared here: this machine is shared)."""
    runs = []
    for board in (_board(sshd, py36), None):
        with BoardSession(_request(images=2), _graph("centernet_tiny"), board, python=py36) as session:
            session.start()
            for i in range(2):
                session.run_image(session.prepare(i))
            runs.append(session.finish())
    over_ssh, local = runs
    assert local.device_info["board"] is None and over_ssh.device_info["board"].endswith("@127.0.0.1")
    assert over_ssh.accuracy["AP"] == local.accuracy["AP"] and over_ssh.accuracy["AP50"] == local.accuracy["AP50"]
    assert local.deploy.runtime_settings["link"] == "local pipes" and over_ssh.deploy.runtime_settings["link"] == "ssh"


def test_ab_sets_the_link_against_no_link_on_one_board_interpreter(sshd: Sshd, py36: str, tmp_path: Path):
    """``odperf ab`` with a side's own options: the board's Python 3.6 through local pipes (baseline) against
    the same interpreter over SSH (candidate), interleaved, each side's records saying which link it had.
    The stand-in board is this machine: its memory probe (/proc/meminfo, the whole machine, as a Jetson user
    reads it) counts every other process here too, and the model's own memory is ~25 MB, so another process
    starting between slots moves that ratio tenfold (11.2 once). The thresholds test the plumbing, not the
    figures: time and deployment +1000%, memory +100000%."""
    import json

    ssh = f"tx2={sshd.url}?python={py36}&ssh_config={sshd.ssh_config()}"
    out = subprocess.run(
        [sys.executable, "-m", "odperf.cli", "ab", "--models", "centernet_tiny", "--batch-sizes", "7",
         "--images", "2", "--pairs", "2", "--accuracy", "--time-threshold", "10", "--deploy-threshold", "10",
         "--memory-threshold", "1000", "--out", str(tmp_path / "ab"),
         f"--baseline-args=--odperf-board=tx2=local://?python={py36}", f"--candidate-args=--odperf-board={ssh}",
         "--", "-m", "tx2"],
        cwd=ROOT, capture_output=True, text=True, env=child_env(), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "pytest args '--odperf-board=tx2=local://" in out.stdout
    links = {}
    for side in ("baseline", "candidate"):
        saved = json.loads((tmp_path / "ab" / f"{side}.json").read_text())
        (record,) = saved["odperf"]["records"]
        assert record["device_profile"] == "tx2" and record["runtime_version"] == "1.15.5"
        links[side] = (record["runtime_settings"]["link"], record["map"])
    assert links["baseline"][0] == "local pipes" and links["candidate"][0] == "ssh"
    assert links["baseline"][1] == links["candidate"][1]  # the same frozen graph, the same detections


# --- PyTorch on a board: the TX2's torch 1.10 + torchvision 0.11 (PyPI's cp36 pair 1.10.1 + 0.11.2) ---------
@pytest.fixture(scope="module")
def py36_torch() -> str:
    return board_python("torch")


def _torch_request(model: str = "faster_rcnn_fpn_torch", **kw: object) -> MeasureRequest:
    return _request(model, backend="torch", **kw)


def test_tx2_pytorch_over_ssh_same_map_as_the_local_worker(sshd: Sshd, py36_torch: str):
    """An embedded PyTorch detector rebuilt on the board by the core's PyTorch half with the board's own
    torchvision, from weights sent as arrays: the same detections' mAP as today's local worker."""
    from odperf.engine.remote import board_model

    model = board_model(_torch_request())
    assert model.backend == "torch" and "torch_code" in model.entries
    with BoardSession(_torch_request(), model, _board(sshd, py36_torch)) as session:
        deploy = session.start()
        for i in range(3):
            assert session.run_image(session.prepare(i)) > 0
        board = session.finish()
    assert board.outcome == "ok", board.error
    assert deploy.backend == "torch" and deploy.runtime_version.startswith("1.10.")
    assert deploy.model_format == "torch_state_dict" and deploy.runtime_settings["python"] == "3.6.15"
    assert board.memory.samples > 10 and board.memory.probe.startswith("board_ram")
    with WorkerSession(_torch_request()) as local:
        local.start()
        for i in range(3):
            local.run_image(local.prepare(i))
        here = local.finish()
    assert not here.deploy.runtime_version.startswith("1.10.")  # the host's own, newer torch
    for figure in ("AP", "AP50"):
        assert board.accuracy[figure] == pytest.approx(here.accuracy[figure], abs=1e-3)
    assert here.accuracy["AP50"] > 0.5


def test_a_board_torchvision_without_fcos_fails_that_case_in_one_line(py36_torch: str):
    """FCOS came with torchvision 0.12: on a TX2's 0.11 the case is a crash record that says so (through
    local pipes: the link is not what is tested here)."""
    from odperf.engine.remote import board_model

    request = _torch_request("fcos_tiny_torch", images=1)
    with BoardSession(request, board_model(request), None, python=py36_torch) as session:
        with pytest.raises(WorkerFailed) as failed:
            session.start()
    m = failed.value.measurement
    assert m.outcome == "crash" and "fcos_tiny needs torchvision 0.12 or newer (FCOS); this one is 0.11.2" in m.error


def test_suite_runs_a_torch_board_s_torch_cases_only(sshd: Sshd, py36_torch: str, tmp_path: Path):
    import json

    out = _suite_on_tx2(sshd, py36_torch, "centernet_tiny,faster_rcnn_fpn_torch", tmp_path / "tx2.json")
    # the host's two cpu cases are deselected; a board whose python has torch but no TensorFlow has no
    # TensorFlow case
    assert "1 passed, 2 deselected" in out.stdout, out.stdout[-2000:]
    (record,) = json.loads((tmp_path / "tx2.json").read_text())["odperf"]["records"]
    assert (record["model"], record["device_profile"], record["outcome"]) == ("faster_rcnn_fpn_torch", "tx2", "ok")
    assert record["runtime_version"].startswith("1.10.") and record["map"] is not None


def test_a_boards_pytorch_detector_keeps_as_many_slots_as_the_models_metadata_says(tmp_path: Path):
    """What the board receives (metadata and weights as arrays) rebuilt here with the host's torch: a model
    folder saying ``max_detections`` gets that many slots a tile on the board, as in the local backend."""
    import shutil

    import numpy as np

    from odperf.backends.pytorch.triton_guard import keep_triton_out

    keep_triton_out()  # this test process holds TensorFlow (the frozen-graph boards'): Triton would crash it
    import torch

    from odperf.engine import portable_torch
    from odperf.engine.portable_board import BoardPlatform
    from odperf.zoo.board_model import torch_board_model

    folder = tmp_path / "faster_rcnn_fpn_torch"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "models" / "faster_rcnn_fpn_torch", folder)
    meta_file = folder / "odperf_model.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "max_detections": 7}))
    entries = torch_board_model(folder).entries
    meta = json.loads(entries["torch_meta"].tobytes().decode())
    prefix = BoardPlatform.WEIGHT_PREFIX
    arrays = {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}
    detector = portable_torch.TorchDetector(meta, arrays, torch.device("cpu"))
    boxes, scores, classes, counts = detector(np.zeros((2, 300, 300, 3), dtype=np.uint8))
    assert boxes.shape == (2, 7, 4) and scores.shape == classes.shape == (2, 7) and counts.shape == (2,)
