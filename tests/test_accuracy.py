"""COCO mAP of the tiled workload: camera image -> tiles -> batches -> detections -> camera results -> COCOeval."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from odperf.datasets import synthetic
from odperf.datasets.camera import CameraSet, build_camera_set
from odperf.datasets.coco import CocoDataset
from odperf.errors import OdperfError, WorkloadError
from odperf.measure.accuracy import BOX_TOLERANCE, AccuracyError, TiledDetections, evaluate_camera_results
from odperf.workload import PAPER_GRID, batch_bounds, xywh_to_normalized

GAPPED = {1: 3, 2: 18, 3: 44, 4: 62, 5: 90}  # COCO-like ids with gaps, to see that ids survive
SLOTS = 160  # more than COCO's 100 detections per image


@pytest.fixture(scope="module")
def camera_set(tmp_path_factory) -> CameraSet:
    root = tmp_path_factory.mktemp("shapes")
    ann = synthetic.generate(root, "val2017", 40, seed=11)
    data = json.loads(ann.read_text())
    for c in data["categories"]:
        c["id"] = GAPPED[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = GAPPED[a["category_id"]]
    ann.write_text(json.dumps(data))
    return build_camera_set(CocoDataset.from_root(root), 2, seed=0)


Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def run(camera_set: CameraSet, detector: Callable[[np.ndarray], Outputs], batch_size: int) -> TiledDetections:
    """What the engine does: each camera image cut into tiles, batches through the detector."""
    g = camera_set.grid
    acc = TiledDetections(g)
    for c in range(camera_set.n_images):
        tiled = g.cut(camera_set.image(c))
        buffer = np.empty((batch_size, g.tile, g.tile, 3), np.uint8)
        for start, stop in batch_bounds(g.tiles_per_image, batch_size):
            acc.add(c, start, *detector(tiled.fill(start, stop, buffer)))
    return acc


class LookupDetector:
    """Answers each tile with detections fixed per source image, found by the tile's pixels."""

    def __init__(self, camera_set: CameraSet, per_source: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]):
        self.by_content = {
            camera_set.tile(src).tobytes(): per_source[src] for src in camera_set.dataset.image_ids
        }

    def __call__(self, batch: np.ndarray) -> Outputs:
        b = len(batch)
        boxes, scores = np.zeros((b, SLOTS, 4), np.float32), np.zeros((b, SLOTS), np.float32)
        classes, counts = np.zeros((b, SLOTS), np.float32), np.zeros(b, np.float32)
        for k, tile in enumerate(batch):
            xywh, s, cls = self.by_content.get(tile.tobytes(), (np.zeros((0, 4)), [], []))
            n = len(s)
            boxes[k, :n] = xywh_to_normalized(xywh, 300, 300)
            scores[k, :n], classes[k, :n], counts[k] = s, cls, n
        return boxes, scores, classes, counts


