"""What travels through the broker: camera images as encoded files, detections as compressed arrays.

A camera sends an encoded image (JPEG by default, as cameras do; PNG when the pixels must arrive exactly),
never raw pixels: 17 MB a camera image at the paper's size. Detections go back per model call (boxes,
scores, classes, counts), cut to the slots in use.
"""

from __future__ import annotations

import io
from typing import Any, Iterable

import numpy as np

ENCODINGS = ("jpeg", "png")
JPEG_QUALITY = 95


def encode_image(image: np.ndarray, encoding: str = "jpeg") -> bytes:
    """The camera's file for one camera image (H, W, 3) uint8."""
    from PIL import Image

    buffer = io.BytesIO()
    if encoding == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    elif encoding == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    else:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Pixels (H, W, 3) uint8 of an encoded camera image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def pack_detections(outputs: Iterable[Any]) -> bytes:
    """One image's model calls (``Detections``: boxes, scores, classes, counts) as one .npz, slots past the
    largest count dropped."""
    arrays: dict[str, np.ndarray] = {}
    for k, d in enumerate(outputs):
        n = int(np.max(d.counts)) if np.size(d.counts) else 0
        arrays.update({f"boxes{k}": d.boxes[:, :n], f"scores{k}": d.scores[:, :n],
                       f"classes{k}": d.classes[:, :n], f"counts{k}": d.counts})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def unpack_detections(data: bytes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(boxes, scores, classes, counts) per model call, in call order."""
    with np.load(io.BytesIO(data)) as z:
        calls = len([k for k in z.files if k.startswith("counts")])
        return [(z[f"boxes{k}"], z[f"scores{k}"], z[f"classes{k}"], z[f"counts{k}"]) for k in range(calls)]
