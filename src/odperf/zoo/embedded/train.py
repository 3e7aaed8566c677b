"""Train an embedded detector from scratch, export it, and measure it on the held-out split.

Entry point (what ``odperf zoo train NAME`` calls)::

    train(name: str, out_dir: str | Path, dataset_root: str | Path | None = None, seed: int = 0,
          steps: int | None = None, batch_size: int | None = None,
          train_split: str = "train2017", val_split: str = "val2017",
          n_val: int | None = None, log: Callable[[str], None] = print) -> dict

writes ``out_dir/<name>/saved_model/`` and ``out_dir/<name>/odperf_model.json`` and returns the metadata.
Without ``dataset_root`` it trains on the embedded synthetic dataset (generated on first use into the
cache). ``seed`` fixes initial weights, batch order and flips; kernels are not made deterministic (that
would slow training several-fold), so a rerun reproduces the recorded mAP closely, not bit for bit.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import keras
import tensorflow as tf

from odperf.zoo.embedded import export
from odperf.zoo.embedded.data import batches, load_split
from odperf.zoo.embedded.detectors import build
from odperf.zoo.embedded.record import accuracy_figures, put_accuracy
from odperf.zoo.embedded.specs import TfModelSpec, get_spec
from odperf.zoo.metadata import write_metadata

EMBEDDED_DATASET_SEED = 0
EMBEDDED_N_TRAIN = 4000
EMBEDDED_N_VAL = 600
WARMUP_STEPS = 150


def learning_rate(spec: TfModelSpec, steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up, then cosine decay to zero: stable from scratch, converged at the end."""
    warmup = min(WARMUP_STEPS, max(steps // 5, 1))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(steps - warmup, 1), warmup_target=spec.learning_rate, warmup_steps=warmup
    )


def to_model_input(images: tf.Tensor, boxes: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize uint8 tiles to the model's input size, exactly as the exported graph does; scale boxes."""
    tile = tf.cast(tf.shape(images)[1], tf.float32)
    resized = tf.image.resize(tf.cast(images, tf.float32), [size, size])
    return resized, boxes * (size / tile)


def dataset_info(root: Path) -> str:
    return Path(root).name


def train(
    name: str,
    out_dir: str | Path,
    dataset_root: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    train_split: str = "train2017",
    val_split: str = "val2017",
    n_val: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``name`` (see :mod:`odperf.zoo.embedded.specs`), export to ``out_dir/name``, return its metadata."""
    spec = get_spec(name)
    steps = int(steps or spec.steps)
    batch_size = int(batch_size or spec.batch_size)
    if dataset_root is None:
        from odperf.datasets.synthetic import ensure_embedded

        dataset_root = ensure_embedded(seed=EMBEDDED_DATASET_SEED, n_val=EMBEDDED_N_VAL, n_train=EMBEDDED_N_TRAIN)
    root = Path(dataset_root)
    keras.utils.set_random_seed(seed)

    t0 = time.perf_counter()
    data = load_split(root, train_split)
    log(f"{name}: {len(data)} training tiles from {root} ({time.perf_counter() - t0:.0f} s)")

    detector = build(spec, num_classes=len(data.category_ids))
    variables = detector.trainable
    optimizer = keras.optimizers.Adam(learning_rate(spec, steps), clipnorm=10.0)

    @tf.function(reduce_retracing=True)
    def step(images, boxes, classes):
        images, boxes = to_model_input(images, boxes, spec.input_size)
        with tf.GradientTape() as tape:
            parts = detector.losses(images, boxes, classes, classes >= 0)
            total = tf.add_n(list(parts.values()))
        grads = tape.gradient(total, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return total, parts

    # Trace the serving graph now: autograph reads the source files when it traces, so a long run must
    # not meet a source tree edited in the meantime at export time.
    serving = export.Serving(detector, data.category_ids)
    serving.serve.get_concrete_function()
    flops = export.flops_per_tile(serving)

    stream = batches(data, batch_size, seed)
    start = time.perf_counter()
    for i in range(steps):
        images, boxes, classes = next(stream)
        total, parts = step(tf.constant(images), tf.constant(boxes), tf.constant(classes))
        if not math.isfinite(float(total)):
            raise FloatingPointError(f"{name}: loss is {float(total)} at step {i}; lower the learning rate")
        if i % 50 == 0 or i == steps - 1:
            detail = " ".join(f"{k}={float(v):.3f}" for k, v in parts.items())
            log(f"{name}: step {i}/{steps} loss={float(total):.3f} {detail} ({time.perf_counter() - start:.0f} s)")
    train_seconds = time.perf_counter() - start

    model_dir = Path(out_dir) / name
    metadata = {
        "name": name,
        "meta_arch": spec.meta_arch,
        "feature_extractor": spec.feature_extractor,
        "input_size": spec.input_size,
        "max_detections": detector.max_detections,
        "score_threshold": serving.score_threshold,
        "parameters": export.parameter_count(detector),
        "flops_per_tile": flops,
        "flops_method": "tf.compat.v1.profiler float_operation on the serving graph for one 300x300 uint8 tile",
        "train_seconds": round(train_seconds, 1),
        "train_steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "dataset": dataset_info(root),
        "train_split": f"{train_split} ({len(data)} tiles)",
        "categories": [int(c) for c in data.category_ids],
        "category_names": list(data.category_names),
        "tensorflow": tf.__version__,
    }
    saved = export.save(serving, model_dir, metadata)
    put_accuracy(metadata, accuracy_figures(model_dir, root, val_split, limit=n_val))
    write_metadata(model_dir, metadata)
    acc = metadata["accuracy"]
    log(f"{name}: mAP {acc['map']:.3f} AP50 {acc['ap50']:.3f} on {acc['tiles']} {val_split} tiles; saved {saved}")
    return metadata