def shifted_detections(camera_set: CameraSet, seed: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per source: GT boxes shifted by known sub-pixel offsets, some missed, some relabelled, plus false
    positives; one source gets 150 detections, so COCO's 100-per-image cap bites."""
    rng = np.random.default_rng(seed)
    ds = camera_set.dataset
    cat_ids = [c["id"] for c in ds.categories]
    out = {}
    for n, src in enumerate(ds.image_ids):
        anns = [a for a in ds.annotations(src) if rng.random() > 0.15]
        boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes[:, :2] += rng.uniform(-6, 6, (len(boxes), 2))
        classes = [a["category_id"] if rng.random() > 0.1 else int(rng.choice(cat_ids)) for a in anns]
        n_fp = 150 - len(boxes) if n == 3 else int(rng.integers(0, 4))
        fp = np.concatenate([rng.uniform(0, 200, (n_fp, 2)), rng.uniform(4, 90, (n_fp, 2))], axis=1)
        boxes = np.clip(np.concatenate([boxes, fp]), 0, None)
        boxes[:, 2:] = np.minimum(boxes[:, 2:], 300 - boxes[:, :2])
        classes += rng.choice(cat_ids, n_fp).tolist()
        out[src] = (boxes, rng.uniform(0.05, 1.0, len(boxes)), np.array(classes))
    return out


def _pycocotools_directly(camera_set: CameraSet, per_source) -> np.ndarray:
    """The same boxes fed to pycocotools by hand, tile by tile: the figures TiledDetections must give."""
    results = []
    g = camera_set.grid
    for c, t, src in camera_set.placements.tolist():
        boxes, scores, classes = per_source[src]
        for b, s, k in zip(boxes.tolist(), scores.tolist(), classes.tolist()):
            results.append({"image_id": c * g.tiles_per_image + t + 1, "category_id": k, "bbox": b, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(camera_set.tile_gt))
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_known_shifts_score_exactly_what_pycocotools_gives(camera_set: CameraSet, tmp_path: Path) -> None:
    per_source = shifted_detections(camera_set)
    acc = run(camera_set, LookupDetector(camera_set, per_source), batch_size=16)
    report = acc.evaluate(camera_set)
    want = _pycocotools_directly(camera_set, per_source)
    got = [report.ap, report.ap50, report.ap75, report.ap_small, report.ap_medium, report.ap_large]
    assert got == pytest.approx(want[:6].tolist(), abs=1e-12)
    assert report.ar100 == pytest.approx(want[8], abs=1e-12)
    assert 0.05 < report.ap < 0.95
    assert report.n_images == 2 * 63
    assert report.n_detections == sum(len(per_source[src][1]) for src in camera_set.placements[:, 2].tolist())
    assert report.per_category.keys() == {c["name"] for c in camera_set.categories}
    # What the line's user gets: camera-image coordinates, the dataset's own category ids
    results = acc.results()
    assert {r["image_id"] for r in results} == {1, 2}
    assert {r["category_id"] for r in results} <= set(GAPPED.values())
    assert max(r["bbox"][0] + r["bbox"][2] for r in results) > 1800  # tiles of the last column
    again = evaluate_camera_results(acc.write_results(tmp_path / "results.json"), camera_set)
    assert again.ap == pytest.approx(report.ap, abs=1e-12)


def test_only_the_tiles_the_detector_ran_on_are_scored_unless_told(camera_set: CameraSet) -> None:
    ds = camera_set.dataset
    exact = {s: (np.array([a["bbox"] for a in ds.annotations(s)]).reshape(-1, 4), np.ones(len(ds.annotations(s))),
                 np.array([a["category_id"] for a in ds.annotations(s)])) for s in ds.image_ids}
    detector = LookupDetector(camera_set, exact)
    acc = TiledDetections()
    tiled = PAPER_GRID.cut(camera_set.image(1))
    for start, stop in batch_bounds(64, 32):
        acc.add(1, start, *detector(np.array([tiled.tile(t) for t in range(start, stop)])))
    assert acc.tiles_seen == [(1, t) for t in range(63)]
    alone = acc.evaluate(camera_set)
    assert alone.ap == pytest.approx(1.0) and alone.n_images == 63
    assert alone.n_ground_truth == sum(a["image_id"] == 2 for a in camera_set.gt["annotations"])
    both = acc.evaluate(camera_set, camera_indices=[0, 1])
    assert both.n_images == 126 and both.ar100 < 0.75
    assert evaluate_camera_results(acc.results(), camera_set, camera_indices=[1]).ap == pytest.approx(1.0)


def test_batch_size_does_not_change_the_result(camera_set: CameraSet) -> None:
    per_source = shifted_detections(camera_set, seed=1)
    detector = LookupDetector(camera_set, per_source)
    one, five, sixty_four = (run(camera_set, detector, b).evaluate(camera_set) for b in (1, 5, 64))
    assert one.ap == five.ap == sixty_four.ap


def test_ground_truth_detector_in_tensorflow_scores_a_perfect_map(camera_set: CameraSet) -> None:
    tf = pytest.importorskip("tensorflow")
    ds = camera_set.dataset
    weights = np.random.default_rng(0).integers(1, 2**20, (300, 300, 3), dtype=np.int64)
    sources = ds.image_ids
    keys = np.array([(camera_set.tile(s).astype(np.int64) * weights).sum() for s in sources], np.int64)
    assert len(set(keys.tolist())) == len(sources)
    m = max(len(ds.annotations(s)) for s in sources)
    table_boxes = np.zeros((len(sources) + 1, m, 4), np.float32)  # the last row answers unknown tiles
    table_classes = np.zeros((len(sources) + 1, m), np.float32)
    table_counts = np.zeros(len(sources) + 1, np.float32)
    for row, s in enumerate(sources):
        anns = ds.annotations(s)
        if anns:
            table_boxes[row, : len(anns)] = xywh_to_normalized([a["bbox"] for a in anns], 300, 300)
            table_classes[row, : len(anns)] = [a["category_id"] for a in anns]
        table_counts[row] = len(anns)

    class GroundTruthDetector(tf.Module):
        """Finds each tile's ground truth by a weighted sum of its pixels: the zoo models' contract."""

        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.constant(weights)
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.range(len(sources), dtype=tf.int64)),
                default_value=len(sources),
            )
            self.boxes, self.classes = tf.constant(table_boxes), tf.constant(table_classes)
            self.counts = tf.constant(table_counts)

        @tf.function(input_signature=[tf.TensorSpec([None, 300, 300, 3], tf.uint8)])
        def __call__(self, images):
            key = tf.reduce_sum(tf.cast(images, tf.int64) * self.weights[None], axis=[1, 2, 3])
            row = self.table.lookup(key)
            counts = tf.gather(self.counts, row)
            slots = tf.range(m, dtype=tf.float32)[None] < counts[:, None]
            return {
                "detection_boxes": tf.gather(self.boxes, row),
                "detection_scores": tf.cast(slots, tf.float32),
                "detection_classes": tf.gather(self.classes, row),
                "num_detections": counts,
            }

    model = GroundTruthDetector()

    def detector(batch: np.ndarray) -> Outputs:
        out = {k: v.numpy() for k, v in model(tf.constant(batch)).items()}
        return out["detection_boxes"], out["detection_scores"], out["detection_classes"], out["num_detections"]

    acc = run(camera_set, detector, batch_size=8)
    report = acc.evaluate(camera_set)
    assert report.ap == pytest.approx(1.0) and report.ap50 == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in report.per_category.values())
    assert report.n_detections == report.n_ground_truth == len(camera_set.gt["annotations"])
    # camera-image results are the camera ground truth, box for box (float32 through the model)
    got = sorted((r["image_id"], r["category_id"], *np.round(r["bbox"], 2)) for r in acc.results())
    want = sorted((a["image_id"], a["category_id"], *np.round(a["bbox"], 2)) for a in camera_set.gt["annotations"])
    assert got == want


