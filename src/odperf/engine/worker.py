"""The worker process: one fresh runtime, one model, one batch size; run as ``python -m odperf.engine.worker``.

It answers the parent over the two pipes named on its command line (``engine.protocol``) and leaves its
stdout/stderr to the runtime (``odperf.backends``: TensorFlow, PyTorch). Timed region of an image, as the paper defines it: cut the camera image into
tiles and run every batch of its tiles until the detections are on the host (the Detector returns numpy).
Building the camera image (reading and decoding its tiles) happens before, when the image is prepared;
the worker prepares the next image right after answering, so the parent's next request finds it ready.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import sys
import time
import traceback
from typing import Any

from odperf.engine.protocol import Channel, ChannelClosed
from odperf.engine.request import MeasureRequest

PREPARED_KEEP = 2  # camera images held ready (17 MB each at the paper's size)


class Worker:
    def __init__(self, request: MeasureRequest, channel: Channel, t_main: float) -> None:
        self.request = request
        self.channel = channel
        self.t_main = t_main
        self.prepared: dict[int, Any] = {}
        self.timed: list[int] = []
        self.detections = None
        self.kept: list[tuple[int, list[Any]]] = []  # raw outputs of the timed images, for accuracy
        self.buffer = None  # one batch buffer for every image: no image pays for fresh pages

    # --- deployment ---------------------------------------------------------------------------------
    def deploy(self) -> dict[str, Any]:
        r = self.request
        self.grid = r.camera_grid
        t0 = time.monotonic()
        self.camera_set = open_camera_set(r, self.grid)
        self.camera_set.preload(range(min(r.images, self.camera_set.max_cached_tiles // self.grid.image_tiles)))
        t_dataset = time.monotonic()

        from odperf.backends import get_backend

        self.backend = get_backend(r.backend)
        runtime = self.backend.start(r.device, r.memory_limit_mb)
        t_imported = time.monotonic()
        self.channel.send({"event": "runtime", "t": t_imported})  # the parent reads the runtime's memory

        from odperf.zoo.loaders import load_detector

        self.detector = load_detector(r.model, model_dir=r.model_dir, batch_policy=r.batch_policy)
        if self.detector.backend != r.backend:
            from odperf.errors import ModelError

            raise ModelError(f"{r.model}: a {self.detector.backend} model, but the worker started {r.backend}")
        t_loaded = time.monotonic()

        warm = []
        for k in range(r.warmup_images):
            warm.append(self.time_image(k % r.images)[0])
        t_ready = time.monotonic()
        if r.keep_detections:
            from odperf.measure.accuracy import TiledDetections

            self.detections = TiledDetections(self.grid, model=r.model)
        return {
            "event": "ready",
            "t_main": self.t_main,
            "dataset_s": t_dataset - t0,
            "import_s": t_imported - t_dataset,
            "load_s": t_loaded - t_imported,
            "first_inference_s": warm[0] if warm else None,
            "warmup_s": t_ready - t_loaded,
            "t_ready": t_ready,
            "batch_mode": self.detector.batch_mode,
            "model_format": self.detector.format,
            "untrained": self.detector.untrained,
            "runtime": {"backend": runtime.backend, "version": runtime.version, "devices": runtime.devices,
                        "settings": runtime.settings},
            "memory_cap": runtime.memory_cap,
        }

    # --- images -------------------------------------------------------------------------------------
    def prepare(self, index: int) -> Any:
        image = self.prepared.get(index)
        if image is None:
            image = self.camera_set.image(index)
            self.prepared[index] = image
            while len(self.prepared) > PREPARED_KEEP:
                self.prepared.pop(next(iter(self.prepared)))
        return image

    def time_image(self, index: int) -> tuple[float, list[Any]]:
        """Seconds for one camera image: cut into tiles + every batch until detections are on the host."""
        seconds, outputs = self.time_pixels(self.prepare(index))
        self.prepared.pop(index, None)
        return seconds, outputs

    def time_pixels(self, image: Any) -> tuple[float, list[Any]]:
        """The timed region over a camera image's pixels however they came (prepared here, or received
        from a broker by a pipeline instance: ``odperf.pipeline.instance``)."""
        detector, batch_size, cut = self.detector, self.request.batch_size, self.grid.cut
        if self.buffer is None:
            from odperf.workload import batch_buffer

            self.buffer = batch_buffer(self.grid, batch_size)
        outputs = []
        gc.disable()  # as timeit does: a collection of the protocol's garbage never lands in an image's time
        try:
            t0 = time.perf_counter()
            for batch in cut(image).batches(batch_size, buffer=self.buffer):
                outputs.append(detector(batch))
            seconds = time.perf_counter() - t0
        finally:
            gc.enable()
        return seconds, outputs

    def keep(self, index: int, outputs: list[Any]) -> None:
        """Hold one image's raw detections for accuracy. They are converted only in ``finish``: work
        between rounds (even after the answer) was measured to slow the next timed image."""
        if self.detections is not None:
            self.kept.append((index, outputs))

    def _accumulate(self) -> None:
        size = self.request.batch_size
        for index, outputs in self.kept:
            for k, d in enumerate(outputs):
                self.detections.add(index, k * size, d.boxes, d.scores, d.classes, d.counts)
        self.kept.clear()

    # --- commands -----------------------------------------------------------------------------------
    def serve(self) -> None:
        self.channel.send(self.deploy())
        self._prefetch(0)
        while True:
            try:
                msg = self.channel.receive()
            except ChannelClosed:
                return  # the parent went away: nothing left to answer
            cmd = msg.get("cmd")
            if cmd == "prepare":
                self.prepare(int(msg["index"]))
                self.channel.send({"event": "prepared", "index": msg["index"]})
            elif cmd == "run":
                index = int(msg["index"])
                seconds, outputs = self.time_image(index)
                self.timed.append(index)
                self.channel.send({"event": "ran", "index": index, "seconds": seconds})
                self.keep(index, outputs)
                del outputs
                self._prefetch(index + 1)
            elif cmd == "stream":  # a LoadGen run over this worker's model (odperf.stream.runner)
                from odperf.stream.runner import run_stream
                from odperf.stream.settings import StreamSettings

                self.channel.send(run_stream(self, StreamSettings.from_dict(msg["settings"]), msg["log_dir"]))
            elif cmd == "pipeline":  # a detector instance of a pipeline (odperf.pipeline.instance)
                from odperf.pipeline.instance import serve_instance

                self.channel.send(serve_instance(self, msg["config"]))
            elif cmd == "finish":
                self.channel.send(self.finish(bool(msg.get("bare", True))))
                return
            elif cmd == "quit":
                return
            else:
                raise RuntimeError(f"unknown command {cmd!r}")

    def _prefetch(self, index: int) -> None:
        if index < self.request.images:
            self.prepare(index)

    def finish(self, bare: bool) -> dict[str, Any]:
        """The bare in-process loop over the timed images (no protocol), then allocator figures, accuracy."""
        bare_times = [self.time_image(i)[0] for i in self.timed] if bare else []
        out: dict[str, Any] = {"event": "finished", "bare_times_s": bare_times,
                               "allocator": self.backend.allocator_stats()}
        if self.detections is not None and self.timed:
            self._accumulate()
            # Scored by the parent after this process is gone: COCOeval's memory is not the model's, and
            # must neither count in the peak nor hit an emulated device's memory cap. The file is the
            # parent's (a nameless one it passed down): nothing is left behind whoever is killed when.
            if self.request.detections_path is None:
                raise RuntimeError("keep_detections needs the parent's detections_path (run through WorkerSession)")
            out["detections_path"] = str(self.detections.save(self.request.detections_path))
            out["timed"] = sorted(set(self.timed))
        return out


def open_camera_set(request: MeasureRequest, grid: Any) -> Any:
    """The camera images to time: built from the request's dataset, or the embedded synthetic one."""
    from odperf.datasets.camera import build_camera_set
    from odperf.datasets.coco import CocoDataset
    from odperf.datasets.synthetic import VAL_SPLIT, ensure_embedded

    root = request.dataset_root or ensure_embedded(n_train=0)  # timing needs the validation split only
    split = VAL_SPLIT if request.dataset_split == "val" else request.dataset_split
    dataset = CocoDataset.from_root(root, split)
    return build_camera_set(dataset, request.images, grid=grid, seed=request.seed)


