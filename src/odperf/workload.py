"""The paper's camera workload: camera images cut into 300x300 tiles, batches of tiles, cars of images.

Tile order (the contract every other module relies on): row-major from the top-left corner, so tile
``i`` of a ``rows x cols`` grid sits at row ``i // cols`` and column ``i % cols``; the blank tiles come
last (index ``rows * cols`` and up). With the paper's 9 x 7 grid that is 63 image tiles and tile 63 blank.

Cutting an image returns views into the image, not copies: the only copy is the one that fills the
model's input batch, which is part of what the paper times ("splitting the test image into tiles").

Partial last batch: when the batch size does not divide the tiles per image, the last batch is short
(it holds the remaining tiles); ``pad_last=True`` fills it up with blank tiles instead, for models that
need a fixed batch shape. The paper's batch sizes all divide 64, so neither case arises there.

Images whose size does not match the grid are refused; ``CameraGrid.pad`` pads a smaller image with
zeros at the bottom and right (documented, explicit, never a silent crop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from odperf.errors import WorkloadError

PAPER_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
"""Tiles per model call in the paper; 64 holds one whole camera image."""


@dataclass(frozen=True)
class Car:
    """A car on the line: every camera takes ``shots`` pictures of it (5 x 19 = 95 in the paper)."""

    cameras: int = 5
    shots: int = 19

    @property
    def images(self) -> int:
        return self.cameras * self.shots


PAPER_CAR = Car()
IMAGES_PER_CAR = PAPER_CAR.images


@dataclass(frozen=True)
class CameraGrid:
    """Geometry of a camera image as a grid of square tiles plus blank tiles to round the count up."""

    rows: int = 9
    cols: int = 7
    tile: int = 300
    blank_tiles: int = 1
    channels: int = 3

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "tile", "channels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise WorkloadError(f"camera grid: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.blank_tiles, (int, np.integer)) or self.blank_tiles < 0:
            raise WorkloadError(f"camera grid: blank_tiles must be >= 0, got {self.blank_tiles!r}")

    @property
    def height(self) -> int:
        return self.rows * self.tile

    @property
    def width(self) -> int:
        return self.cols * self.tile

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def image_tiles(self) -> int:
        """Tiles that hold image content (63 in the paper)."""
        return self.rows * self.cols

    @property
    def tiles_per_image(self) -> int:
        """Tiles sent to the model per camera image, blanks included (64 in the paper)."""
        return self.image_tiles + self.blank_tiles

    def describe(self) -> str:
        return (
            f"{self.height}x{self.width} px camera image = {self.rows} rows x {self.cols} columns of "
            f"{self.tile}x{self.tile} tiles ({self.image_tiles} tiles + {self.blank_tiles} blank "
            f"= {self.tiles_per_image})"
        )

    # --- tile positions -------------------------------------------------------------------------
    def is_blank(self, index: int) -> bool:
        self._check_index(index)
        return index >= self.image_tiles

    def tile_origin(self, index: int) -> tuple[int, int]:
        """Top-left pixel (y, x) of image tile ``index`` in the camera image."""
        self._check_index(index)
        if index >= self.image_tiles:
            raise WorkloadError(f"tile {index} is a blank tile: it has no place in the camera image")
        row, col = divmod(index, self.cols)
        return row * self.tile, col * self.tile

    def tile_index_at(self, x: float, y: float) -> int:
        """Index of the image tile that holds camera pixel position (x, y)."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise WorkloadError(
                f"point (x={x}, y={y}) lies outside the {self.height}x{self.width} camera image"
            )
        return int(y // self.tile) * self.cols + int(x // self.tile)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.tiles_per_image:
            raise WorkloadError(f"tile index {index} out of range 0..{self.tiles_per_image - 1}")

    # --- images ---------------------------------------------------------------------------------
    def check_image(self, image: np.ndarray, what: str = "camera image") -> None:
        """Refuse, with the sizes and the fix, an image that is not exactly this grid's size."""
        if not isinstance(image, np.ndarray):
            raise WorkloadError(f"{what}: expected a numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != self.channels:
            raise WorkloadError(
                f"{what}: expected shape (height, width, {self.channels}), got {image.shape}"
            )
        if image.dtype != np.uint8:
            raise WorkloadError(f"{what}: expected uint8 pixels, got {image.dtype}")
        h, w = image.shape[:2]
        if (h, w) != (self.height, self.width):
            raise WorkloadError(
                f"{what} is {h}x{w} (height x width) but the grid needs {self.height}x{self.width} "
                f"({self.rows} rows x {self.cols} columns of {self.tile} px). Choose a grid that matches "
                f"(rows={h / self.tile:g}, cols={w / self.tile:g} at this tile size), or pad a smaller "
                f"image with CameraGrid.pad; odperf never crops."
            )

    def pad(self, image: np.ndarray) -> np.ndarray:
        """Pad a smaller image with zeros at the bottom and right to the grid's size (a copy)."""
        if image.ndim != 3 or image.shape[2] != self.channels:
            raise WorkloadError(f"pad: expected shape (height, width, {self.channels}), got {image.shape}")
        h, w = image.shape[:2]
        if h > self.height or w > self.width:
            raise WorkloadError(
                f"pad: image is {h}x{w}, larger than the grid's {self.height}x{self.width}; odperf never "
                f"crops: use a grid with more rows or columns"
            )
        out = np.zeros(self.shape, dtype=image.dtype)
        out[:h, :w] = image
        return out

    def blank_image(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.uint8)

    def cut(self, image: np.ndarray) -> "TiledImage":
        """Cut a camera image into tiles: a view of the image, no pixels copied."""
        self.check_image(image)
        s0, s1, s2 = image.strides
        t = self.tile
        view = as_strided(
            image,
            shape=(self.rows, self.cols, t, t, self.channels),
            strides=(s0 * t, s1 * t, s0, s1, s2),
            writeable=False,
        )
        return TiledImage(self, image, view)

    def assemble(self, tiles: np.ndarray) -> np.ndarray:
        """Inverse of cut: the camera image from its image tiles (``tiles[:image_tiles]``), a copy."""
        if tiles.shape[0] < self.image_tiles or tiles.shape[1:] != (self.tile, self.tile, self.channels):
            raise WorkloadError(
                f"assemble: expected at least {self.image_tiles} tiles of "
                f"{(self.tile, self.tile, self.channels)}, got {tiles.shape}"
            )
        grid = tiles[: self.image_tiles].reshape(self.rows, self.cols, self.tile, self.tile, self.channels)
        return np.ascontiguousarray(grid.transpose(0, 2, 1, 3, 4)).reshape(self.shape)


PAPER_GRID = CameraGrid()


def batch_bounds(n_tiles: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) tile ranges of each batch; the last one is short when batch_size does not divide."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise WorkloadError(f"batch size must be a positive integer, got {batch_size!r}")
    return [(start, min(start + batch_size, n_tiles)) for start in range(0, n_tiles, batch_size)]


@dataclass(frozen=True)
class TiledImage:
    """A camera image seen as tiles. ``view`` is (rows, cols, tile, tile, channels) over the image."""

    grid: CameraGrid
    image: np.ndarray
    view: np.ndarray

    def __len__(self) -> int:
        return self.grid.tiles_per_image

    def tile(self, index: int) -> np.ndarray:
        """Tile ``index`` as a view into the image; a blank tile is a read-only array of zeros."""
        if self.grid.is_blank(index):
            return _blank(self.grid)
        row, col = divmod(index, self.grid.cols)
        return self.view[row, col]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.tile(i) for i in range(len(self)))

    def fill(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Copy tiles [start, stop) into ``out[:stop-start]`` (the model's input buffer) and return it: the
        worker core's own copy (``engine/portable.fill``), so a local run and a board fill batches alike."""
        from odperf.engine.portable import fill

        return fill(self.grid, self.view, start, stop, out)

    def batches(
        self, batch_size: int, pad_last: bool = False, buffer: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """Yield contiguous uint8 batches of ``batch_size`` tiles in tile order.

        The buffer is reused between batches: consume each one before asking for the next. A caller
        timing many images passes its own ``buffer`` (``batch_buffer``), so that no image pays for
        freshly mapped memory.
        """
        g = self.grid
        bounds = batch_bounds(g.tiles_per_image, batch_size)
        shape = (batch_size, g.tile, g.tile, g.channels)
        if buffer is None:
            buffer = np.empty(shape, dtype=np.uint8)
        elif buffer.shape != shape or buffer.dtype != np.uint8:
            raise WorkloadError(f"batch buffer must be uint8 {shape}, got {buffer.dtype} {buffer.shape}")
        for start, stop in bounds:
            batch = self.fill(start, stop, buffer)
            if pad_last and len(batch) < batch_size:
                buffer[len(batch) :] = 0
                batch = buffer
            yield batch


def batch_buffer(grid: CameraGrid, batch_size: int) -> np.ndarray:
    """A batch buffer for ``TiledImage.batches``, touched once so its pages are mapped before timing."""
    return np.zeros((batch_size, grid.tile, grid.tile, grid.channels), dtype=np.uint8)


_BLANKS: dict[tuple[int, int], np.ndarray] = {}


def _blank(grid: CameraGrid) -> np.ndarray:
    key = (grid.tile, grid.channels)
    if key not in _BLANKS:
        blank = np.zeros((grid.tile, grid.tile, grid.channels), dtype=np.uint8)
        blank.setflags(write=False)
        _BLANKS[key] = blank
    return _BLANKS[key]


# --- boxes -----------------------------------------------------------------------------------------
def normalized_to_xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Detector boxes (normalized ymin, xmin, ymax, xmax) to absolute COCO [x, y, w, h] pixels."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ymin, xmin, ymax, xmax = (np.clip(b[:, i], 0.0, 1.0) for i in range(4))
    x, y = xmin * width, ymin * height
    return np.stack([x, y, (xmax - xmin) * width, (ymax - ymin) * height], axis=1)


def xywh_to_normalized(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """COCO [x, y, w, h] pixels to normalized (ymin, xmin, ymax, xmax), the detectors' convention."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = b.T
    return np.stack([y / height, x / width, (y + h) / height, (x + w) / width], axis=1)


def tile_to_camera(boxes: np.ndarray, index: int, grid: CameraGrid = PAPER_GRID) -> np.ndarray:
    """Move [x, y, w, h] boxes of tile ``index`` into camera-image coordinates."""
    y0, x0 = grid.tile_origin(index)
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, 0] += x0
    out[:, 1] += y0
    return out


def camera_to_tile(
    boxes: np.ndarray, grid: CameraGrid = PAPER_GRID, tolerance: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Map camera-image [x, y, w, h] boxes to (tile indices, boxes in tile coordinates).

    Each box goes to the tile holding its centre. A box that crosses a tile border by more than
    ``tolerance`` pixels is refused: no detector working on tiles can produce one, so it means the
    boxes were not made from this grid.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64), b.copy()
    cx = np.clip(b[:, 0] + b[:, 2] / 2, 0, grid.width - 1e-9)
    cy = np.clip(b[:, 1] + b[:, 3] / 2, 0, grid.height - 1e-9)
    rows, cols = (cy // grid.tile).astype(np.int64), (cx // grid.tile).astype(np.int64)
    x0, y0 = cols * grid.tile, rows * grid.tile
    out = b.copy()
    out[:, 0] -= x0
    out[:, 1] -= y0
    over = (
        (out[:, 0] < -tolerance)
        | (out[:, 1] < -tolerance)
        | (out[:, 0] + out[:, 2] > grid.tile + tolerance)
        | (out[:, 1] + out[:, 3] > grid.tile + tolerance)
    )
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise WorkloadError(
            f"box {b[i].tolist()} crosses a tile border of the {grid.rows}x{grid.cols} grid of "
            f"{grid.tile} px tiles: it cannot come from a detector run on these tiles"
        )
    return rows * grid.cols + cols, out
