"""The worker core: everything that runs on the measured device, local or a board reached over SSH.

Self-contained on purpose: Python 3.6 or newer, numpy and the device's framework, nothing else of odperf
(a Jetson TX2's last JetPack has Python 3.6 and TensorFlow 1.15). The host sends this file's source to a
board and runs it there (``engine.remote``); the local worker (``engine.worker``) imports it and registers
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
import re
import select
import subprocess
import threading
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


# --- memory on the device ------------------------------------------------------------------------
MEMINFO = "/proc/meminfo"


def read_meminfo(path: str = MEMINFO) -> Dict[str, int]:
    """/proc/meminfo as bytes per field."""
    out = {}
    with open(path) as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[name.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def ram_used(info: Dict[str, int]) -> int:
    """RAM in use as tegrastats and jtop compute it: MemTotal - MemFree - Buffers - Cached."""
    return info["MemTotal"] - info["MemFree"] - info.get("Buffers", 0) - info.get("Cached", 0)


class Tegrastats:
    """NVIDIA's tegrastats beside the sampler, where the board has it: its RAM figure, a cross-check.
    It refreshes at its own ``--interval`` (100 ms here); the sampler reads its latest line."""

    PATTERN = re.compile(r"\bRAM (\d+)/(\d+)MB")

    def __init__(self, command: str, interval_ms: int = 100) -> None:
        self.value = None  # type: Optional[float]
        self.proc = subprocess.Popen([command, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, universal_newlines=True, preexec_fn=die_with_parent)
        threading.Thread(target=self._follow, name="odperf-tegrastats", daemon=True).start()
        deadline = time.monotonic() + 5.0
        while self.value is None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _follow(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            found = self.PATTERN.search(line)
            if found:
                self.value = float(int(found.group(1)) << 20)  # tegrastats' MB are MiB

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Jtop:
    """jetson-stats' jtop client beside the sampler, where the board's python has jetson-stats and its
    service answers: its RAM "used" figure (kB; MemTotal - MemFree - Buffers - Cached, as tegrastats), a
    cross-check. The service refreshes it every ``interval_s`` (or at the pace another client set); the
    sampler reads the latest. Raises ImportError where jetson-stats is not installed, and whatever the
    client raises (JtopException) where its service does not answer."""

    def __init__(self, folder: Optional[str] = None, interval_s: float = 0.5) -> None:
        import sys

        if folder:  # a stand-in's folder (tests), searched before the board's own packages
            sys.path.insert(0, folder)
        try:
            from jtop import jtop
        finally:
            if folder:
                sys.path.remove(folder)
        self.jetson = jtop(interval=interval_s)
        self.jetson.start()
        self.last = None  # type: Optional[float]

    @property
    def value(self) -> Optional[float]:
        """The latest figure in bytes; the last one read while the service does not answer."""
        try:
            self.last = float(self.jetson.memory["RAM"]["used"]) * 1024
        except Exception:  # noqa: BLE001  the service went away, or has not sent its first figures yet
            pass
        return self.last

    def stop(self) -> None:
        try:
            self.jetson.close()
        except Exception:  # noqa: BLE001  a service already gone has nothing to close
            pass


def start_jtop(folder: Optional[str]) -> Tuple[Optional[Jtop], Optional[str]]:
    """A started jtop client, else None and why: None where jetson-stats is not installed (most boards say
    nothing of it), the client's own words where it is and its service does not answer."""
    try:
        client = Jtop(folder)
    except ImportError:
        return None, None
    except Exception as exc:  # noqa: BLE001  JtopException and whatever its connection raises
        return None, "jtop: {}".format(" ".join(str(exc).split()) or type(exc).__name__)
    if client.value is None:
        client.stop()
        return None, "jtop: its service gave no memory figure"
    return client, None


