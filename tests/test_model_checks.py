"""check_model: the format of real exported detectors, and one clear line for each broken one, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from odperf.errors import ModelError
from odperf.backends import check_model
from zoo_artifacts import write_frozen_graph, write_tf1_saved_model, write_tf2_saved_model

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    write_frozen_graph(root / "frozen")
    write_tf1_saved_model(root / "tf1")
    write_tf2_saved_model(root / "tf2")
    write_tf2_saved_model(root / "unnamed", behaviour="unnamed")
    write_tf2_saved_model(root / "zoo_layout" / "saved_model")
    write_frozen_graph(root / "no_outputs", outputs=("detection_boxes",))
    return root


def test_formats_of_real_exports(artifacts: Path):
    assert check_model(artifacts / "frozen") == "tf1_frozen_graph"
    assert check_model(artifacts / "frozen" / "frozen_inference_graph.pb") == "tf1_frozen_graph"
    assert check_model(artifacts / "tf1") == "tf1_saved_model"
    assert check_model(artifacts / "tf2") == "tf2_saved_model"
    assert check_model(artifacts / "unnamed") == "tf2_saved_model"  # output_0.. are told apart when run
    assert check_model(artifacts / "zoo_layout") == "tf2_saved_model"
    assert check_model(artifacts / "zoo_layout" / "saved_model" / "saved_model.pb") == "tf2_saved_model"
    for name in ("centernet_tiny", "ssd_fpn", "faster_rcnn_fpn"):
        assert check_model(FIXTURE_MODELS / name) == "tf2_saved_model"


def _broken_copy(src: Path, dst: Path, data: bytes) -> Path:
    dst.mkdir(parents=True)
    (dst / "saved_model.pb").write_bytes(data)
    return dst


def test_broken_models_are_named_with_the_fix(artifacts: Path, tmp_path: Path):
    good = (artifacts / "tf2" / "saved_model.pb").read_bytes()
    cases = {
        tmp_path / "missing": "no such model file or folder",
        _broken_copy(artifacts, tmp_path / "empty_pb", b""): r"is empty \(interrupted download or copy\?\)",
        _broken_copy(artifacts, tmp_path / "truncated", good[: len(good) // 3]): "is not a TensorFlow SavedModel",
        artifacts / "no_outputs": "the graph has no tensor detection_scores:0",
    }
    (tmp_path / "nothing").mkdir()
    cases[tmp_path / "nothing"] = "holds no detector"
    for path, message in cases.items():
        with pytest.raises(ModelError, match=message) as err:
            check_model(path)
        assert "\n" not in str(err.value)


def test_a_signature_that_is_no_detector_is_refused(tmp_path: Path):
    script = f"""
import tensorflow as tf
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="input_tensor")])
    def float_in(self, input_tensor):
        return {{"detection_boxes": input_tensor[:, :1, :1, :], "detection_scores": input_tensor[:, 0, 0, :],
                 "detection_classes": input_tensor[:, 0, 0, :], "num_detections": input_tensor[:, 0, 0, 0]}}
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
    def logits(self, input_tensor):
        return {{"logits": tf.cast(input_tensor, tf.float32)}}
m = M()
tf.saved_model.save(m, "{tmp_path / 'float_input'}", signatures={{"serving_default": m.float_in}})
tf.saved_model.save(m, "{tmp_path / 'classifier'}", signatures={{"serving_default": m.logits}})
tf.saved_model.save(m, "{tmp_path / 'unsigned'}", signatures={{"other": m.logits}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                   env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    with pytest.raises(ModelError, match="serving_default input 'input_tensor' is float32; expected uint8"):
        check_model(tmp_path / "float_input")
    with pytest.raises(ModelError, match="serving_default has no output detection_boxes"):
        check_model(tmp_path / "classifier")
    with pytest.raises(ModelError, match=r"no 'serving_default' signature \(has: other\)"):
        check_model(tmp_path / "unsigned")


def test_zoo_downloads_are_checked_by_their_files_only(tmp_path: Path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "frozen_inference_graph.pb").write_bytes(b"not parsed when deep=False")
    assert check_model(tmp_path / "m", deep=False) == "tf1_frozen_graph"
    (tmp_path / "m" / "frozen_inference_graph.pb").write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        check_model(tmp_path / "m", deep=False)


def test_checks_do_not_import_tensorflow():
    code = ("import sys; from odperf.backends import check_model; "
            f"print(check_model({str(FIXTURE_MODELS / 'ssd_fpn')!r}), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["tf2_saved_model", "False"]
