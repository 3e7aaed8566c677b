"""The ``Detector`` contract in torch terms: uint8 numpy tiles in, ``Detections`` out.

torchvision's detection models take a list of float CHW tensors in [0, 1] (they normalise and resize
inside) and return one dict per image: ``boxes`` (K, 4) x1, y1, x2, y2 in pixels of the input image,
``scores`` (K,) and ``labels`` (K,) int64. ``Detections`` wants what the TensorFlow zoo exports give:
normalized ymin, xmin, ymax, xmax float32, best first, 1-based category ids as classes, a count per
image and zero padding to a fixed number of slots. These functions hold for every torchvision detector,
the embedded ones and any other.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from odperf.backends.pytorch.triton_guard import keep_triton_out

keep_triton_out()  # before torch and torchvision load: see triton_guard
import torch  # noqa: E402
from torch import nn  # noqa: E402

from odperf.backends.pytorch.device_time import CudaEventClock
from odperf.errors import ModelError
from odperf.backends.contract import Detections, RunFn
from odperf.engine import portable_torch

MAX_DETECTIONS = portable_torch.MAX_DETECTIONS


def to_tensor_batch(batch: np.ndarray, device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """uint8 [B, H, W, 3] -> B float32 tensors [3, H, W] in [0, 1] on ``device`` (what torchvision takes).

    One conversion for the whole batch; the list holds views of it, so no per-image copy is made here.
    """
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ModelError(f"expected a uint8 batch [B, H, W, 3], got {getattr(batch, 'shape', type(batch).__name__)}")
    if batch.dtype != np.uint8:
        raise ModelError(f"expected uint8 images, got {batch.dtype}")
    return portable_torch.to_tensor_batch(batch, device)


def to_detections(outputs: Sequence[Mapping[str, torch.Tensor]], height: int, width: int,
                  max_detections: int = MAX_DETECTIONS,
                  label_map: Sequence[int] | Mapping[int, int] | None = None) -> Detections:
    """torchvision's per-image outputs for images of ``height`` x ``width`` px -> ``Detections``.

    Boxes are normalized by the image size and clipped to [0, 1]; each image keeps its ``max_detections``
    best boxes (highest score first), padded with zeros to ``max_detections`` slots. Labels are the
    classes unless ``label_map`` maps them (a sequence indexed by label, or a dict) to category ids.
    """
    if height <= 0 or width <= 0:
        raise ModelError(f"image size must be positive, got {height}x{width}")
    per_image = []
    for i, out in enumerate(outputs):
        try:
            xyxy, score, label = portable_torch.output_arrays(out)
        except KeyError as exc:
            raise ModelError(f"detection output {i} has no {exc}: expected torchvision's boxes, scores, "
                             "labels") from exc
        if not len(xyxy) == len(score) == len(label):
            raise ModelError(f"detection output {i}: {len(xyxy)} boxes, {len(score)} scores, {len(label)} labels")
        per_image.append((xyxy, score, label))
    try:
        return Detections(*portable_torch.pack(per_image, height, width, max_detections, label_map))
    except (KeyError, IndexError) as exc:
        raise ModelError(f"the model returned label {exc} that its label map does not name") from exc


def make_run(model: nn.Module, device: str | torch.device = "cpu", max_detections: int = MAX_DETECTIONS,
             label_map: Sequence[int] | Mapping[int, int] | None = None, stacked: bool = False) -> RunFn:
    """``run(batch) -> Detections`` for a torchvision-style detector, under ``torch.inference_mode``.

    The outputs are copied to host numpy arrays before ``run`` returns, so a timed call ends only when
    the device has finished the batch. ``stacked``: the model takes one [B, 3, H, W] tensor instead of a
    list (an exported program traced so). A scripted torchvision detector's (losses, detections) is read
    as its detections. On a GPU, ``run.device_clock`` times each model call with CUDA events (the copy to
    the device and the conversion to numpy stay outside it: they are the host's share); on a CPU it is None.
    """
    try:
        model.eval()
    except NotImplementedError:
        pass  # an exported program: frozen in eval mode when it was exported

    clock = CudaEventClock() if torch.device(device).type == "cuda" else None

    def run(batch: np.ndarray) -> Detections:
        with torch.inference_mode():
            images = to_tensor_batch(batch, device)
            started = clock.begin() if clock is not None else None
            outputs = model(torch.stack(images) if stacked else images)
            if clock is not None:
                clock.end(started)
        if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], list):
            outputs = outputs[1]
        return to_detections(outputs, batch.shape[1], batch.shape[2], max_detections, label_map)

    run.model = model  # type: ignore[attr-defined]  # keeps the module alive as long as ``run``
    run.device_clock = clock  # type: ignore[attr-defined]
    return run
