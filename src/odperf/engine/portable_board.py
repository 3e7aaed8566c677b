"""The board's side of the worker core: a supervisor beside the worker that samples the board's memory
(``/proc/meminfo``, NvMapMemUsed, tegrastats, jtop), and the platform a board's worker loads from what the
host sent (shipped tiles, a TensorFlow frozen graph or an embedded PyTorch model).

Self-contained like ``engine.portable``: Python 3.6 or newer, numpy and the board's framework. The host sends
both sources to the board (``engine.remote``'s bootstrap loads the core as ``odperf_portable`` first, then
this file, and calls ``board_main``); on the host, the core is odperf's own.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

if "odperf_portable" in sys.modules:  # on a board: the bootstrap loaded the core under this name
    import odperf_portable as portable  # type: ignore[import-not-found]  # noqa: I001
else:
    from odperf.engine import portable

# the core's names this side uses
Channel, ChannelClosed, Worker, failure = portable.Channel, portable.ChannelClosed, portable.Worker, portable.failure
Grid, ShippedCamera, MB, PROTOCOL = portable.Grid, portable.ShippedCamera, portable.MB, portable.PROTOCOL
die_with_parent = portable.die_with_parent


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


def board_main() -> int:
    """Entry point on a board (run by ``engine.remote``'s bootstrap with the protocol on stdin/stdout and
    the sampler's settings as a JSON argument).

    A small supervisor forks the worker and samples the board's memory beside it: the samples survive a
    worker that dies (out of memory, killed) and go home in one ``board_memory`` message once it has
    ended; how it ended goes to stderr (SSH only carries an exit code). Each dies with its parent, so a
    dropped connection leaves nothing running on the board."""
    import signal

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