class MeminfoSampler:
    """Samples /proc/meminfo every ``period_ms`` in a thread of the supervisor, the process beside the
    worker (the board's memory, the way Jetson users read it), with tegrastats' and jtop's figures where
    the board has them; ships raw samples home, where the host summarises them."""

    def __init__(self, period_ms: float, path: str = MEMINFO, tegrastats: Optional[str] = None,
                 jtop: Any = True) -> None:
        import shutil

        self.period_s = period_ms / 1000.0
        self.path = path
        first = read_meminfo(path)
        found = shutil.which(tegrastats) if tegrastats else None
        self.tegrastats = Tegrastats(found) if found else None
        if self.tegrastats is not None and self.tegrastats.value is None:
            self.tegrastats.stop()
            self.tegrastats = None
        self.jtop, self.jtop_said = start_jtop(jtop if isinstance(jtop, str) else None) if jtop else (None, None)
        self.names = (["board_ram"] + (["board_nvmap"] if "NvMapMemUsed" in first else [])
                      + (["board_tegrastats"] if self.tegrastats else []) + (["board_jtop"] if self.jtop else []))
        self.baselines = [float(v) for v in self._read(first)]
        self.times = []  # type: List[float]
        self.values = []  # type: List[List[float]]
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self.t1 = None  # type: Optional[float]
        self._thread = threading.Thread(target=self._loop, name="odperf-meminfo", daemon=True)
        self._thread.start()

    def _read(self, info: Dict[str, int]) -> List[float]:
        out = [float(ram_used(info))]
        if "board_nvmap" in self.names:
            out.append(float(info.get("NvMapMemUsed", 0)))
        if self.tegrastats is not None:
            out.append(float(self.tegrastats.value or 0.0))
        if self.jtop is not None:
            out.append(float(self.jtop.value or 0.0))
        return out

    def _loop(self) -> None:
        import resource

        usage = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
        c0 = resource.getrusage(usage)
        k = 0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.values.append([float(v) for v in self._read(read_meminfo(self.path))])
                self.times.append(now)
            except (OSError, KeyError, ValueError):
                pass
            k += 1
            deadline = self.t0 + k * self.period_s
            wait = deadline - time.monotonic()
            if wait < 0:  # fell behind: skip the missed deadlines rather than bunch samples up
                k += int(-wait / self.period_s) + 1
                wait = self.t0 + k * self.period_s - time.monotonic()
            self._stop.wait(max(wait, 0.0))
        c1 = resource.getrusage(usage)
        self.cpu_s = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)

    def stop(self) -> Dict[str, Any]:
        """Stop sampling; the raw samples, relative to the sampler's start, for the host."""
        if self.t1 is None:
            self._stop.set()
            self._thread.join(5.0)
            self.t1 = time.monotonic()
            if self.tegrastats is not None:
                self.tegrastats.stop()
            if self.jtop is not None:
                self.jtop.stop()
        n = min(len(self.times), len(self.values))
        return {"probes": self.names, "baselines": self.baselines, "path": self.path, "unanswered": self.jtop_said,
                "times": [round(t - self.t0, 5) for t in self.times[:n]], "values": self.values[:n],
                "t0": self.t0,  # on the board's monotonic clock, which the worker's messages share
                "duration_s": self.t1 - self.t0, "cpu_s": self.cpu_s, "period_ms": self.period_s * 1000.0}


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


