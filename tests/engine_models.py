"""Small real TF2 SavedModels with the detector contract, for the engine's tests (built in a subprocess).

Input ``input_tensor`` uint8 [None, None, None, 3]; outputs detection_boxes [B, N, 4] (normalized),
detection_scores [B, N], detection_classes [B, N] (1-based), num_detections [B]. A model may carry
``ballast_mb``: every call fills a float32 tensor of that many MB (10**6 bytes) first and reads it
last, a real allocation live during the whole call, whose size the memory tests know. ``class_id`` is
the class of its one detection per tile (1, a disk, unless a test wants a label map that does not match).

    python tests/engine_models.py OUT_DIR NAME:BALLAST_MB[:CLASS_ID] [...]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def build(out_dir: Path, models: dict[str, float], class_ids: dict[str, int] | None = None) -> dict[str, Path]:
    """Build each ``name: ballast_mb`` model under ``out_dir`` in one fresh Python; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    class_ids = class_ids or {}
    args = [f"{name}:{mb}:{class_ids.get(name, 1)}" for name, mb in models.items()]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, __file__, str(out_dir), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {name: out_dir / name for name in models}


def _export(path: Path, ballast_mb: float, class_id: int = 1) -> None:
    import tensorflow as tf

    floats = int(ballast_mb * 1_000_000 / 4)

    class TinyDetector(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 4], seed=[1, 2]) * 0.1)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")])
        def __call__(self, input_tensor):
            if floats:
                # Allocated first and read last, so it is live during everything the model does.
                first = tf.reduce_mean(tf.cast(input_tensor[:, :1, :1, :], tf.float32))
                ballast = tf.fill([floats], first)
            x = tf.cast(input_tensor, tf.float32) / 255.0
            b = tf.shape(x)[0]
            feat = tf.nn.relu(tf.nn.conv2d(x, self.kernel, strides=4, padding="SAME"))
            pooled = tf.reduce_mean(feat, axis=[1, 2])  # [B, 4]
            if floats:
                index = tf.cast(tf.reduce_mean(pooled) * 0.0, tf.int32)
                pooled = pooled + tf.gather(ballast, index) * 0.0
            centre = tf.sigmoid(pooled[:, :2])[:, None, :] * 0.5 + 0.25  # [B, 1, 2]
            boxes = tf.concat([centre - 0.1, centre + 0.1], axis=-1)
            scores = tf.sigmoid(pooled[:, 2:3] * 10.0)
            classes = tf.fill([b, 1], float(class_id))
            return {"detection_boxes": boxes, "detection_scores": scores,
                    "detection_classes": classes, "num_detections": tf.ones([b], tf.float32)}

    module = TinyDetector()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


if __name__ == "__main__":
    out = Path(sys.argv[1])
    for spec in sys.argv[2:]:
        name, mb, class_id = (spec.split(":") + ["1"])[:3]
        _export(out / name, float(mb), int(class_id))


# --- pytest fixtures (imported by the engine and memory tests) ---------------------------------------
import pytest  # noqa: E402

MODELS = {"tiny": 0.0, "ballast": 500.0, "alien": 0.0}
CLASS_IDS = {"alien": 42}  # a class the synthetic dataset (ids 1..5) does not have: a label-map mismatch
BALLAST_MB = MODELS["ballast"]


@pytest.fixture(scope="session")
def engine_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test detectors, built once per test process (several modules share the folder)."""
    folder = tmp_path_factory.getbasetemp() / "engine-models"
    if not all((folder / name / "saved_model.pb").is_file() for name in MODELS):
        build(folder, MODELS, CLASS_IDS)
    return {name: folder / name for name in MODELS}


@pytest.fixture(scope="session")
def engine_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic COCO-format root (40 tiles) to build camera images from."""
    from odperf.datasets.synthetic import generate

    root = tmp_path_factory.getbasetemp() / "engine-dataset"
    if not (root / "annotations" / "instances_val2017.json").is_file():
        generate(root, "val2017", 40, seed=0)
    return root
