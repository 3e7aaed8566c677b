"""A run's inputs, checked once before any worker starts: each fault is one line naming the thing and the fix.

Without these checks a bad value surfaces inside every case's worker, after TensorFlow was imported, as
a crash of the model (a negative seed), as a different measurement than asked for (batch 65 runs as 64),
or at the very end (an unwritable results folder loses the whole run). Everything here is cheap: no
TensorFlow, no model is run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from odperf.engine.request import MAX_WARMUP_IMAGES
from odperf.errors import DatasetError, ModelError, OdperfError
from odperf.util.atomic import check_folder


def check_options(*, images: int | None, warmup_images: int, timeout_s: float, sample_period_ms: float,
                  seed: int, warmup_steady: float | None = None) -> None:
    """The numeric options (batch sizes are checked where they are parsed, in odperf.suite.matrix)."""
    if images is not None and images < 1:
        raise OdperfError(f"--odperf-images={images}: time at least 1 camera image per case (a car is 95)")
    if warmup_images < 1:
        raise OdperfError(
            f"--odperf-warmup-images={warmup_images}: timing needs at least 1 warm-up image (the first image "
            "pays one-off costs, reported apart as the deployment's first inference); give 1 or more"
        )
    if warmup_steady is not None and not 0 < warmup_steady < 1:
        raise OdperfError(f"--odperf-warmup-steady={warmup_steady:g}: give the fraction the last warm-up images "
                          "must agree within, between 0 and 1 (0.05: 5%)")
    if warmup_steady is not None and warmup_images > MAX_WARMUP_IMAGES:
        raise OdperfError(f"--odperf-warmup-images={warmup_images} with --odperf-warmup-steady: a steady warm-up "
                          f"stops at {MAX_WARMUP_IMAGES} images; give at most {MAX_WARMUP_IMAGES} warm-up images")
    if not timeout_s > 0:
        raise OdperfError(f"--odperf-timeout={timeout_s:g}: the limit per measured case must be a positive number "
                          "of seconds (default 1800)")
    if not sample_period_ms > 0:
        raise OdperfError(f"--odperf-sample-ms={sample_period_ms:g}: the memory sampling period must be a positive "
                          "number of milliseconds (default 10, as the paper)")
    if seed < 0:
        raise OdperfError(f"--odperf-seed={seed}: the camera-image seed must be 0 or more (default 0)")


def check_dataset(dataset: str | None, split: str | None, accuracy: bool = False) -> None:
    """A COCO-format root is opened and validated here (JSON, keys, image folder, each image's file, and
    its annotations when mAP is asked for); the embedded one is timed on its validation split only."""
    from odperf.datasets.synthetic import VAL_SPLIT

    if dataset is None:
        if split not in (None, "val", VAL_SPLIT):
            raise OdperfError(f"--odperf-split={split}: the embedded dataset is timed on its validation split "
                              f"only ({VAL_SPLIT}); drop --odperf-split, or give --odperf-dataset=DIR")
        return
    from odperf.datasets.coco import CocoDataset

    root = Path(dataset).expanduser()
    if not root.is_dir():
        raise OdperfError(f"--odperf-dataset={dataset}: no such folder; give a COCO-format root holding "
                          f"annotations/instances_<split>.json and <split>/")
    try:
        data = CocoDataset.from_root(root, split or "val2017")
    except DatasetError as exc:
        raise OdperfError(f"--odperf-dataset={dataset}: {exc}") from None
    if len(data) == 0:
        raise OdperfError(f"--odperf-dataset={dataset}: split {split or 'val2017'} holds no images; "
                          "camera images are built from its images")
    from odperf.datasets.check import check_images, has_annotations

    try:
        check_images(data)
    except DatasetError as exc:
        raise OdperfError(f"--odperf-dataset={dataset}: {exc}") from None
    if accuracy and not has_annotations(data):
        raise OdperfError(f"--odperf-accuracy: {data.ann_file} holds no annotations (no object box in any of its "
                          f"{len(data)} images), so there is no mAP to compute; give --odperf-dataset a split with "
                          "annotations, or drop --odperf-accuracy to time this one")


def prepare_embedded_dataset() -> Path:
    """Generate the embedded dataset into the cache once, here, rather than in the first worker (or in
    every xdist process at once); an unwritable cache is refused with the fix."""
    from odperf.datasets.synthetic import CACHE_ENV, default_cache_dir, ensure_embedded

    fix = f"point ${CACHE_ENV} at a writable folder (the embedded dataset is generated there on first use)"
    try:
        return ensure_embedded(n_train=0)
    except DatasetError as exc:
        raise OdperfError(f"${CACHE_ENV}: {exc}") from None
    except OSError as exc:
        raise OdperfError(f"dataset cache {default_cache_dir()}: {exc.strerror}; {fix}") from None


def check_results_dir(results_dir: str | None) -> None:
    if results_dir:
        check_folder(results_dir, "--odperf-results-dir", create=True, fix="give a writable folder")


def check_model_dir(model_dir: str | None) -> None:
    """A model folder the user named must exist (an absent default only means no zoo model was fetched)."""
    given = model_dir or os.environ.get("ODPERF_MODEL_DIR")
    if given and not Path(given).expanduser().is_dir():
        what = "--odperf-model-dir" if model_dir else "$ODPERF_MODEL_DIR"
        raise OdperfError(f"{what}={given}: no such folder; give the folder holding the extracted zoo "
                          f"tarballs (`odperf zoo fetch NAME --model-dir DIR` fills it)")


def check_models(models: Sequence[object], model_dir: str | None) -> dict[str, str]:
    """The format of every model on disk, by name. A user's path is read in depth (graph or signature);
    a registry model that is not fetched is left to be skipped with its fetch command."""
    from odperf.backends import check_model
    from odperf.zoo.registry import get

    formats: dict[str, str] = {}
    for model in models:
        name, ref, family = (getattr(model, k) for k in ("name", "ref", "family"))
        try:
            if family == "custom":
                formats[name] = check_model(ref, deep=True)
                continue
            spec = get(ref)
            if spec.architecture is not None:
                continue  # built by its runtime: nothing on disk to check
            if spec.is_present(model_dir):
                formats[name] = check_model(spec.local_dir(model_dir), deep=family == "embedded")
        except ModelError as exc:
            raise OdperfError(f"--odperf-models: {name}: {exc}") from None
    return formats