# --- the board: TensorFlow frozen graphs, shipped tiles ------------------------------------------
class Request:
    """The host's request as attributes (the host validated it: ``engine.request.MeasureRequest``)."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self.__dict__.update(data)


class FrozenGraphDetector:
    """A TF1-convention frozen graph (``image_tensor:0`` in, ``detection_*`` out) run through
    ``tf.compat.v1.Session``: TensorFlow 1.15 and 2.x both load and run it the same way."""

    FETCH = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    format = "tf1_frozen_graph"
    untrained = False

    def __init__(self, graph_bytes: bytes) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        graph_def = v1.GraphDef()
        graph_def.ParseFromString(graph_bytes)
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.import_graph_def(graph_def, name="")
        self.session = v1.Session(graph=self.graph)
        self.image = self.graph.get_tensor_by_name("image_tensor:0")
        self.outputs = [self.graph.get_tensor_by_name(n + ":0") for n in self.FETCH]
        declared = self.image.shape.as_list()[0] if self.image.shape.ndims else None
        self.batch_mode = "tile_by_tile" if declared == 1 else "batched"

    def __call__(self, batch: np.ndarray) -> List[np.ndarray]:
        if self.batch_mode == "tile_by_tile" and len(batch) > 1:
            parts = [self(batch[i:i + 1]) for i in range(len(batch))]
            return [np.concatenate([p[k] for p in parts]) for k in range(4)]
        return self.session.run(self.outputs, feed_dict={self.image: batch})


class BoardPlatform:
    """What a board's worker starts and loads, from what the host sent with the start message (once per
    case): the tiles, and a TensorFlow frozen graph or an embedded PyTorch model (its metadata, its weights
    as arrays and the source of the core's PyTorch half, ``engine.portable_torch``: see ``zoo.board_model``)."""

    WEIGHT_PREFIX = "w."

    def __init__(self, payload: bytes) -> None:
        import io

        with np.load(io.BytesIO(payload)) as data:
            self.tiles, self.placements = data["tiles"], data["placements"]
            # bytes now, before a memory cap: the graph's copy is the host's payload, not the model's memory
            self.model = {k: (data[k].tobytes() if k in ("graph", "torch_meta", "torch_code") else data[k])
                          for k in data.files if k not in ("tiles", "placements")}
        self.backend = "torch" if "torch_meta" in self.model else "tensorflow"
        self.torch = None  # type: Any
        self.device = None  # type: Any

    def grid(self, r: Request) -> Grid:
        return Grid(*r.grid)

    def camera(self, r: Request, grid: Grid) -> ShippedCamera:
        return ShippedCamera(grid, self.tiles, self.placements)

    def start_runtime(self, r: Request) -> Dict[str, Any]:
        if self.backend == "torch":
            import types

            code = self.model.pop("torch_code")
            self.torch = types.ModuleType("odperf_portable_torch")
            exec(compile(code, "odperf_portable_torch.py", "exec"), self.torch.__dict__)
            self.device, runtime = self.torch.start_runtime()
        else:
            import tensorflow as tf

            runtime = {"backend": "tensorflow", "version": tf.__version__, "devices": _tf_devices(tf),
                       "settings": {"loader": "tf.compat.v1.Session"}}
        runtime["memory_cap"] = cap_data_segment(r.memory_limit_mb) if r.memory_limit_mb else None
        return runtime

    def load(self, r: Request) -> Any:
        model, self.model = self.model, {}
        if self.backend == "torch":
            meta = json.loads(model.pop("torch_meta").decode("utf-8"))
            n = len(self.WEIGHT_PREFIX)
            arrays = {k[n:]: v for k, v in model.items() if k.startswith(self.WEIGHT_PREFIX)}
            return self.torch.TorchDetector(meta, arrays, self.device)
        return FrozenGraphDetector(model["graph"])

    def deployed(self, worker: Worker) -> None:
        pass

    def finish(self, worker: Worker, msg: Dict[str, Any]) -> Dict[str, Any]:
        """Detections of the timed images as one npz payload; the board's memory samples."""
        import io

        arrays = {}  # type: Dict[str, np.ndarray]
        for n, (index, outputs) in enumerate(worker.kept):
            for k, out in enumerate(outputs):
                for name, value in zip(("boxes", "scores", "classes", "counts"), out):
                    arrays["{}_{}_{}_{}".format(n, index, k, name)] = np.asarray(value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        reply = {"event": "finished", "allocator": None, "timed": sorted(set(worker.timed))}
        if worker.request.keep_detections:
            reply["payload"] = buffer.getvalue()
        return reply


def _tf_devices(tf: Any) -> List[str]:
    try:
        return [d.name for d in tf.config.list_logical_devices()]
    except AttributeError:  # TensorFlow 1.15 names it experimental
        return [d.name for d in tf.config.experimental.list_logical_devices()]


def cap_data_segment(memory_limit_mb: float) -> Dict[str, Any]:
    """Emulate a smaller board: cap the data segment ``memory_limit_mb`` above the started runtime's
    (as ``odperf.backends.base.cap_host_memory`` does for a local worker)."""
    import resource

    with open("/proc/self/status") as fh:
        base = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmData:"))
    limit = base + int(memory_limit_mb * 1000000)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    return {"how": "rlimit_data_above_runtime", "runtime_mb": base / MB, "limit_mb": limit / MB}


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (an SSH session that drops)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def board_main() -> int:
    """Entry point on a board (run by ``engine.remote``'s bootstrap with the protocol on stdin/stdout and
    the sampler's settings as a JSON argument).

    A small supervisor forks the worker and samples the board's memory beside it: the samples survive a
    worker that dies (out of memory, killed) and go home in one ``board_memory`` message once it has
    ended; how it ended goes to stderr (SSH only carries an exit code). Each dies with its parent, so a
    dropped connection leaves nothing running on the board."""
    import signal
    import sys

    t_main = time.monotonic()
    die_with_parent()
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # the framework's prints go to stderr, never into the protocol
    supervisor = os.getpid()
    child = os.fork()
    if child:
        os.close(read_fd)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
        sampler = None
        if settings.get("meminfo"):
            sampler = MeminfoSampler(float(settings.get("period_ms", 10.0)), settings["meminfo"],
                                     settings.get("tegrastats"), settings.get("jtop", True))
        _, status = os.waitpid(child, 0)
        if sampler is not None:
            try:
                Channel(-1, write_fd).send({"event": "board_memory", "memory": sampler.stop()})
            except ChannelClosed:
                pass
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            sys.stderr.write("odperf-board: worker killed by signal {} ({})\n".format(signal.Signals(sig).name, sig))
            return 128 + sig
        return os.WEXITSTATUS(status)
    die_with_parent()
    if os.getppid() != supervisor:
        os._exit(0)
    os._exit(_board_worker(Channel(read_fd, write_fd), t_main))


def _board_worker(channel: Channel, t_main: float) -> int:
    import faulthandler
    import sys

    faulthandler.enable()
    try:
        start = channel.receive()
    except ChannelClosed:
        return 0
    channel.send({"event": "hello", "pid": os.getpid(), "t_main": t_main, "protocol": PROTOCOL,
                  "python": sys.version.split()[0], "numpy": np.__version__})
    try:
        Worker(Request(start["request"]), channel, t_main, BoardPlatform(start["payload"])).serve()
    except ChannelClosed:
        return 0
    except BaseException as exc:  # noqa: BLE001  report anything, then die: the process is disposable
        reply = failure(exc)
        try:
            channel.send(reply)
        except ChannelClosed:
            pass
        sys.stderr.write(reply["traceback"] + "\n")
        return 1
    return 0
