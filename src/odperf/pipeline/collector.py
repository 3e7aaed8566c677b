"""The collector: reads detections back from the results stream, joins them to their images, scores mAP.

Each result names its image (``seq``); the first result of an image counts, a later one (an instance
killed after publishing, before acknowledging) is counted as a duplicate and dropped. The detections of
the first result for each distinct camera image go to ``TiledDetections``, which scores them against that
image's ground truth as the timing pass does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from odperf.measure.accuracy import TiledDetections
from odperf.pipeline.broker import Broker, BrokerUnavailable
from odperf.pipeline.codec import unpack_detections
from odperf.workload import CameraGrid

COLLECTOR = "collector"
READ_COUNT = 32


@dataclass
class ResultRecord:
    """One image's detections as they came back, with the instance's stamps (wall clock, s)."""

    seq: int
    instance: str
    deliveries: int
    t_received: float
    t_decoded: float
    infer_s: float
    t_done: float
    t_collected: float
    error: str


class Collector:
    """A thread reading the results stream as the one consumer of its group, until ``stop``."""

    def __init__(self, broker: Broker, stream: str, group: str, grid: CameraGrid, batch_size: int,
                 model: str, camera_of: dict[int, int]) -> None:
        self.broker, self.stream, self.group = broker, stream, group
        self.batch_size = batch_size
        self.camera_of = camera_of  # seq -> distinct camera image index, for scoring
        self.results: dict[int, ResultRecord] = {}
        self.duplicates = 0
        self.broker_outages = 0
        self.detections = TiledDetections(grid, model=model)
        self.scored: set[int] = set()
        self.detection_errors: list[str] = []
        self.unreadable: list[str] = []  # results that could not be read (their images end as lost)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="odperf-collector")

    def start(self) -> "Collector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def count(self) -> int:
        return len(self.results)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for entry in self.broker.read(self.stream, self.group, COLLECTOR, READ_COUNT, 0.2):
                    try:
                        self._take(entry.fields, time.time())
                    except (KeyError, ValueError, UnicodeDecodeError) as exc:  # not a result: its image stays unaccounted
                        self.unreadable.append(f"entry {entry.id}: {type(exc).__name__}: {exc}")
                    self.broker.ack(self.stream, self.group, entry.id)
            except BrokerUnavailable:
                self.broker_outages += 1
                time.sleep(0.2)

    def _take(self, f: dict[str, bytes], t_collected: float) -> None:
        seq = int(f["seq"])
        if seq in self.results:
            self.duplicates += 1
            return
        record = ResultRecord(seq=seq, instance=f["instance"].decode(), deliveries=int(f["deliveries"]),
                              t_received=float(f["t_received"]), t_decoded=float(f["t_decoded"]),
                              infer_s=float(f["infer_s"]), t_done=float(f["t_done"]), t_collected=t_collected,
                              error=f.get("error", b"").decode())
        self.results[seq] = record
        camera = self.camera_of.get(seq)
        if record.error or camera is None or camera in self.scored:
            return
        try:
            for k, (boxes, scores, classes, counts) in enumerate(unpack_detections(f["payload"])):
                self.detections.add(camera, k * self.batch_size, boxes, scores, classes, counts)
            self.scored.add(camera)
        except Exception as exc:  # noqa: BLE001  detections that cannot be read cost the accuracy, not the run
            self.detection_errors.append(f"image {seq}: {type(exc).__name__}: {exc}")

    def score(self, camera_set: Any, scorer: str) -> dict[str, Any] | None:
        """COCO mAP over the distinct camera images that came back (None: none did)."""
        if not self.scored:
            return None
        return self.detections.evaluate(camera_set, camera_indices=sorted(self.scored), scorer=scorer).to_record()

    def records(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in sorted(self.results.values(), key=lambda r: r.seq)]
