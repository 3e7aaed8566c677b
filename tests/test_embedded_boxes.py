"""Box arithmetic and augmentation behind the embedded detectors' training targets."""

import numpy as np
import tensorflow as tf

from odperf.zoo.embedded import boxes as bx
from odperf.zoo.embedded.data import Split, batches


def test_iou_of_known_boxes():
    a = tf.constant([[0.0, 0.0, 10.0, 10.0]])
    b = tf.constant([[0.0, 0.0, 10.0, 10.0], [0.0, 5.0, 10.0, 15.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(bx.pairwise_iou(a, b).numpy(), [[1.0, 50 / 150, 0.0]], atol=1e-6)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    anchors = bx.grid_anchors(5, 8, (12.0, 30.0), (1.0,))
    y, x = rng.uniform(0, 200, (2, len(anchors)))
    h, w = rng.uniform(4, 120, (2, len(anchors)))
    boxes = np.stack([y, x, y + h, x + w], axis=-1).astype(np.float32)
    decoded = bx.decode(bx.encode(tf.constant(boxes), tf.constant(anchors)), tf.constant(anchors))
    np.testing.assert_allclose(decoded.numpy(), boxes, rtol=1e-4, atol=1e-3)


def test_grid_anchors_order_matches_head_layout():
    anchors = bx.grid_anchors(3, 8, (10.0, 20.0), (1.0,))
    assert anchors.shape == (3 * 3 * 2, 4)
    # cell (row 0, col 1) comes right after cell (0, 0)'s two anchors: centre x moves by one stride
    centre_x = (anchors[:, 1] + anchors[:, 3]) / 2
    np.testing.assert_allclose(centre_x[[0, 1, 2]], [4.0, 4.0, 12.0])
    np.testing.assert_allclose(anchors[1, 2] - anchors[1, 0], 20.0)


def test_match_gives_every_object_an_anchor_and_ignores_padding():
    anchors = tf.constant(bx.grid_anchors(4, 8, (16.0,), (1.0,)))
    gt = tf.constant([[[0.0, 0.0, 16.0, 16.0], [9.0, 9.0, 13.0, 13.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = tf.constant([[True, True, False]])
    index, positive, negative = bx.match(anchors, gt, valid, 0.5, 0.4)
    index, positive, negative = index.numpy()[0], positive.numpy()[0], negative.numpy()[0]
    assert positive[0] and index[0] == 0  # exact fit
    # the 4x4 object overlaps no anchor by 0.5 IoU but still claims its best one
    assert (index[positive] == 1).any()
    assert not (positive & negative).any()
    assert 2 not in index[positive]  # padding never matched
    assert negative.sum() >= len(positive) - 3


def test_flips_move_boxes_with_pixels():
    images = np.zeros((4, 40, 40, 3), np.uint8)
    images[:, 5:15, 20:35] = 255  # rows 5..14, cols 20..34
    boxes = np.zeros((4, 2, 4), np.float32)
    boxes[:, 0] = (5, 20, 15, 35)
    classes = np.array([[0, -1]] * 4, np.int32)
    split = Split(images, boxes, classes, np.arange(4), (1,))
    stream = batches(split, batch_size=4, seed=1)
    seen = set()
    for _ in range(5):
        imgs, bxs, _ = next(stream)
        for img, box in zip(imgs, bxs):
            y0, x0, y1, x1 = box[0].astype(int)
            assert img[y0:y1, x0:x1].min() == 255
            assert img.sum() == 255 * 3 * 10 * 15
            seen.add((y0, x0))
    assert len(seen) == 4  # all four flip combinations occur
