"""The runtime seam: the registry of backends, format detection, and the PyTorch backend for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_models as tm  # noqa: E402
from odperf.backends import BACKENDS, DEFAULT, find_artifact, get_backend, installed  # noqa: E402
from odperf.engine import MeasureRequest, measure  # noqa: E402
from odperf.engine.outcomes import classify_error  # noqa: E402
from odperf.errors import ModelError, OdperfError  # noqa: E402
from odperf.zoo.loaders import load_detector  # noqa: E402

SMALL_GRID = (1, 3, 300)  # 3 tiles + the blank one: an image of 4 tiles keeps full-size models quick


def test_registry_names_each_runtime_once():
    assert DEFAULT == "tensorflow" and set(BACKENDS) == {"tensorflow", "torch"}
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.name == name and backend.formats and backend.expects
    assert installed()["torch"] == torch.__version__.split("+")[0] or installed()["torch"].startswith(
        torch.__version__.split("+")[0])
    with pytest.raises(OdperfError, match="unknown runtime 'onnx'; odperf knows: tensorflow, torch"):
        get_backend("onnx")


def test_formats_are_found_by_their_files(tmp_path):
    script = tm.write_torchscript(tmp_path / "s" / "tiny.pt")
    export = tm.write_export(tmp_path / "e" / "tiny.pt2")
    folder = tm.write_state_dict_folder(tmp_path / "sd", "fcos_resnet50_fpn", num_classes=6)
    bare = tmp_path / "bare.pth"
    torch.save({"w": torch.zeros(1)}, bare)
    assert find_artifact(script) == ("torch", "torchscript", script)
    assert find_artifact(export) == ("torch", "torch_export", export)
    assert find_artifact(export.parent) == ("torch", "torch_export", export)
    assert find_artifact(folder) == ("torch", "torch_state_dict", folder)
    assert find_artifact(bare)[:2] == ("torch", "state_dict")
    with pytest.raises(ModelError, match="bare state_dict names no architecture.*odperf_model.json"):
        get_backend("torch").check("state_dict", bare)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match=r"holds no detector \(expected tensorflow: .*; torch: .*found notes.txt"):
        find_artifact(tmp_path / "junk")


@pytest.mark.parametrize("writer, fmt, mode", [
    (tm.write_torchscript, "torchscript", "batched"),
    (tm.write_export, "torch_export", "tile_by_tile"),  # exported on one image: its declared batch is 1
])
def test_torch_detector_meets_the_contract(tmp_path, writer, fmt, mode):
    path = writer(tmp_path / "tiny" / ("tiny.pt" if fmt == "torchscript" else "tiny.pt2"))
    det = load_detector(path)
    assert (det.backend, det.format, det.batch_mode, det.name) == ("torch", fmt, mode, "tiny")
    batch = np.random.default_rng(0).integers(0, 255, (3, 300, 300, 3), dtype=np.uint8)
    out = det(batch)
    assert out.boxes.dtype == np.float32 and out.classes.dtype == np.int32
    np.testing.assert_array_equal(out.counts, [1, 1, 1])
    ymin_xmin_ymax_xmax = (tm.BOX_XYXY[1], tm.BOX_XYXY[0], tm.BOX_XYXY[3], tm.BOX_XYXY[2])
    np.testing.assert_allclose(out.boxes[:, 0], np.tile(ymin_xmin_ymax_xmax, (3, 1)), atol=1e-6)
    np.testing.assert_array_equal(out.classes[:, 0], [tm.LABEL] * 3)
    assert np.all((out.scores[:, 0] > 0) & (out.scores[:, 0] < 1))


def test_torch_oom_words_are_oom():
    assert classify_error("OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB", backend="torch") == "oom"
    assert classify_error("RuntimeError", "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes",
                          backend="torch") == "oom"
    assert classify_error("RuntimeError", "shape mismatch", backend="torch") == "crash"


@pytest.mark.parametrize("batch_size", [1, 2])
def test_untrained_full_size_architecture_runs_in_a_worker(engine_dataset, batch_size):
    m = measure(MeasureRequest(model="ssdlite320_mobilenet_v3_large", backend="torch", batch_size=batch_size,
                               images=2, grid=SMALL_GRID, dataset_root=str(engine_dataset),
                               dataset_split="val2017"))
    assert m.outcome == "ok", m.error
    rec = m.to_record()
    assert rec.backend == "torch" and rec.untrained is True
    assert rec.runtime_version.startswith(torch.__version__.split("+")[0])
    assert rec.deploy_s["load"] > 0 and len(m.worker_times_s) == 2 and all(t > 0 for t in m.worker_times_s)
    assert m.deploy.model_format == "architecture" and m.deploy.batch_mode == "batched"
    assert rec.peak_memory_mb and rec.memory_probe == "host_rss"


def test_capped_torch_worker_runs_out_of_memory_and_the_next_runs(engine_dataset):
    common = dict(backend="torch", images=1, grid=SMALL_GRID, dataset_root=str(engine_dataset),
                  dataset_split="val2017", batch_size=2)
    capped = measure(MeasureRequest(model="fasterrcnn_resnet50_fpn_v2", memory_limit_mb=40, **common))
    assert capped.outcome == "oom", capped.error
    assert capped.emulated and capped.emulated["memory_limit_mb"] == 40
    after = measure(MeasureRequest(model="ssdlite320_mobilenet_v3_large", **common))
    assert after.outcome == "ok", after.error


def test_pytorch_path_runs_without_tensorflow(tmp_path, engine_dataset):
    """TensorFlow made unimportable (as on a GPU image without it): odperf imports, a torch model runs."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "tensorflow.py").write_text("raise ImportError('tensorflow is not installed here')\n")
    model = tm.write_torchscript(tmp_path / "m" / "tiny.pt")
    src = Path(__file__).resolve().parents[1] / "src"
    script = textwrap.dedent(f"""
        import json, sys
        import odperf.cli, odperf.suite_state, odperf.report.cli
        from odperf.engine import MeasureRequest, measure
        m = measure(MeasureRequest(model={str(model)!r}, backend="torch", batch_size=4, images=2,
                                   dataset_root={str(engine_dataset)!r}, dataset_split="val2017"))
        print(json.dumps({{"outcome": m.outcome, "error": m.error, "tf": "tensorflow" in sys.modules,
                          "backend": m.deploy.backend if m.deploy else None}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(src)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"outcome": "ok", "error": None, "tf": False, "backend": "torch"}
