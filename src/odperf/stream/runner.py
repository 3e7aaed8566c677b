"""The system under test, inside the worker: LoadGen issues camera images, the worker's model runs them.

LoadGen runs in the worker process, so no pipe round trip sits inside a latency. A sample is one camera
image of the run's camera set (its index picks the image); the query sample library holds
``budget.qsl_images`` images, built (read and decoded) when LoadGen loads them, never inside a latency.

Batching in a stream: the tiles of a query's images form one stream of tiles, cut into batches of the
case's batch size in order; an image is complete (and reported to LoadGen) when the batch holding its last
tile has run, its detections on the host. A batch size that divides an image's tiles (every paper batch
size divides 64) never mixes images; one that does not lets the tail of one image share a batch with the
head of the next in the same query (MultiStream's cameras, Offline's car). Queries are served one after
another in arrival order: a Server query that arrives while the model runs waits in the queue, which is
the latency LoadGen measures.

Prefetch (``StreamSettings.prefetch``): a thread cuts the next batch's tiles and copies them into a spare
buffer while the model runs the current batch (two buffers in turn), so host work overlaps the model's
run; without it the model's thread fills each batch itself. The record says which.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from odperf.stream.settings import StreamSettings
from odperf.stream.summary import read_summary

_STOP = object()


def query_batches(grid: Any, images: list[tuple[int, np.ndarray]], batch_size: int,
                  take: Callable[[], np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
    """(buffer, batch, sample ids completed by it) over the tiles of ``images`` ((sample id, camera image)
    pairs) in order. ``take()`` gives the buffer each batch is filled into; the batch is a view of it."""
    k, pending, buffer = 0, [], None
    for sample_id, image in images:
        tiled = grid.cut(image)
        start, n_tiles = 0, grid.tiles_per_image
        while start < n_tiles:
            if buffer is None:
                buffer = take()
            stop = min(n_tiles, start + batch_size - k)
            tiled.fill(start, stop, buffer[k: k + stop - start])
            k += stop - start
            start = stop
            if start == n_tiles:
                pending.append(sample_id)
            if k == batch_size:
                yield buffer, buffer, pending
                k, pending, buffer = 0, [], None
    if k and buffer is not None:
        yield buffer, buffer[:k], pending


class SystemUnderTest:
    """LoadGen's SUT and query sample library over one worker's detector and camera images."""

    def __init__(self, worker: Any, settings: StreamSettings) -> None:
        import mlperf_loadgen as lg

        self.lg = lg
        self.worker = worker
        self.settings = settings
        self.loaded: dict[int, np.ndarray] = {}
        self.queries: queue.Queue[Any] = queue.Queue()
        self.batches_run = 0
        self.model_s = 0.0  # time inside the model's calls, for the host/model split
        self.error: BaseException | None = None
        from odperf.workload import batch_buffer

        grid, size = worker.grid, worker.request.batch_size
        self.free: queue.Queue[np.ndarray] = queue.Queue()  # batch buffers not being filled or run
        for _ in range(2 if settings.prefetch else 1):
            self.free.put(batch_buffer(grid, size))

    # --- query sample library ---------------------------------------------------------------------
    def load(self, indices: list[int]) -> None:
        for i in indices:
            if i not in self.loaded:
                self.loaded[i] = self.worker.camera_set.image(i)

    def unload(self, indices: list[int]) -> None:
        for i in indices:
            self.loaded.pop(i, None)

    # --- system under test ------------------------------------------------------------------------
    def issue(self, samples: list[Any]) -> None:
        self.queries.put([(s.id, s.index) for s in samples])

    def flush(self) -> None:
        pass

    def serve(self) -> None:
        """The model's thread: queries in arrival order, each image reported as soon as it is done."""
        try:
            while True:
                query = self.queries.get()
                if query is _STOP:
                    return
                images = [(sid, self.loaded[index]) for sid, index in query]
                for buffer, batch, done in self._batches(images):
                    t0 = time.perf_counter()
                    self.worker.detector(batch)  # numpy out: the detections are on the host
                    self.model_s += time.perf_counter() - t0
                    self.batches_run += 1
                    self.free.put(buffer)
                    if done:
                        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(sid, 0, 0) for sid in done])
        except BaseException as exc:  # noqa: BLE001  carried to the worker's main thread, which reports it
            self.error = exc
            import os
            import signal
            import sys
            import traceback

            # LoadGen would wait forever for the missing samples: end the worker, its reason in the log.
            print("".join(traceback.format_exception(exc)), file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGABRT)

    def _batches(self, images: list[tuple[int, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
        grid, size = self.worker.grid, self.worker.request.batch_size
        if not self.settings.prefetch:
            yield from query_batches(grid, images, size, self.free.get)
            return
        # The filling thread takes a free buffer for each batch and the model's thread gives it back
        # after running it: with two buffers it fills one while the model reads the other, never ahead.
        ready: queue.Queue[Any] = queue.Queue()

        def fill() -> None:
            try:
                for item in query_batches(grid, images, size, self.free.get):
                    ready.put(item)
            except BaseException as exc:  # noqa: BLE001  re-raised in the model's thread below
                self.error = exc
            finally:
                ready.put(_STOP)

        thread = threading.Thread(target=fill, name="odperf-stream-prefetch", daemon=True)
        thread.start()
        while (item := ready.get()) is not _STOP:
            yield item
        thread.join()
        if self.error is not None:
            raise self.error


def stream_command(worker: Any, msg: dict[str, Any]) -> dict[str, Any]:
    """The worker's ``stream`` command (``engine.portable`` imports it by the name the session sends)."""
    return run_stream(worker, StreamSettings.from_dict(msg["settings"]), msg["log_dir"])


def run_stream(worker: Any, settings: StreamSettings, log_dir: str) -> dict[str, Any]:
    """Run one LoadGen test on ``worker``'s model; its logs go to ``log_dir``; returns the summary's record."""
    import mlperf_loadgen as lg

    Path(log_dir).mkdir(parents=True, exist_ok=True)
    sut = SystemUnderTest(worker, settings)
    count = worker.request.images
    handle_sut = lg.ConstructSUT(sut.issue, sut.flush)
    handle_qsl = lg.ConstructQSL(count, min(count, settings.budget.qsl_images), sut.load, sut.unload)
    model_thread = threading.Thread(target=sut.serve, name="odperf-stream-model", daemon=True)
    model_thread.start()
    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = output
    log.enable_trace = False
    t0 = time.monotonic()
    try:
        lg.StartTestWithLogSettings(handle_sut, handle_qsl, settings.loadgen(lg), log)
    finally:
        sut.queries.put(_STOP)
        model_thread.join()
        lg.DestroyQSL(handle_qsl)
        lg.DestroySUT(handle_sut)
    wall = time.monotonic() - t0
    if sut.error is not None:
        raise sut.error
    return {"event": "streamed", "summary": read_summary(log_dir).to_dict(), "wall_s": wall,
            "batches": sut.batches_run, "model_s": sut.model_s, "prefetch": settings.prefetch}
