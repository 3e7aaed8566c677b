"""The Detector contract in PyTorch terms: uint8 NHWC batches in, ``Detections`` on the host out.

torchvision's detectors take a list of float CHW images in [0, 1] and return, per image, a dict of
``boxes`` (x1, y1, x2, y2 in input pixels), ``scores`` and ``labels``. odperf's contract is the TF zoo's:
normalized (ymin, xmin, ymax, xmax), 1-based class ids, a count per image, padded to a common slot count.
Moving the outputs to numpy is what makes a timed image end only when the detections are on the host.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from odperf.zoo.detector import Detections


def to_tensors(batch: np.ndarray, device: Any) -> list[Any]:
    """uint8 [B, H, W, 3] -> B float CHW tensors in [0, 1] on ``device`` (one copy to the device)."""
    import torch

    images = torch.from_numpy(batch).to(device, non_blocking=False)
    images = images.permute(0, 3, 1, 2).float().div_(255.0)
    return list(images.unbind(0))


def to_detections(outputs: Sequence[dict[str, Any]], height: int, width: int,
                  max_detections: int = 100) -> Detections:
    """torchvision's per-image dicts -> Detections (numpy on the host), best ``max_detections`` first."""
    b = len(outputs)
    n = max(1, min(max_detections, max((len(o["scores"]) for o in outputs), default=0)))
    boxes = np.zeros((b, n, 4), np.float32)
    scores = np.zeros((b, n), np.float32)
    classes = np.zeros((b, n), np.int32)
    counts = np.zeros((b,), np.int32)
    scale = np.array([width, height, width, height], np.float32)
    for i, out in enumerate(outputs):
        s = out["scores"].detach().cpu().numpy()
        order = np.argsort(-s, kind="stable")[:n]
        k = len(order)
        xyxy = out["boxes"].detach().cpu().numpy()[order] / scale
        boxes[i, :k] = xyxy[:, [1, 0, 3, 2]]
        scores[i, :k] = s[order]
        classes[i, :k] = out["labels"].detach().cpu().numpy()[order]
        counts[i] = k
    return Detections(boxes, scores, classes, counts)
