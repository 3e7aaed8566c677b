"""Train an embedded torch detector from scratch on the synthetic dataset, save it, and measure it.

Entry point (what ``odperf zoo train NAME`` calls for the torch models), the TensorFlow trainer's
signature plus ``threads``::

    train(name, out_dir, dataset_root=None, seed=0, steps=None, batch_size=None,
          train_split="train2017", val_split="val2017", n_val=None, log=print, threads=1) -> dict

writes ``out_dir/<name>/weights.pt`` and ``out_dir/<name>/odperf_model.json`` and returns the metadata.
Determinism: ``seed`` fixes the initial weights, the batch order and the flips; torch is asked for
deterministic kernels, and with the same thread count a rerun on the same machine reproduces the
weights. The default is one thread: the recorded budget is sized for it, and more threads change the
order of floating-point sums.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from odperf.backends.pytorch.triton_guard import keep_triton_out

keep_triton_out()  # before torchvision loads: see triton_guard

import numpy as np
import torch
import torchvision
from torch import nn

from odperf.zoo.embedded.data import Split, batches, load_split
from odperf.zoo.embedded_torch import export
from odperf.backends.pytorch.convert import MAX_DETECTIONS, to_tensor_batch
from odperf.backends.pytorch.architectures import build, full_kwargs
from odperf.zoo.embedded_torch.evaluate import accuracy_figures, seconds_per_batch
from odperf.zoo.embedded_torch.specs import TorchModelSpec, get_spec
from odperf.zoo.metadata import read_metadata, write_metadata

EMBEDDED_DATASET_SEED = 0
EMBEDDED_N_TRAIN = 4000
EMBEDDED_N_VAL = 600
GRAD_CLIP = 10.0
SPEED_TILES = 64


@contextlib.contextmanager
def seeded(seed: int, threads: int) -> Iterator[None]:
    """Seeds, thread count and deterministic kernels for a training run; torch's settings restored after."""
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])


