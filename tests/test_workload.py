"""The camera workload: tiles are views in the documented order, batches cover every tile, boxes map exactly."""

from __future__ import annotations

import numpy as np
import pytest

from odperf.errors import WorkloadError
from odperf.workload import (
    IMAGES_PER_CAR,
    PAPER_BATCH_SIZES,
    PAPER_GRID,
    CameraGrid,
    batch_bounds,
    camera_to_tile,
    normalized_to_xywh,
    tile_to_camera,
    xywh_to_normalized,
)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, PAPER_GRID.shape, dtype=np.uint8)


def test_paper_geometry():
    g = PAPER_GRID
    assert (g.height, g.width) == (2700, 2100)
    assert (g.image_tiles, g.tiles_per_image) == (63, 64)
    assert IMAGES_PER_CAR == 95
    assert PAPER_BATCH_SIZES == (1, 2, 4, 8, 16, 32, 64)


def test_tiles_are_views_in_row_major_order_with_blank_last(image):
    tiled = PAPER_GRID.cut(image)
    assert len(tiled) == 64
    for index in (0, 1, 6, 7, 30, 62):
        tile = tiled.tile(index)
        assert np.shares_memory(tile, image), f"tile {index} is a copy"
        row, col = divmod(index, 7)
        np.testing.assert_array_equal(tile, image[row * 300 : (row + 1) * 300, col * 300 : (col + 1) * 300])
    blank = tiled.tile(63)
    assert blank.shape == (300, 300, 3) and not blank.any()
    assert not np.shares_memory(blank, image)
    assert not tiled.view.flags.writeable


@pytest.mark.parametrize("batch_size", PAPER_BATCH_SIZES + (3, 10, 63, 100))
def test_batches_round_trip_exactly(image, batch_size):
    tiled = PAPER_GRID.cut(image)
    collected = np.concatenate([b.copy() for b in tiled.batches(batch_size)])
    assert collected.shape == (64, 300, 300, 3)
    assert not collected[63].any()
    np.testing.assert_array_equal(PAPER_GRID.assemble(collected), image)


def test_partial_last_batch_is_short_or_padded(image):
    assert batch_bounds(64, 10)[-1] == (60, 64)
    sizes = [len(b) for b in PAPER_GRID.cut(image).batches(10)]
    assert sizes == [10] * 6 + [4]
    padded = [b.copy() for b in PAPER_GRID.cut(image).batches(10, pad_last=True)]
    assert [len(b) for b in padded] == [10] * 7
    assert not padded[-1][4:].any()


def test_other_grids():
    g = CameraGrid(rows=2, cols=3, tile=32, blank_tiles=2)
    img = np.arange(np.prod(g.shape), dtype=np.uint64).astype(np.uint8).reshape(g.shape)
    tiled = g.cut(img)
    assert len(tiled) == 8
    np.testing.assert_array_equal(tiled.tile(5), img[32:64, 64:96])
    assert not tiled.tile(6).any() and not tiled.tile(7).any()


def test_wrong_size_is_refused_with_the_fix():
    with pytest.raises(WorkloadError, match=r"2100x2700.*needs 2700x2100.*never crops"):
        PAPER_GRID.cut(np.zeros((2100, 2700, 3), np.uint8))
    with pytest.raises(WorkloadError, match="uint8"):
        PAPER_GRID.cut(np.zeros(PAPER_GRID.shape, np.float32))
    with pytest.raises(WorkloadError, match="shape"):
        PAPER_GRID.cut(np.zeros((2700, 2100), np.uint8))
    with pytest.raises(WorkloadError, match="positive integer"):
        CameraGrid(rows=0)
    with pytest.raises(WorkloadError, match="batch size"):
        batch_bounds(64, 0)


def test_pad_fills_bottom_right_and_never_crops():
    small = np.full((2650, 2000, 3), 7, np.uint8)
    padded = PAPER_GRID.pad(small)
    assert padded.shape == PAPER_GRID.shape
    assert (padded[:2650, :2000] == 7).all() and not padded[2650:].any() and not padded[:, 2000:].any()
    with pytest.raises(WorkloadError, match="never"):
        PAPER_GRID.pad(np.zeros((2800, 2100, 3), np.uint8))


def test_boxes_round_trip_between_tile_and_camera():
    rng = np.random.default_rng(1)
    for index in (0, 8, 62):
        xy = rng.uniform(0, 200, (20, 2))
        wh = rng.uniform(1, 100, (20, 2))
        boxes = np.concatenate([xy, wh], axis=1)
        cam = tile_to_camera(boxes, index)
        y0, x0 = PAPER_GRID.tile_origin(index)
        np.testing.assert_allclose(cam[:, :2], boxes[:, :2] + [x0, y0])
        tiles, back = camera_to_tile(cam)
        assert (tiles == index).all()
        np.testing.assert_allclose(back, boxes, atol=1e-9)


def test_box_crossing_a_tile_border_is_refused():
    with pytest.raises(WorkloadError, match="crosses a tile border"):
        camera_to_tile(np.array([[290.0, 10.0, 20.0, 20.0]]))


def test_normalized_boxes_round_trip():
    xywh = np.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 300.0, 300.0]])
    norm = xywh_to_normalized(xywh, 300, 300)
    np.testing.assert_allclose(norm[0], [20 / 300, 10 / 300, 60 / 300, 40 / 300])
    np.testing.assert_allclose(normalized_to_xywh(norm, 300, 300), xywh)


def test_tile_index_at_and_origin_agree():
    for index in range(63):
        y0, x0 = PAPER_GRID.tile_origin(index)
        assert PAPER_GRID.tile_index_at(x0 + 150, y0 + 150) == index
    with pytest.raises(WorkloadError, match="blank"):
        PAPER_GRID.tile_origin(63)


def test_a_callers_batch_buffer_is_reused_and_checked(image):
    from odperf.workload import batch_buffer

    buf = batch_buffer(PAPER_GRID, 16)
    batches = list(PAPER_GRID.cut(image).batches(16, buffer=buf))
    assert all(np.shares_memory(b, buf) for b in batches)
    with pytest.raises(WorkloadError, match="batch buffer"):
        next(PAPER_GRID.cut(image).batches(8, buffer=buf))