def test_empty_tiles_blank_tile_and_no_detections(camera_set: CameraSet) -> None:
    tile_ids_with_gt = {a["image_id"] for a in camera_set.tile_gt["annotations"]}
    assert len(tile_ids_with_gt) < len(camera_set.tile_gt["images"])  # some tiles hold no object
    nothing = TiledDetections()
    for c in range(2):
        nothing.add(c, 0, np.zeros((64, 5, 4)), np.zeros((64, 5)), np.ones((64, 5)), np.zeros(64))
    report = nothing.evaluate(camera_set)
    assert report.ap == 0.0 and report.n_detections == 0
    blank = TiledDetections()
    blank.add(0, 62, np.array([[[0.1, 0.1, 0.5, 0.5]]] * 2), np.ones((2, 1)), np.full((2, 1), 3), np.ones(2))
    assert len(blank) == 1  # tile 62 kept, blank tile 63 dropped
    assert blank.results()[0]["bbox"] == pytest.approx([1800 + 30, 2400 + 30, 120, 120])


def test_label_maps_that_do_not_match_are_errors_not_zero_map(camera_set: CameraSet) -> None:
    acc = TiledDetections()
    acc.add(0, 0, np.array([[[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4]]]), np.ones((1, 2)), np.array([[3, 7]]),
            np.array([2]))
    with pytest.raises(AccuracyError, match=r"class ids \[7\].*3 disk"):
        acc.evaluate(camera_set)
    named = TiledDetections(model="coco_ssd")
    named.add(0, 0, np.array([[[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4]]]), np.ones((1, 2)), np.array([[3, 7]]),
              np.array([2]))
    with pytest.raises(AccuracyError, match=r"^coco_ssd returns class ids \[7\] .* on 1 of 2 detections \(e.g. class 7"):
        named.evaluate(camera_set)
    with pytest.raises(AccuracyError, match="none of the model's categories"):
        TiledDetections().evaluate(camera_set, model_category_ids=range(100, 180))
    assert issubclass(AccuracyError, OdperfError)