def schedule(spec: TorchModelSpec, steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero (stable from scratch, converged)."""
    warmup = min(spec.warmup_steps, max(steps // 5, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(steps - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def to_targets(boxes: np.ndarray, classes: np.ndarray, labels: list[int]) -> list[dict[str, torch.Tensor]]:
    """Padded (ymin, xmin, ymax, xmax) px boxes and 0-based classes -> torchvision targets per tile.

    torchvision wants x1, y1, x2, y2 boxes and int64 labels; ``labels[c]`` is the label of class ``c``.
    """
    ids = torch.tensor(labels, dtype=torch.int64)
    out = []
    for b, c in zip(boxes, classes):
        keep = c >= 0
        xyxy = torch.from_numpy(np.ascontiguousarray(b[keep][:, [1, 0, 3, 2]], dtype=np.float32))
        out.append({"boxes": xyxy, "labels": ids[torch.from_numpy(c[keep]).long()]})
    return out


def flops_per_tile(model: nn.Module, tile: int = 300) -> int:
    """Floating-point operations of one inference on a ``tile`` x ``tile`` image (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()([torch.zeros(3, tile, tile)])
    return int(counter.get_total_flops())


def train(name: str, out_dir: str | Path, dataset_root: str | Path | None = None, seed: int = 0,
          steps: int | None = None, batch_size: int | None = None, train_split: str = "train2017",
          val_split: str = "val2017", n_val: int | None = None, log: Callable[[str], None] = print,
          threads: int = 1) -> dict[str, Any]:
    """Train ``name`` (see :mod:`odperf.zoo.embedded_torch.specs`), save it to ``out_dir/name``, return its metadata."""
    get_spec(name)  # an unknown name fails before any data is made
    if dataset_root is None:
        from odperf.datasets.synthetic import ensure_embedded

        dataset_root = ensure_embedded(seed=EMBEDDED_DATASET_SEED, n_val=EMBEDDED_N_VAL, n_train=EMBEDDED_N_TRAIN)
    root = Path(dataset_root)
    with seeded(seed, threads):
        model_dir = _train(name, Path(out_dir), root, seed, steps, batch_size, train_split, log, threads)
    # measured with torch's own thread count, as the suite runs the model
    metadata = measure(model_dir, root, val_split, n_val, log=lambda line: None)
    acc = metadata["accuracy"]
    log(f"{name}: mAP {acc['map']:.3f} AP50 {acc['ap50']:.3f} on {acc['tiles']} {val_split} tiles; "
        f"{metadata['seconds_per_64_tiles']:.2f} s per {SPEED_TILES} tiles on {metadata['speed_threads']} "
        f"threads; saved {model_dir}")
    return metadata


def _train(name: str, out_dir: Path, root: Path, seed: int, steps: int | None, batch_size: int | None,
           train_split: str, log: Callable[[str], None], threads: int) -> Path:
    """The training run itself: saves the weights and the metadata without accuracy; returns the folder."""
    spec = get_spec(name)
    steps = int(steps or spec.steps)
    batch_size = int(batch_size or spec.batch_size)

    t0 = time.perf_counter()
    data = load_split(root, train_split)
    log(f"{name}: {len(data)} training tiles from {root} ({time.perf_counter() - t0:.0f} s)")
    labels = spec.labels(data.category_ids)
    kwargs = full_kwargs(spec.architecture, num_classes=spec.num_classes(data.category_ids), **spec.kwargs)
    model = build(spec.architecture, **kwargs)
    flops = flops_per_tile(model, spec.input_size)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(spec, steps))

    stream = batches(data, batch_size, seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(steps):
        images, boxes, classes = next(stream)
        parts = model(to_tensor_batch(images), to_targets(boxes, classes, labels))
        total = sum(parts.values())
        loss = float(total.detach())
        if not math.isfinite(loss):
            raise FloatingPointError(f"{name}: loss is {loss} at step {i}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        if i % 50 == 0 or i == steps - 1:
            detail = " ".join(f"{k}={float(v.detach()):.3f}" for k, v in parts.items())
            log(f"{name}: step {i}/{steps} loss={loss:.3f} {detail} ({time.perf_counter() - start:.0f} s)")
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    n_train, category_ids, category_names = len(data), data.category_ids, data.category_names
    del data
    model.eval()

    model_dir = out_dir / name
    metadata = {
        "name": name,
        "backend": "torch",
        "architecture": spec.architecture,
        "kwargs": kwargs,
        "weights": export.WEIGHTS_FILE,
        "label_map": spec.label_map(category_ids),
        "meta_arch": spec.meta_arch,
        "feature_extractor": spec.feature_extractor,
        "input_size": spec.input_size,
        "max_detections": MAX_DETECTIONS,
        "score_threshold": _score_threshold(model),
        "parameters": export.parameter_count(model),
        "flops_per_tile": flops,
        "flops_method": "torch.utils.flop_counter.FlopCounterMode over one 300x300 tile in eval mode",
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "train_steps": steps,
        "batch_size": batch_size,
        "learning_rate": spec.learning_rate,
        "threads": threads,
        "seed": seed,
        "dataset": root.name,
        "train_split": f"{train_split} ({n_train} tiles)",
        "categories": [int(c) for c in category_ids],
        "category_names": list(category_names),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    export.save(model, model_dir, metadata)
    return model_dir


def measure(model_dir: str | Path, root: str | Path, val_split: str = "val2017", n_val: int | None = None,
            threads: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Re-measure a saved model's accuracy and batch speed into its ``odperf_model.json``; return the metadata.

    Speed is the median time of one call on the split's first 64 tiles with ``threads`` threads (torch's
    current setting when None), recorded with the thread count.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(Path(model_dir), Path(root), val_split, n_val, log)
    finally:
        torch.set_num_threads(before)


def _measure(model_dir: Path, root: Path, val_split: str, n_val: int | None,
             log: Callable[[str], None]) -> dict[str, Any]:
    metadata = read_metadata(model_dir)
    run = export.load_run(model_dir)
    split: Split = load_split(root, val_split, limit=n_val)
    figures = accuracy_figures(run, root, split, val_split)
    metadata["map"], metadata["ap50"], metadata["accuracy"] = figures["map"], figures["ap50"], figures
    metadata["seconds_per_64_tiles"] = round(seconds_per_batch(run, split.images[:SPEED_TILES]), 3)
    metadata["speed_threads"] = torch.get_num_threads()
    write_metadata(model_dir, metadata)
    log(f"{metadata['name']}: mAP {figures['map']:.4f} AP50 {figures['ap50']:.4f}; "
        f"{metadata['seconds_per_64_tiles']} s per {SPEED_TILES} tiles on {metadata['speed_threads']} threads")
    return metadata


def _score_threshold(model: nn.Module) -> float | None:
    """The box score below which the model drops detections (FCOS: score_thresh; R-CNN: its ROI heads')."""
    if hasattr(model, "score_thresh"):
        return float(model.score_thresh)
    heads = getattr(model, "roi_heads", None)
    return float(heads.score_thresh) if heads is not None else None
