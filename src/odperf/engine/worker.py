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
import os
import sys
import time
import traceback
from typing import Any

from odperf.engine import portable
from odperf.engine.protocol import Channel, ChannelClosed
from odperf.engine.request import MeasureRequest


class LocalPlatform:
    """What a local worker starts and loads for the portable core (``engine.portable.Worker``): any
    backend's runtime, any detector the zoo loads, camera images decoded from the dataset on disk."""

    def grid(self, r: MeasureRequest) -> Any:
        return r.camera_grid

    def camera(self, r: MeasureRequest, grid: Any) -> Any:
        return open_camera_set(r, grid)

    def start_runtime(self, r: MeasureRequest) -> dict[str, Any]:
        from odperf.backends import get_backend

        self.backend = get_backend(r.backend)
        runtime = self.backend.start(r.device, r.memory_limit_mb)
        return {"backend": runtime.backend, "version": runtime.version, "devices": runtime.devices,
                "settings": runtime.settings, "memory_cap": runtime.memory_cap}

    def load(self, r: MeasureRequest) -> Any:
        from odperf.zoo.loaders import load_detector

        detector = load_detector(r.model, model_dir=r.model_dir, batch_policy=r.batch_policy)
        if detector.backend != r.backend:
            from odperf.errors import ModelError

            raise ModelError(f"{r.model}: a {detector.backend} model, but the worker started {r.backend}")
        return detector

    def deployed(self, worker: portable.Worker) -> None:
        self.detections = None
        if worker.request.keep_detections:
            from odperf.measure.accuracy import TiledDetections

            self.detections = TiledDetections(worker.grid, model=worker.request.model)

    def finish(self, worker: portable.Worker, msg: dict[str, Any]) -> dict[str, Any]:
        """Allocator figures and the detections for accuracy (the parent pairs each image's two clocks for
        the harness's own cost: no image is run again here)."""
        out: dict[str, Any] = {"event": "finished", "allocator": self.backend.allocator_stats()}
        if self.detections is not None and worker.timed:
            size = worker.request.batch_size
            for index, outputs in worker.kept:
                for k, d in enumerate(outputs):
                    self.detections.add(index, k * size, d.boxes, d.scores, d.classes, d.counts)
            worker.kept.clear()
            # Scored by the parent after this process is gone: COCOeval's memory is not the model's, and
            # must neither count in the peak nor hit an emulated device's memory cap. The file is the
            # parent's (a nameless one it passed down): nothing is left behind whoever is killed when.
            if worker.request.detections_path is None:
                raise RuntimeError("keep_detections needs the parent's detections_path (run through WorkerSession)")
            out["detections_path"] = str(self.detections.save(worker.request.detections_path))
            out["timed"] = sorted(set(worker.timed))
        return out


def Worker(request: MeasureRequest, channel: Channel, t_main: float) -> portable.Worker:  # noqa: N802
    """The portable core with the local platform: the one worker odperf has."""
    return portable.Worker(request, channel, t_main, LocalPlatform())


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


die_with_parent = portable.die_with_parent


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
