"""The Detections record and the Detector calling convention, without any model file."""

from __future__ import annotations

import numpy as np
import pytest

from odperf.errors import ModelError
from odperf.backends.contract import Detections, Detector


def dets(b: int, n: int, fill: float) -> Detections:
    return Detections(np.full((b, n, 4), fill), np.full((b, n), fill), np.full((b, n), 2.0), np.full((b,), n, float))


def test_types_are_normalised():
    d = dets(2, 3, 0.5)
    assert (d.boxes.dtype, d.scores.dtype, d.classes.dtype, d.counts.dtype) == (np.float32, np.float32, np.int32, np.int32)
    assert len(d) == 2 and d.slots == 3
    boxes, scores, classes = d.valid(1)
    assert boxes.shape == (3, 4) and classes.tolist() == [2, 2, 2]


def test_concat_pads_slots_with_zeros():
    out = Detections.concat([dets(1, 2, 0.25), dets(2, 4, 0.5)])
    assert out.boxes.shape == (3, 4, 4) and out.counts.tolist() == [2, 4, 4]
    assert out.scores[0].tolist() == [0.25, 0.25, 0.0, 0.0]


def test_shape_mismatch_is_named():
    with pytest.raises(ModelError, match=r"detection_scores has shape \(2, 5\); expected \(2, 3\)"):
        Detections(np.zeros((2, 3, 4)), np.zeros((2, 5)), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ModelError, match="detection_boxes"):
        Detections(np.zeros((2, 3, 5)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2))


def test_tile_by_tile_feeds_one_image_per_call():
    seen = []

    def run(batch: np.ndarray) -> Detections:
        seen.append(batch.shape[0])
        return dets(batch.shape[0], 1, float(batch.mean()) / 255)

    batch = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 51, 255)])
    det = Detector("toy", "toy", "tf2_saved_model", run, batch_mode="tile_by_tile", max_batch=1)
    out = det(batch)
    assert seen == [1, 1, 1]
    np.testing.assert_allclose(out.scores[:, 0], [0.0, 0.2, 1.0])
    batched = Detector("toy", "toy", "tf2_saved_model", run)
    batched(batch)
    assert seen[-1] == 3


def test_probe_comparison_tolerates_rounding_but_not_other_images():
    from odperf.zoo.loaders import _same

    a = Detections(np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6], [0, 0, 0, 0]]]),
                   np.array([[0.9, 0.5, 0.0]]), np.array([[1.0, 3.0, 0.0]]), np.array([2.0]))
    swapped = Detections(a.boxes[:, [1, 0, 2]] + 1e-5, a.scores[:, [1, 0, 2]], a.classes[:, [1, 0, 2]], a.counts)
    assert _same(a, swapped)
    moved = Detections(a.boxes + 0.05, a.scores, a.classes, a.counts)
    assert not _same(a, moved)
    relabelled = Detections(a.boxes, a.scores, np.array([[2.0, 3.0, 0.0]]), a.counts)
    assert not _same(a, relabelled)
    fewer = Detections(a.boxes, a.scores, a.classes, np.array([0.0]))
    assert not _same(a, fewer)
