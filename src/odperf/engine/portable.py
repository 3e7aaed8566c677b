"""The worker core: what times images on the measured device, local or a board reached over SSH.

Self-contained on purpose: Python 3.6 or newer, numpy and the device's framework, nothing else of odperf
(a Jetson TX2's last JetPack has Python 3.6 and TensorFlow 1.15). The host sends this file's source to a
board with its board side (``engine.portable_board``: the memory sampler, the shipped model) and runs
them there (``engine.remote``); the local worker (``engine.worker``) imports it and registers
its richer loaders (every backend, the zoo, datasets on disk) and commands into the same table, so local
and remote figures come from the same timing code.

Timed region of an image, as the paper defines it: cut the camera image into tiles and run every batch of
its tiles until the detections are on the host (numpy). Building the camera image from its source tiles
happens before, when the image is prepared; the worker prepares the next image right after answering.
"""

import gc
import importlib
import json
import os
import select
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

PROTOCOL = 1
PREPARED_KEEP = 2  # camera images held ready (17 MB each at the paper's size)
MB = 1e6


# --- channel ---------------------------------------------------------------------------------------
class ChannelClosed(Exception):
    """The other end closed its pipe: the worker (or its SSH link) exited or was killed."""


class ChannelTimeout(Exception):
    """No complete message arrived before the deadline."""