def _failure(exc: BaseException, capped: bool = False, backend: str | None = None) -> dict[str, Any]:
    from odperf.engine.outcomes import classify_error, reason_from_message
    from odperf.errors import OdperfError

    kind = type(exc).__name__
    message = str(exc) or kind
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    ooms = [e for e in chain if classify_error(type(e).__name__, str(e), capped, backend) == "oom"]
    if ooms:
        outcome = "oom"  # also when a loader wrapped the allocator's error in its own ModelError
    elif isinstance(exc, OdperfError):
        outcome = "error"  # the user's to fix (missing model, bad dataset): the parent re-raises it
    else:
        outcome = "crash"
    # The reason names the exception that decided the outcome: the allocator's own error, not its wrapper.
    cause = ooms[-1] if ooms else exc
    return {
        "event": "failed",
        "outcome": outcome,
        "error_type": kind,
        "error_module": type(exc).__module__,
        "message": message[-4000:],
        "reason": reason_from_message(type(cause).__name__, str(cause) or type(cause).__name__, capped, backend),
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def die_with_parent() -> None:
    """Linux: have the kernel kill this worker if the parent dies mid-run (it cannot read EOF while busy)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    t_main = time.monotonic()
    die_with_parent()
    # A fatal signal (segfault in a kernel, abort on std::bad_alloc) leaves its reason and the Python
    # stack in the log the parent reads: the failure record can then say why, not only which signal.
    faulthandler.enable()
    parser = argparse.ArgumentParser(prog="python -m odperf.engine.worker")
    parser.add_argument("--read-fd", type=int, required=True)
    parser.add_argument("--write-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 0  # the parent died before die_with_parent() could cover it: nobody is left to answer
    channel = Channel(args.read_fd, args.write_fd)
    try:
        start = channel.receive()
    except ChannelClosed:
        return 0
    channel.send({"event": "hello", "pid": os.getpid(), "t_main": t_main})
    try:
        Worker(MeasureRequest.from_dict(start["request"]), channel, t_main).serve()
    except ChannelClosed:
        return 0
    except BaseException as exc:  # noqa: BLE001  report anything, then die: the process is disposable
        failure = _failure(exc, capped=bool(start["request"].get("memory_limit_mb")),
                           backend=start["request"].get("backend"))
        try:
            channel.send(failure)
        except ChannelClosed:
            pass
        print(failure["traceback"], file=sys.stderr, flush=True)
        return 3 if failure["outcome"] == "oom" else 2 if failure["outcome"] == "error" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
