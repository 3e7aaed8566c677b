"""The PyTorch embedded detectors: the Detector contract in torch terms, the builders, training, and the
committed models' recorded accuracy.

The mAP check re-evaluates each committed model with pycocotools on the first 200 tiles of the held-out
synthetic validation split (generated here, a few seconds) against the figure recorded for exactly
those tiles at training time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from odperf.datasets.synthetic import CATEGORIES, GENERATOR_VERSION, VAL_SPLIT, ensure_embedded
from odperf.errors import ModelError
from odperf.workload import normalized_to_xywh
from odperf.zoo import registry
from odperf.zoo.embedded.data import load_split
from odperf.zoo.embedded_torch import MODEL_NAMES, SPECS, build, load_embedded, load_run, models_dir
from odperf.backends.pytorch.convert import make_run, to_detections, to_tensor_batch
from odperf.backends.pytorch.architectures import full_kwargs
from odperf.zoo.embedded_torch.evaluate import CI_TILES, coco_figures, detect_split
from odperf.zoo.metadata import MODEL_FILE as METADATA_FILE, read_metadata
from odperf.zoo.embedded_torch.train import to_targets, train

MAP_TOLERANCE = 0.02
MIN_MAP = 0.30
MAX_WEIGHT_BYTES = 20 * 1024 * 1024  # both models together
CATEGORY_IDS = [c["id"] for c in CATEGORIES]
METADATA_KEYS = {
    "name", "backend", "architecture", "kwargs", "weights", "meta_arch", "feature_extractor", "input_size",
    "parameters", "flops_per_tile", "map", "ap50", "accuracy", "train_seconds", "train_steps", "batch_size",
    "seed", "dataset", "categories", "category_names", "seconds_per_64_tiles", "label_map", "train_cpu_seconds",
}


def output(boxes, scores, labels) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.int64)}


# --- the Detector contract in torch terms -----------------------------------------------------------------
def test_known_box_round_trips_to_coco_pixels():
    # x1, y1, x2, y2 = 30, 60, 90, 150 px on a 200 (high) x 300 (wide) image
    det = to_detections([output([[30.0, 60.0, 90.0, 150.0]], [0.9], [3])], height=200, width=300)
    assert det.boxes.dtype == np.float32 and det.classes.dtype == np.int32
    np.testing.assert_allclose(det.boxes[0, 0], [60 / 200, 30 / 300, 150 / 200, 90 / 300], rtol=1e-6)
    boxes, scores, classes = det.valid(0)
    np.testing.assert_allclose(normalized_to_xywh(boxes, 200, 300), [[30.0, 60.0, 60.0, 90.0]], atol=1e-4)
    assert scores.tolist() == pytest.approx([0.9]) and classes.tolist() == [3]


def test_detections_are_sorted_truncated_and_zero_padded():
    first = output([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], [0.2, 0.8, 0.5], [1, 2, 5])
    empty = output(np.zeros((0, 4)), [], [])
    det = to_detections([first, empty], height=100, width=100, max_detections=2)
    assert det.boxes.shape == (2, 2, 4) and det.counts.tolist() == [2, 0]
    assert det.scores[0].tolist() == pytest.approx([0.8, 0.5])  # best first, the 0.2 box dropped
    assert det.classes[0].tolist() == [2, 5]
    assert not det.boxes[1].any() and not det.scores[1].any() and not det.classes[1].any()


def test_boxes_are_clipped_and_labels_mapped():
    det = to_detections([output([[-5.0, -5.0, 120.0, 50.0]], [0.7], [0])], height=100, width=100,
                        label_map=[7, 8])
    np.testing.assert_allclose(det.boxes[0, 0], [0.0, 0.0, 0.5, 1.0])
    assert det.classes[0, 0] == 7
    with pytest.raises(ModelError, match="label 4"):
        to_detections([output([[0, 0, 1, 1]], [0.5], [4])], 10, 10, label_map={0: 7})


def test_tensor_batch_is_float_chw_in_unit_range():
    batch = np.zeros((2, 4, 6, 3), np.uint8)
    batch[1, 2, 3] = (255, 0, 51)
    tensors = to_tensor_batch(batch)
    assert len(tensors) == 2 and tensors[0].shape == (3, 4, 6) and tensors[0].dtype == torch.float32
    assert tensors[1][:, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert float(tensors[0].max()) == 0.0
    with pytest.raises(ModelError, match="uint8"):
        to_tensor_batch(batch.astype(np.float32))
    with pytest.raises(ModelError, match=r"\[B, H, W, 3\]"):
        to_tensor_batch(batch[0])


# --- builders -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_architecture_builds_trains_and_detects_on_two_tiles(name, val_split):
    spec = SPECS[name]
    ids = val_split.category_ids
    torch.manual_seed(0)
    model = build(spec.architecture, num_classes=spec.num_classes(ids), **spec.kwargs)
    tiles = val_split.images[:2]
    model.train()
    losses = model(to_tensor_batch(tiles), to_targets(val_split.boxes[:2], val_split.classes[:2], spec.labels(ids)))
    assert losses and all(torch.isfinite(v) for v in losses.values())
    det = make_run(model, label_map=spec.label_map(ids))(tiles)  # untrained: every class scores
    assert not model.training  # make_run puts it in eval mode
    assert len(det) == 2 and det.slots == 100
    for i in range(2):
        boxes, scores, classes = det.valid(i)
        assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2] >= boxes[:, 0]).all()
        assert (np.diff(scores) <= 0).all()
        assert set(classes.tolist()) <= set(CATEGORY_IDS)


def test_build_names_the_choices_and_the_bad_argument():
    with pytest.raises(ModelError, match="fcos_tiny, faster_rcnn_fpn_tiny"):
        build("yolo", num_classes=6)
    with pytest.raises(ModelError, match="colour"):
        build("fcos_tiny", num_classes=6, colour="red")
    with pytest.raises(ModelError, match="anchor sizes"):
        build("faster_rcnn_fpn_tiny", num_classes=6, anchor_sizes=[[16], [32, 48], [64], [128]])


# --- the committed models -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_metadata_describes_the_weights(name):
    meta = read_metadata(models_dir() / name)
    assert METADATA_KEYS <= set(meta)
    assert meta["name"] == name and meta["backend"] == "torch"
    assert meta["architecture"] == SPECS[name].architecture
    spec = SPECS[name]
    assert meta["kwargs"] == full_kwargs(spec.architecture, num_classes=spec.num_classes(tuple(CATEGORY_IDS)),
                                         **spec.kwargs)
    assert meta["dataset"].startswith(f"synthetic-v{GENERATOR_VERSION}-"), (
        f"{name} was trained on another generator version; retrain it (odperf zoo train {name})"
    )
    assert meta["categories"] == CATEGORY_IDS and meta["seed"] == 0
    assert meta["label_map"] == SPECS[name].label_map(tuple(CATEGORY_IDS))
    assert meta["accuracy"]["tiles"] == 600 and meta["accuracy"]["first_tiles"]["tiles"] == CI_TILES
    assert meta["map"] == meta["accuracy"]["map"] >= MIN_MAP
    assert (models_dir() / name / meta["weights"]).is_file()


def test_weights_are_small():
    total = sum((models_dir() / n / read_metadata(models_dir() / n)["weights"]).stat().st_size for n in MODEL_NAMES)
    assert total <= MAX_WEIGHT_BYTES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_committed_model_reaches_its_recorded_map(name, val_root, val_split):
    folder = models_dir() / name
    meta = read_metadata(folder)
    assert not load_embedded(folder).training
    run = load_run(folder)
    detections = detect_split(run, val_split)
    assert set(detections[:, 6].astype(int).tolist()) <= set(CATEGORY_IDS)
    figures = coco_figures(val_root, VAL_SPLIT, val_split.image_ids, detections)
    recorded = meta["accuracy"]["first_tiles"]
    assert figures["tiles"] == recorded["tiles"] == CI_TILES
    assert figures["map"] == pytest.approx(recorded["map"], abs=MAP_TOLERANCE)
    assert figures["ap50"] == pytest.approx(recorded["ap50"], abs=MAP_TOLERANCE)


def test_scoring_is_the_tensorflow_embedded_models_path(val_root, val_split):
    """The torch models are scored exactly as the TensorFlow embedded ones (their COCOeval call)."""
    from odperf.zoo.embedded.evaluate import coco_accuracy

    split = load_split(val_root, VAL_SPLIT, limit=64)
    detections = detect_split(load_run(models_dir() / MODEL_NAMES[0]), split)
    ours = coco_figures(val_root, VAL_SPLIT, split.image_ids, detections)
    theirs = coco_accuracy(val_root, VAL_SPLIT, split, detections)
    assert ours["map"] > 0
    theirs_rounded = tuple(round(v, 4) for v in (theirs.map, theirs.ap50, theirs.ap75))
    assert (ours["map"], ours["ap50"], ours["ap75"]) == theirs_rounded


def test_a_batch_gives_what_its_tiles_give_one_by_one(val_split):
    """Tiles holding objects, so the trained model detects something on each compared tile."""
    run = load_run(models_dir() / MODEL_NAMES[-1])
    tiles = val_split.images[[i for i in range(len(val_split)) if (val_split.classes[i] >= 0).any()][:4]]
    batch = run(tiles)
    assert (batch.counts > 0).all(), batch.counts  # nothing compared would prove nothing
    for i in range(len(tiles)):
        single = run(tiles[i : i + 1])
        k = int(batch.counts[i])
        assert int(single.counts[0]) == k
        np.testing.assert_allclose(single.scores[0, :k], batch.scores[i, :k], atol=1e-4)
        np.testing.assert_allclose(single.boxes[0, :k], batch.boxes[i, :k], atol=1e-3)
        assert single.classes[0, :k].tolist() == batch.classes[i, :k].tolist()


def test_load_refuses_missing_or_mismatched_weights(tmp_path):
    source = models_dir() / MODEL_NAMES[0]
    meta = read_metadata(source)
    folder = tmp_path / MODEL_NAMES[0]
    folder.mkdir()
    (folder / METADATA_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match="weights file missing.*odperf zoo train"):
        load_embedded(folder)
    (folder / meta["weights"]).write_bytes((source / meta["weights"]).read_bytes())
    wider = {**meta, "kwargs": {**meta["kwargs"], "fpn_width": 64}}
    (folder / METADATA_FILE).write_text(json.dumps(wider), encoding="utf-8")
    with pytest.raises(ModelError, match="does not fit"):
        load_embedded(folder)


def test_models_load_and_run_after_tensorflow_in_one_process():
    """TensorFlow first, then the torch models: without the Triton guard the process dies (SIGSEGV)."""
    script = (
        "import numpy as np, tensorflow\n"
        "from odperf.zoo.embedded_torch import load_run, models_dir\n"
        "det = load_run(models_dir() / 'faster_rcnn_fpn_torch')(np.zeros((1, 300, 300, 3), np.uint8))\n"
        "print('ran', len(det))\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ran 1" in done.stdout


# --- registry -------------------------------------------------------------------------------------------
def test_registry_lists_the_torch_models_under_their_runtime():
    specs = {s.name: s for s in registry.embedded_models()}
    assert {n for n, s in specs.items() if s.backend == "torch"} == set(MODEL_NAMES)
    assert {s.backend for n, s in specs.items() if n not in MODEL_NAMES} == {"tensorflow"}
    assert {s.name for s in registry.select(["torch"]) if s.family == "embedded"} == set(MODEL_NAMES)


# --- training -------------------------------------------------------------------------------------------
def test_training_is_seeded_and_saves_a_loadable_model(tmp_path):
    root = ensure_embedded(tmp_path / "data", seed=0, n_val=2, n_train=4)
    name = MODEL_NAMES[0]
    states = []
    for run_dir in ("a", "b"):
        meta = train(name, tmp_path / run_dir, dataset_root=root, steps=2, batch_size=2, log=lambda line: None)
        assert meta["train_steps"] == 2 and meta["backend"] == "torch" and meta["accuracy"]["tiles"] == 2
        assert read_metadata(tmp_path / run_dir / name) == meta
        states.append(load_embedded(tmp_path / run_dir / name).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    torch.manual_seed(0)  # the trainer's initial weights
    untrained = build(SPECS[name].architecture, **meta["kwargs"]).state_dict()
    assert not all(torch.equal(untrained[k], states[0][k]) for k in untrained)  # the steps changed weights