class Channel:
    """One reading fd and one writing fd carrying one JSON object per line; a message may be followed by
    ``payload_bytes`` raw bytes (tiles, detections), handed back as ``message["payload"]``."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()

    def send(self, message: Dict[str, Any], payload: Optional[bytes] = None) -> None:
        if payload is not None:
            message = dict(message, payload_bytes=len(payload))
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        self.write_raw(data)
        if payload is not None:
            self.write_raw(payload)

    def write_raw(self, data: bytes) -> None:
        """Bytes as they are (the bootstrap's code before the protocol starts); ChannelClosed if the
        other end is gone."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.write_fd, view):]
        except OSError as exc:  # BrokenPipeError included
            raise ChannelClosed(str(exc)) from exc

    def pending(self) -> bool:
        """Whether a message (or part of one) is waiting to be read, without blocking."""
        return b"\n" in self._buffer or bool(select.select([self.read_fd], [], [], 0)[0])

    def receive(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The next message; ``ChannelTimeout`` after ``timeout`` seconds, ``ChannelClosed`` at EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line_end = self._buffer.find(b"\n")
            if line_end >= 0:
                message = json.loads(bytes(self._buffer[:line_end]).decode())
                size = int(message.get("payload_bytes", 0) or 0)
                if len(self._buffer) >= line_end + 1 + size:
                    if size:
                        message["payload"] = bytes(self._buffer[line_end + 1:line_end + 1 + size])
                    del self._buffer[:line_end + 1 + size]
                    return message
            self._fill(deadline, timeout)

    def _fill(self, deadline: Optional[float], timeout: Optional[float]) -> None:
        if deadline is not None:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("no message within {:g} s".format(timeout))
                ready, _, _ = select.select([self.read_fd], [], [], left)
                if ready:
                    break
        chunk = os.read(self.read_fd, 1 << 20)
        if not chunk:
            raise ChannelClosed("end of stream")
        self._buffer.extend(chunk)

    def close(self) -> None:
        """Close both ends, once: a second call (a session and its owner both cleaning up) must not close
        whatever file has since been given the same number."""
        fds, self.read_fd, self.write_fd = (self.read_fd, self.write_fd), -1, -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


# --- camera images and tiles ---------------------------------------------------------------------
class Grid:
    """A camera image's geometry (as ``odperf.workload.CameraGrid``): rows x cols tiles plus blanks."""

    def __init__(self, rows: int, cols: int, tile: int, blank_tiles: int = 1, channels: int = 3) -> None:
        self.rows, self.cols, self.tile = int(rows), int(cols), int(tile)
        self.blank_tiles, self.channels = int(blank_tiles), int(channels)
        self.image_tiles = self.rows * self.cols
        self.tiles_per_image = self.image_tiles + self.blank_tiles
        self.shape = (self.rows * self.tile, self.cols * self.tile, self.channels)


def build_image(grid: Any, rows: Any, tile_of: Callable[[int], np.ndarray]) -> np.ndarray:
    """A camera image from its placements: each (tile index, source) row puts ``tile_of(source)`` in place."""
    t = grid.tile
    out = np.empty(grid.shape, dtype=np.uint8)
    for tile_index, source in rows:
        row, col = divmod(int(tile_index), grid.cols)
        out[row * t:row * t + t, col * t:col * t + t] = tile_of(int(source))
    return out


class ShippedCamera:
    """Camera images built from source tiles the host sent (decoded and resized there, once per case)."""

    def __init__(self, grid: Grid, tiles: np.ndarray, placements: np.ndarray) -> None:
        self.grid = grid
        self.tiles = tiles  # (sources, tile, tile, 3) uint8
        self.placements = placements  # (images * image_tiles, 2): tile index, row of ``tiles``
        self.n_images = len(placements) // grid.image_tiles
        self.max_cached_tiles = len(tiles)

    def preload(self, indices: Any) -> None:
        """The tiles are decoded already: nothing to do."""

    def image(self, index: int) -> np.ndarray:
        if not 0 <= index < self.n_images:
            raise IndexError("camera image {} out of range 0..{}".format(index, self.n_images - 1))
        g = self.grid
        return build_image(g, self.placements[index * g.image_tiles:(index + 1) * g.image_tiles],
                           self.tiles.__getitem__)


def cut(grid: Any, image: np.ndarray) -> np.ndarray:
    """The image as a (rows, cols, tile, tile, channels) view: no pixels copied."""
    if image.shape != tuple(grid.shape) or image.dtype != np.uint8:
        raise ValueError("camera image is {} {}, the grid needs uint8 {}".format(image.dtype, image.shape, grid.shape))
    s0, s1, s2 = image.strides
    t = grid.tile
    return as_strided(image, shape=(grid.rows, grid.cols, t, t, grid.channels),
                      strides=(s0 * t, s1 * t, s0, s1, s2), writeable=False)


def fill(grid: Any, view: np.ndarray, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Copy tiles [start, stop) into ``out[:stop-start]`` (the model's input buffer); blanks are zeros."""
    n = stop - start
    if start == 0 and stop >= grid.image_tiles:  # one copy for the whole grid: the batch-64 case
        out[:grid.image_tiles].reshape(grid.rows, grid.cols, grid.tile, grid.tile, grid.channels)[...] = view
        out[grid.image_tiles:n] = 0
        return out[:n]
    for k, index in enumerate(range(start, stop)):
        if index >= grid.image_tiles:
            out[k] = 0
        else:
            row, col = divmod(index, grid.cols)
            out[k] = view[row, col]
    return out[:n]


def batches(grid: Any, image: np.ndarray, batch_size: int, buffer: np.ndarray) -> Any:
    """Contiguous uint8 batches of ``batch_size`` tiles in tile order, in one reused ``buffer``."""
    view = cut(grid, image)
    total = grid.tiles_per_image
    for start in range(0, total, batch_size):
        yield fill(grid, view, start, min(start + batch_size, total), buffer)


# --- the worker ----------------------------------------------------------------------------------
STEADY_WINDOW = 3  # warm-up images that must agree before a steady warm-up stops


def steady(times: List[float], tolerance: float) -> bool:
    """The last STEADY_WINDOW times agree: slowest minus fastest within ``tolerance`` of their median. A
    runtime still tuning, loading kernels or growing its caches shows as times that keep moving."""
    if len(times) < STEADY_WINDOW:
        return False
    last = sorted(times[-STEADY_WINDOW:])
    middle = last[len(last) // 2]
    return middle > 0 and (last[-1] - last[0]) <= tolerance * middle


class Worker:
    """One runtime, one model, one batch size; answers commands through ``handlers`` (name -> function of
    (worker, message) returning the reply). ``platform`` starts the runtime and loads the model and the
    camera images: ``BoardPlatform`` here, the local worker's own in ``engine.worker``."""

    def __init__(self, request: Any, channel: Channel, t_main: float, platform: Any) -> None:
        self.request = request
        self.channel = channel
        self.t_main = t_main
        self.platform = platform
        self.handlers = dict(HANDLERS)  # type: Dict[str, Callable[[Worker, Dict[str, Any]], Any]]
        self.prepared = {}  # type: Dict[int, np.ndarray]
        self.timed = []  # type: List[int]
        self.kept = []  # type: List[Tuple[int, List[Any]]]  # raw outputs of the timed images, for accuracy
        self.buffer = None  # one batch buffer for every image: no image pays for fresh pages
        self.detector = None  # type: Any
        self.device_s = None  # type: Optional[float]  # the last image's device time (the detector's own; None: CPU)

    def deploy(self) -> Dict[str, Any]:
        r = self.request
        t0 = time.monotonic()
        self.grid = self.platform.grid(r)
        self.camera_set = self.platform.camera(r, self.grid)
        self.camera_set.preload(range(min(r.images, self.camera_set.max_cached_tiles // self.grid.image_tiles)))
        t_dataset = time.monotonic()
        runtime = self.platform.start_runtime(r)
        t_imported = time.monotonic()
        self.channel.send({"event": "runtime", "t": t_imported})  # the parent reads the runtime's memory
        self.detector = self.platform.load(r)
        t_loaded = time.monotonic()
        warm = [self.time_image(k % r.images)[0] for k in range(r.warmup_images)]
        tolerance = getattr(r, "steady_warmup", None)
        if tolerance:  # on until the time per image has settled, or the bound
            while not steady(warm, tolerance) and len(warm) < r.max_warmup_images:
                warm.append(self.time_image(len(warm) % r.images)[0])
            runtime["settings"] = dict(runtime["settings"], warmup={
                "images": len(warm), "steady": steady(warm, tolerance), "within": tolerance,
                "window": STEADY_WINDOW, "at_most": r.max_warmup_images})
        t_ready = time.monotonic()
        ready = {"event": "ready", "t_main": self.t_main, "dataset_s": t_dataset - t0,
                 "import_s": t_imported - t_dataset, "load_s": t_loaded - t_imported,
                 "first_inference_s": warm[0] if warm else None, "warmup_s": t_ready - t_loaded,
                 "t_ready": t_ready, "batch_mode": self.detector.batch_mode, "model_format": self.detector.format,
                 "untrained": bool(getattr(self.detector, "untrained", False)),
                 "runtime": {k: runtime[k] for k in ("backend", "version", "devices", "settings")},
                 "memory_cap": runtime.get("memory_cap")}
        self.platform.deployed(self)
        return ready

    def prepare(self, index: int) -> np.ndarray:
        image = self.prepared.get(index)
        if image is None:
            image = self.camera_set.image(index)
            self.prepared[index] = image
            while len(self.prepared) > PREPARED_KEEP:
                self.prepared.pop(next(iter(self.prepared)))
        return image

    def time_image(self, index: int) -> Tuple[float, List[Any]]:
        """Seconds for one camera image: cut into tiles + every batch until detections are on the host."""
        seconds, outputs = self.time_pixels(self.prepare(index))
        self.prepared.pop(index, None)
        return seconds, outputs

    def time_pixels(self, image: np.ndarray) -> Tuple[float, List[Any]]:
        """The timed region over a camera image's pixels however they came (prepared here, or received from
        a broker by a pipeline instance)."""
        detector, batch_size, grid = self.detector, self.request.batch_size, self.grid
        if self.buffer is None:
            self.buffer = np.zeros((batch_size, grid.tile, grid.tile, grid.channels), dtype=np.uint8)
        outputs = []
        gc.disable()  # as timeit does: a collection of the protocol's garbage never lands in an image's time
        try:
            t0 = time.perf_counter()
            for batch in batches(grid, image, batch_size, self.buffer):
                outputs.append(detector(batch))
            seconds = time.perf_counter() - t0
        finally:
            gc.enable()
        take = getattr(detector, "take_device_seconds", None)  # CUDA events around the model calls, if any
        self.device_s = take() if take is not None else None
        return seconds, outputs

    def prefetch(self, index: int) -> None:
        if index < self.request.images:
            self.prepare(index)

    def serve(self) -> None:
        """Deploy, then answer commands until ``finish``/``quit`` or the parent goes away."""
        self.channel.send(self.deploy())
        self.prefetch(0)
        while True:
            try:
                msg = self.channel.receive()
            except ChannelClosed:
                return  # the parent went away: nothing left to answer
            cmd = msg.get("cmd")
            if cmd == "quit":
                return
            handler = self.handlers.get(cmd)
            if handler is None and msg.get("handler"):
                handler = self.handlers[cmd] = named_handler(msg["handler"])
            if handler is None:
                raise RuntimeError("unknown command {!r}".format(cmd))
            reply = handler(self, msg)
            if reply is not None:
                payload = reply.pop("payload", None) if isinstance(reply, dict) else None
                self.channel.send(reply, payload)
            if cmd == "finish":
                return


def named_handler(name: str) -> Callable[[Worker, Dict[str, Any]], Any]:
    """A command handler named by the caller as ``module:function`` (a layer above the engine), imported here."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def _prepare(worker: Worker, msg: Dict[str, Any]) -> Dict[str, Any]:
    worker.prepare(int(msg["index"]))
    return {"event": "prepared", "index": msg["index"]}


def _run(worker: Worker, msg: Dict[str, Any]) -> None:
    index = int(msg["index"])
    seconds, outputs = worker.time_image(index)
    worker.timed.append(index)
    worker.channel.send({"event": "ran", "index": index, "seconds": seconds, "device_seconds": worker.device_s})
    if worker.request.keep_detections:  # converted only in finish: work between rounds slows the next image
        worker.kept.append((index, outputs))
    del outputs
    worker.prefetch(index + 1)


def _finish(worker: Worker, msg: Dict[str, Any]) -> Dict[str, Any]:
    return worker.platform.finish(worker, msg)


def _ping(worker: Worker, msg: Dict[str, Any]) -> Dict[str, Any]:
    return {"event": "pong"}


HANDLERS = {"prepare": _prepare, "run": _run, "finish": _finish, "ping": _ping}


def failure(exc: BaseException) -> Dict[str, Any]:
    """The worker's exception for the parent, which classifies it (oom, crash, user error)."""
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    return {"event": "failed", "error_type": type(exc).__name__, "error_module": type(exc).__module__,
            "message": (str(exc) or type(exc).__name__)[-4000:],
            "chain": [[type(e).__name__, str(e)[-2000:]] for e in chain],
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]}


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (an SSH session that drops)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