def test_malformed_batches_are_refused() -> None:
    acc = TiledDetections()
    with pytest.raises(WorkloadError, match="tiles 60..65"):
        acc.add(0, 60, np.zeros((6, 1, 4)), np.zeros((6, 1)), np.ones((6, 1)), np.zeros(6))
    with pytest.raises(WorkloadError, match="expected"):
        acc.add(0, 0, np.zeros((2, 4)), np.zeros((2, 1)), np.ones((2, 1)), np.zeros(2))
    with pytest.raises(WorkloadError, match="exceed"):
        acc.add(0, 0, np.zeros((1, 1, 4)), np.zeros((1, 1)), np.ones((1, 1)), np.array([2]))


def test_results_for_another_camera_set_are_refused(camera_set: CameraSet) -> None:
    acc = TiledDetections()
    acc.add(5, 0, np.array([[[0.1, 0.1, 0.2, 0.2]]]), np.ones((1, 1)), np.array([[3]]), np.array([1]))
    with pytest.raises(WorkloadError, match=r"camera images \[5\]"):
        acc.evaluate(camera_set)
    crossing = [{"image_id": 1, "category_id": 3, "bbox": [250.0, 10.0, 100.0, 20.0], "score": 0.5}]
    with pytest.raises(WorkloadError, match="crosses a tile border"):
        evaluate_camera_results(crossing, camera_set)


def test_detections_from_another_grid_are_refused(camera_set: CameraSet) -> None:
    from odperf.workload import CameraGrid

    with pytest.raises(WorkloadError, match="detections were made on"):
        TiledDetections(CameraGrid(rows=3, cols=3)).evaluate(camera_set)


# --- broken model outputs: repaired and counted, or a named error; never a silent mAP of 0 -----------------
def _break(detector: Callable[[np.ndarray], Outputs], injected: dict[str, int]) -> Callable[[np.ndarray], Outputs]:
    """The detector's outputs with, on every tile, two NaN detections added after the real ones (a NaN box
    coordinate, a NaN score) and each box edge lying exactly on the tile's border pushed just past it."""

    def broken(batch: np.ndarray) -> Outputs:
        boxes, scores, classes, counts = (np.array(a) for a in detector(batch))
        for k in range(len(batch)):
            n = int(counts[k])
            on_edge = (boxes[k, :n] == 0.0) | (boxes[k, :n] == 1.0)
            boxes[k, :n][boxes[k, :n] == 0.0] = -0.02
            boxes[k, :n][boxes[k, :n] == 1.0] = 1.02
            boxes[k, n:n + 2] = [[np.nan, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3]]
            scores[k, n:n + 2], classes[k, n:n + 2] = [0.9, np.nan], [3, 3]
            counts[k] = n + 2
            injected["clipped"] += int(on_edge.any(axis=1).sum())
            injected["dropped_nonfinite"] += 2
        return boxes, scores, classes, counts

    return broken


