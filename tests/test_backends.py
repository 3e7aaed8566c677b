"""The runtime seam: the registry of backends, format detection, and the PyTorch backend for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import torch_models as tm
from odperf.backends import BACKENDS, DEFAULT, find_artifact, get_backend, installed
from odperf.engine import MeasureRequest, measure
from odperf.engine.outcomes import classify_error
from odperf.errors import ModelError, OdperfError

pytestmark = pytest.mark.skipif(not tm.HAVE_TORCH, reason="PyTorch is not installed (pip install odperf[torch])")
SMALL_GRID = (1, 3, 300)  # 3 tiles + the blank one: an image of 4 tiles keeps full-size models quick


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    return tm.build(tmp_path_factory.mktemp("torch-models"))


def test_registry_names_each_runtime_once():
    assert DEFAULT == "tensorflow" and set(BACKENDS) == {"tensorflow", "torch"}
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.name == name and backend.formats and backend.expects
    assert installed() == {"tensorflow": metadata.version("tensorflow"), "torch": metadata.version("torch")}
    with pytest.raises(OdperfError, match="unknown runtime 'onnx'; odperf knows: tensorflow, torch"):
        get_backend("onnx")


def test_formats_are_found_by_their_files(artifacts, tmp_path):
    script, export, folder, bare = (artifacts[k] for k in ("script", "export", "state_dict", "bare"))
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


@pytest.mark.parametrize("key, fmt, mode", [
    ("script", "torchscript", "batched"),
    ("export", "torch_export", "tile_by_tile"),  # exported on one image: its declared batch is 1
    ("state_dict", "torch_state_dict", "batched"),
])
def test_torch_detector_meets_the_contract(artifacts, key, fmt, mode):
    got = tm.run_python(textwrap.dedent(f"""
        import json
        import numpy as np
        from odperf.zoo.loaders import load_detector
        det = load_detector({str(artifacts[key])!r})
        out = det(np.random.default_rng(0).integers(0, 255, (3, 300, 300, 3), dtype=np.uint8))
        print(json.dumps({{"meta": [det.backend, det.format, det.batch_mode, det.name],
                          "dtypes": [str(out.boxes.dtype), str(out.classes.dtype)], "counts": out.counts.tolist(),
                          "first": out.boxes[:, 0].tolist(), "classes": out.classes[:, 0].tolist(),
                          "scores": out.scores[:, 0].tolist()}}))
    """))
    assert got["meta"] == ["torch", fmt, mode, artifacts[key].parent.name if key != "state_dict" else "fcos_sd"]
    assert got["dtypes"] == ["float32", "int32"]
    if key == "state_dict":  # random weights: checked against torchvision itself below
        assert len(got["counts"]) == 3
        return
    assert got["counts"] == [1, 1, 1] and got["classes"] == [tm.LABEL] * 3
    expected = (tm.BOX_XYXY[1], tm.BOX_XYXY[0], tm.BOX_XYXY[3], tm.BOX_XYXY[2])  # ymin, xmin, ymax, xmax
    np.testing.assert_allclose(got["first"], [expected] * 3, atol=1e-6)
    assert all(0 < s < 1 for s in got["scores"])


def test_a_state_dict_detector_gives_what_torchvision_gives_in_the_contracts_terms(artifacts, tmp_path):
    """The random-weight FCOS folder, its score threshold at 0 so every image has detections, keeping 150 a
    tile: odperf's boxes, scores and classes are torchvision's own outputs for the same tiles, converted here
    by hand (pixels x1, y1, x2, y2 -> normalized ymin, xmin, ymax, xmax; best first), in as many slots as
    the model keeps (odperf's default of 100 would cut the last 50)."""
    import shutil

    folder = tmp_path / "fcos_sd"
    shutil.copytree(artifacts["state_dict"], folder)
    meta = json.loads((folder / "odperf_model.json").read_text())
    meta["kwargs"] = {**meta["kwargs"], "score_thresh": 0.0, "detections_per_img": 150}
    (folder / "odperf_model.json").write_text(json.dumps(meta))
    got = tm.run_python(textwrap.dedent(f"""
        import json
        import numpy as np
        import torch
        from torchvision.models import detection
        from odperf.zoo.loaders import load_detector
        tiles = np.random.default_rng(0).integers(0, 255, (2, 300, 300, 3), dtype=np.uint8)
        out = load_detector({str(folder)!r})(tiles)
        model = detection.fcos_resnet50_fpn(weights=None, weights_backbone=None, **{meta["kwargs"]!r})
        model.load_state_dict(torch.load({str(folder / "weights.pth")!r}))
        with torch.no_grad():
            ref = model.eval()([torch.from_numpy(t).permute(2, 0, 1).float() / 255 for t in tiles])
        print(json.dumps({{"odperf": [out.counts.tolist(), out.boxes.tolist(), out.scores.tolist(),
                                      out.classes.tolist()],
                          "torchvision": [[{{k: v.tolist() for k, v in r.items()}} for r in ref]]}}))
    """))
    counts, boxes, scores, classes = (np.asarray(x) for x in got["odperf"])
    for i, ref in enumerate(got["torchvision"][0]):
        order = np.argsort(-np.asarray(ref["scores"]), kind="stable")
        k = len(order)
        assert boxes.shape[1] == 150 and k > 100 and counts[i] == k  # every detection the model kept, kept
        x1, y1, x2, y2 = np.asarray(ref["boxes"])[order].T
        np.testing.assert_allclose(boxes[i, :k], np.clip(np.stack([y1, x1, y2, x2], 1) / 300, 0, 1), atol=1e-4)
        np.testing.assert_allclose(scores[i, :k], np.asarray(ref["scores"])[order], atol=1e-5)
        assert classes[i, :k].tolist() == np.asarray(ref["labels"])[order].tolist()
        assert not boxes[i, k:].any() and not scores[i, k:].any() and not classes[i, k:].any()  # zero padding


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
    assert rec.runtime_version.startswith(metadata.version("torch"))
    assert rec.deploy_s["load"] > 0 and len(m.worker_times_s) == 2 and all(t > 0 for t in m.worker_times_s)
    assert m.deploy.model_format == "architecture" and m.deploy.batch_mode == "batched"
    assert rec.peak_memory_mb and rec.memory_probe == "host_rss"
    # a CPU worker times no device: its record holds no device time, host share or GPU state (not zeros)
    assert m.device_times_s == [] and rec.device_time_per_image_s is None and rec.host_share is None
    assert rec.gpu_state is None
    # the thread settings a figure was taken with (odperf.engine.runtime: the caller's wait policy, else the
    # runtime's own)
    settings = rec.runtime_settings
    assert settings["omp_wait_policy"] == (os.environ.get("OMP_WAIT_POLICY") or "runtime default")
    assert settings["threads"] >= 1 and settings["interop_threads"] >= 1


def test_capped_torch_worker_runs_out_of_memory_and_the_next_runs(engine_dataset):
    common = dict(backend="torch", images=1, grid=SMALL_GRID, dataset_root=str(engine_dataset),
                  dataset_split="val2017", batch_size=2)
    capped = measure(MeasureRequest(model="fasterrcnn_resnet50_fpn_v2", memory_limit_mb=40, **common))
    assert capped.outcome == "oom", capped.error
    assert capped.emulated and capped.emulated["memory_limit_mb"] == 40
    after = measure(MeasureRequest(model="ssdlite320_mobilenet_v3_large", **common))
    assert after.outcome == "ok", after.error


def test_pytorch_path_runs_without_tensorflow(tmp_path, engine_dataset, artifacts):
    """TensorFlow made unimportable (as on a GPU image without it): odperf imports, a torch model runs."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "tensorflow.py").write_text("raise ImportError('tensorflow is not installed here')\n")
    model = artifacts["script"]
    src = Path(__file__).resolve().parents[1] / "src"
    script = textwrap.dedent(f"""
        import json, sys
        import odperf.cli, odperf.suite.state, odperf.report.cli
        from odperf.engine import MeasureRequest, measure
        m = measure(MeasureRequest(model={str(model)!r}, backend="torch", batch_size=4, images=2,
                                   dataset_root={str(engine_dataset)!r}, dataset_split="val2017"))
        print(json.dumps({{"outcome": m.outcome, "error": m.error, "tf": "tensorflow" in sys.modules,
                          "backend": m.deploy.backend if m.deploy else None}}))
    """)
    env = {**tm.child_env(), "PYTHONPATH": os.pathsep.join([str(blocker), str(src)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"outcome": "ok", "error": None, "tf": False, "backend": "torch"}


def test_a_gpu_cap_emulates_a_smaller_card_by_the_allocators_fraction():
    from odperf.backends.pytorch import gpu_memory_cap

    v100_on_h100 = gpu_memory_cap(16_000, 85_520_000_000)  # a 16 GB card on an 80 GiB H100
    assert v100_on_h100["how"] == "torch_cuda_memory_fraction"
    assert v100_on_h100["fraction"] == pytest.approx(16e9 / 85.52e9) and v100_on_h100["limit_mb"] == 16_000
    with pytest.raises(OdperfError, match="must be smaller than the real one"):
        gpu_memory_cap(90_000, 85_520_000_000)


def test_torch_worker_asked_for_a_gpu_where_none_is_says_so():
    got = tm.run_python(textwrap.dedent("""
        import json, os
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        from odperf.backends import get_backend
        from odperf.errors import OdperfError
        try:
            get_backend("torch").start("gpu:0", None)
        except OdperfError as exc:
            print(json.dumps({"error": str(exc)}))
    """))
    assert got["error"].startswith("device gpu:0: PyTorch sees no GPU here (CUDA_VISIBLE_DEVICES=''")


def test_an_emulated_cap_is_named_by_the_runtime_that_applies_it():
    """Named before the worker runs (a cap that fails the warm-up never reports back): on an H200 a PyTorch
    case's record once said TensorFlow's method."""
    from odperf.backends import BACKENDS, get_backend
    from odperf.engine.client import _emulated
    from odperf.engine.request import MeasureRequest

    hows = {name: get_backend(name).gpu_cap_how for name in BACKENDS}
    assert hows == {"tensorflow": "tf_logical_device_memory_limit", "torch": "torch_cuda_memory_fraction"}
    for name, how in hows.items():
        gpu = MeasureRequest(model="m", backend=name, device="gpu:0", batch_size=8, images=1, memory_limit_mb=1000)
        cpu = MeasureRequest(model="m", backend=name, device="cpu", batch_size=8, images=1, memory_limit_mb=400)
        assert _emulated(gpu)["how"] == how and _emulated(cpu)["how"] == "rlimit_data_above_runtime"


def test_detection_slots_are_what_the_model_keeps():
    from odperf.backends.pytorch.triton_guard import keep_triton_out

    keep_triton_out()  # this test process may hold TensorFlow already (another test's): Triton would crash it
    from torchvision.models import detection

    from odperf.engine.portable_torch import MAX_DETECTIONS, detection_slots

    def built(name: str, **kw):
        return getattr(detection, name)(weights=None, weights_backbone=None, **kw)

    fcos = built("fcos_resnet50_fpn", num_classes=3, detections_per_img=150)
    assert detection_slots({"max_detections": 40}, fcos) == 40  # said outright
    assert detection_slots({}, fcos) == 150
    assert detection_slots({}, built("retinanet_resnet50_fpn", num_classes=3)) == 300  # torchvision's default
    assert detection_slots({}, built("fasterrcnn_mobilenet_v3_large_fpn", num_classes=3,
                                     box_detections_per_img=200)) == 200  # kept by its roi_heads
    assert detection_slots({}, object()) == detection_slots({}) == MAX_DETECTIONS
