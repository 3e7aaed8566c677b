"""A dataset's images and annotations checked before any worker starts.

Without this a missing, corrupt or truncated image surfaced inside a worker, as a traceback in the middle
of a case, and a dataset without annotations was refused only after every case was timed. The image check
is cheap by design: each file's header is opened (its format and size, as the instances JSON states them)
and its end is looked at (a JPEG ends with its EOI marker, a PNG with its IEND chunk); only a file whose end
is not where its format puts it is decoded in full, which decides.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from odperf.datasets.coco import CocoDataset
from odperf.errors import DatasetError

_TAIL = 64  # bytes read from each file's end
_ENDS = {"JPEG": (b"\xff\xd9",), "PNG": (b"IEND\xaeB`\x82",)}  # how a complete file of the format ends


def check_images(dataset: CocoDataset) -> None:
    """Every image the instances file names is there, readable, of the size it states and complete;
    DatasetError names the first that is not and how to fix it."""
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        path = dataset.image_dir / info["file_name"]
        where = f"image {path} (id {image_id})"
        try:
            with Image.open(path) as img:
                fmt, (width, height) = img.format, img.size
            if (height, width) != (info["height"], info["width"]):
                raise DatasetError(f"{where} is {height}x{width} (height x width) but {dataset.ann_file.name} says "
                                   f"{info['height']}x{info['width']}: its boxes would be wrong; fix the JSON or the file")
            if not _ends_whole(path, fmt):
                _decode(path)
        except FileNotFoundError:
            raise DatasetError(f"{where} is missing: the dataset's image folder is incomplete; restore the file "
                               "or remove the image from the instances file") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"{where} cannot be read ({exc}); replace the file") from None


def has_annotations(dataset: CocoDataset) -> bool:
    """Whether any image has an object box: mAP needs ground truth to score against."""
    return any(dataset.annotations(i) for i in dataset.image_ids)


def _ends_whole(path: Path, fmt: str | None) -> bool:
    ends = _ENDS.get(fmt or "")
    if ends is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - _TAIL))
        tail = f.read().rstrip(b"\x00")
    return tail.endswith(ends)


def _decode(path: Path) -> None:
    """A full decode: raises OSError ("image file is truncated", ...) for an incomplete file."""
    with Image.open(path) as img:
        img.load()