def test_nan_and_edge_boxes_are_repaired_counted_and_the_rest_scored_exactly(camera_set: CameraSet) -> None:
    per_source = shifted_detections(camera_set, seed=2)
    detector = LookupDetector(camera_set, per_source)
    clean = run(camera_set, detector, batch_size=16).evaluate(camera_set)
    injected = {"clipped": 0, "dropped_nonfinite": 0}
    broken = run(camera_set, _break(detector, injected), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning of NaN reaching COCOeval
        report = broken.evaluate(camera_set)
    blank_tiles = 2 * 2  # the blank tile of each camera image: its detections are dropped, not repaired
    assert injected["clipped"] > 0
    assert report.repairs == {"clipped": injected["clipped"], "dropped_inverted": 0,
                              "dropped_nonfinite": injected["dropped_nonfinite"] - blank_tiles}
    assert report.ap == clean.ap > 0.05 and report.n_detections == clean.n_detections
    assert report.to_record()["repairs"] == report.repairs  # what RunRecord.accuracy saves, reports show


def test_inverted_boxes_are_dropped_and_counted(camera_set: CameraSet) -> None:
    acc = TiledDetections(model="m")
    boxes = np.array([[[0.1, 0.1, 0.2, 0.2], [0.5, 0.1, 0.3, 0.2]]])  # the second: ymax < ymin
    acc.add(0, 0, boxes, np.ones((1, 2)), np.full((1, 2), 3), np.array([2]))
    assert len(acc) == 1 and acc.evaluate(camera_set, camera_indices=[0]).repairs["dropped_inverted"] == 1


def test_nothing_left_to_score_is_an_error_naming_the_model_count_and_example(camera_set: CameraSet,
                                                                              tmp_path: Path) -> None:
    acc = TiledDetections(model="broken_ssd")
    acc.add(0, 0, np.full((2, 3, 4), np.nan), np.ones((2, 3)), np.full((2, 3), 3), np.array([3, 3]))
    # the worker saves its detections and the parent scores them: the model and the counts travel along
    again = TiledDetections.load(acc.save(tmp_path / "d.npz"))
    for detections in (acc, again):
        with pytest.raises(AccuracyError, match=r"^broken_ssd: none of its detections can be scored: "
                                                r"6 dropped nonfinite \(e.g. box \[nan, nan, nan, nan\]"):
            detections.evaluate(camera_set)


def test_pixel_coordinates_are_an_error_not_a_clipped_zero(camera_set: CameraSet) -> None:
    acc = TiledDetections(model="pixel_ssd")
    boxes = np.array([[[30.0, 30.0, 120.0, 120.0], [0.1, 0.1, 0.2, 0.2]]])
    with pytest.raises(AccuracyError, match=r"^pixel_ssd: 1 of 2 detection boxes lie outside \[0, 1\] by more "
                                            r"than 0.05 \(e.g. \[30.0, 30.0, 120.0, 120.0\]\).*pixel coordinates"):
        acc.add(0, 0, boxes, np.ones((1, 2)), np.full((1, 2), 3), np.array([2]))
    acc.add(0, 0, np.array([[[0.1, 0.1, 1 + BOX_TOLERANCE, 0.2]]]), np.ones((1, 1)), np.full((1, 1), 3), np.ones(1))
    assert acc.repairs.counts["clipped"] == 1


@pytest.mark.parametrize(
    ("which", "value", "words"),
    [
        ("boxes", np.full((1, 1, 4), "0.1"), "detection boxes have dtype <U3"),
        ("scores", np.ones((1, 1), complex), "detection scores have dtype complex128"),
        ("classes", np.array([[None]], dtype=object), "detection classes have dtype object"),
        ("counts", np.array([True]), "detection num_detections have dtype bool"),
        ("counts", np.array([0.5]), "num_detections must be whole numbers, got [0.5]"),
        ("counts", np.array([np.nan]), "num_detections must be whole numbers"),
        ("classes", np.array([[2.5]]), "detection classes must be whole category ids: 1 are not (e.g. 2.5)"),
    ],
)
def test_wrong_dtypes_are_named_errors(which: str, value: np.ndarray, words: str) -> None:
    out = {"boxes": np.array([[[0.1, 0.1, 0.2, 0.2]]]), "scores": np.ones((1, 1)), "classes": np.full((1, 1), 3),
           "counts": np.ones(1)}
    out[which] = value
    with pytest.raises(AccuracyError, match="^m: ") as err:
        TiledDetections(model="m").add(0, 0, out["boxes"], out["scores"], out["classes"], out["counts"])
    assert words in str(err.value)


def test_wrong_shapes_name_the_model() -> None:
    with pytest.raises(WorkloadError, match=r"^ssd_x: detections: boxes have shape \(2, 4\)"):
        TiledDetections(model="ssd_x").add(0, 0, np.zeros((2, 4)), np.zeros((2, 1)), np.ones((2, 1)), np.zeros(2))


def test_camera_results_with_nan_are_dropped_and_counted(camera_set: CameraSet) -> None:
    acc = run(camera_set, LookupDetector(camera_set, shifted_detections(camera_set, seed=3)), batch_size=64)
    results = acc.results()
    clean = evaluate_camera_results(results, camera_set)
    bad = [dict(results[0], score=float("nan")), dict(results[1], bbox=[10.0, 10.0, -5.0, 4.0])]
    report = evaluate_camera_results(results + bad, camera_set, model="m")
    assert report.ap == clean.ap and report.repairs == {"clipped": 0, "dropped_nonfinite": 1, "dropped_inverted": 1}
    with pytest.raises(AccuracyError, match="^m: none of its 1 detections can be scored: 1 dropped nonfinite"):
        evaluate_camera_results(bad[:1], camera_set, model="m")
