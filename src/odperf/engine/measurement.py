"""What one worker run found: deployment, per-image times, memory, accuracy, outcome.

Two clocks time the same images, kept apart on purpose:
- ``worker_times_s``: the worker's own clock around each image's timed region (the paper's definition);
- ``parent_times_s``: the caller's clock around each ``run_image`` round trip (what a harness sees).
Their difference, image by image, is the harness's own cost (``protocol_overhead_s`` and its spread):
paired at the same moment, it needs no second run of the images (a bare loop run later, as before,
doubled each case's inference and drifted with the machine's load: 0.76-2.40 over one run's cases).
On a GPU, ``device_times_s`` holds the device's own time of each timed image's model calls (CUDA events,
reported by the backend's detector); its share of the worker-timed time is the device's, the rest the host's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odperf.engine.request import MeasureRequest
from odperf.measure.memory import MemoryStats
from odperf.results import RunRecord
from odperf.workload import IMAGES_PER_CAR


@dataclass
class Deployment:
    """Seconds from spawning the worker to a warmed-up model, step by step (never part of inference)."""

    spawn_s: float  # fork/exec and Python start, until the worker's first line runs
    import_s: float  # import the runtime (TensorFlow, PyTorch) and set up its devices
    load_s: float  # load the model (and the loader's own checks)
    first_inference_s: float | None  # the first camera image (warm-up), graph tracing included
    warmup_s: float  # all warm-up images, their preparation (reading the tiles) included
    total_s: float  # spawn to ready
    pid: int
    batch_mode: str
    model_format: str | None = None
    backend: str | None = None
    runtime_version: str | None = None
    runtime_devices: list[str] = field(default_factory=list)
    runtime_settings: dict[str, Any] = field(default_factory=dict)  # precision, cudnn.benchmark, threads
    untrained: bool = False
    dataset_s: float = 0.0  # opening the dataset and laying out camera images (not deployment: excluded)

    def to_deploy_s(self) -> dict[str, float]:
        out = {"spawn": self.spawn_s, "import": self.import_s, "load": self.load_s,
               "warmup": self.warmup_s, "total": self.total_s}
        if self.first_inference_s is not None:
            out["first_inference"] = self.first_inference_s
        return out


@dataclass
class Measurement:
    """Everything one (model, device, batch size) worker run produced, whatever its outcome."""

    request: MeasureRequest
    outcome: str = "ok"  # ok | oom | crash | timeout
    error: str | None = None  # first line: why (outcome: exception: message); then the worker's log, labelled
    exit_code: int | None = None
    exit_signal: int | None = None
    stderr_tail: str | None = None
    deploy: Deployment | None = None
    worker_times_s: list[float] = field(default_factory=list)
    parent_times_s: list[float] = field(default_factory=list)
    device_times_s: list[float] = field(default_factory=list)  # per timed image, where the backend times its device
    memory: MemoryStats | None = None
    allocator: dict[str, float] | None = None  # the runtime allocator's current/peak MB (GPU only)
    device_info: dict[str, Any] = field(default_factory=dict)
    emulated: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # odperf.measure.accuracy AccuracyReport.to_record()
    accuracy_error: str | None = None  # why detections could not be scored; times and memory still stand
    image_source: str | None = None
    load: dict[str, Any] | None = None  # the machine's CPU use around the timed images (odperf.measure.load)
    costs: dict[str, float] = field(default_factory=dict)  # parent-side seconds per step (start, prepare, ...)

    # --- figures ----------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def batch_mode(self) -> str | None:
        return self.deploy.batch_mode if self.deploy else None

    @property
    def mean_time_s(self) -> float | None:
        """Mean worker-timed seconds per camera image (the paper's figure)."""
        return float(np.mean(self.worker_times_s)) if self.worker_times_s else None

    @property
    def protocol_overhead_s(self) -> float | None:
        """Median of (parent-timed - worker-timed) per image: the harness's own cost, measured image by
        image at the same moment, so unlike the bare-loop ratio it does not drift with machine load."""
        pairs = self._overheads()
        return float(np.median(pairs)) if pairs else None

    def device_split(self) -> tuple[dict[str, float], float] | None:
        """(device seconds per image: mean, median, min, max, and the worker-timed mean of the same images;
        the host's share of the worker-timed time),
        or None where the device was not timed (CPU runs: nothing, not zero)."""
        if not self.device_times_s or len(self.device_times_s) != len(self.worker_times_s):
            return None
        dev = np.asarray(self.device_times_s, dtype=np.float64)
        wall = float(np.sum(self.worker_times_s))
        spread = {"mean": float(dev.mean()), "median": float(np.median(dev)), "min": float(dev.min()),
                  "max": float(dev.max()), "wall_mean": wall / len(dev)}  # wall: worker-timed, same images
        return spread, (max(1.0 - float(dev.sum()) / wall, 0.0) if wall > 0 else 0.0)

    @property
    def protocol_overhead_iqr_s(self) -> list[float] | None:
        """The spread of those pairs: their 25th and 75th percentiles, so no figure claims more than they hold."""
        pairs = self._overheads()
        return [float(np.percentile(pairs, 25)), float(np.percentile(pairs, 75))] if pairs else None

    def _overheads(self) -> list[float]:
        return [p - w for p, w in zip(self.parent_times_s, self.worker_times_s)]

    # --- the record ---------------------------------------------------------------------------------
    def to_record(
        self,
        *,
        model: str | None = None,
        device_profile: str | None = None,
        harness_times_s: list[float] | None = None,
        images_per_car: int = IMAGES_PER_CAR,
        **fields_: Any,
    ) -> RunRecord:
        """The results record. Times come from ``harness_times_s`` (e.g. pytest-benchmark's data) when
        given, else the parent-timed times, else the worker's."""
        times = harness_times_s or self.parent_times_s or self.worker_times_s
        tiles = self.request.tiles_per_image
        record = RunRecord(
            model=model or self.request.model,
            device_profile=device_profile or self.device_info.get("profile") or self.request.device,
            batch_size=self.request.batch_size,
            outcome=self.outcome,
            emulated=self.emulated,
            tiles_per_image=tiles,
            images_timed=len(times),
            batch_mode=self.batch_mode or "batched",
            backend=self.request.backend,
            device_name=self.device_info.get("name"),
            error=self.error,
            exit_code=self.exit_code,
            exit_signal=self.exit_signal,
        )
        if times:
            arr = np.asarray(times, dtype=np.float64)
            mean = float(arr.mean())
            record.time_per_image_s = {
                "mean": mean, "median": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
                "min": float(arr.min()), "max": float(arr.max()),
            }
            record.car_time_s = mean * images_per_car
            record.tiles_per_second = tiles / mean if mean > 0 else None
        record.protocol_overhead_s = self.protocol_overhead_s
        record.protocol_overhead_iqr_s = self.protocol_overhead_iqr_s
        record.load = self.load
        if self.deploy:
            record.deploy_s = self.deploy.to_deploy_s()
            record.backend = self.deploy.backend
            record.runtime_version = self.deploy.runtime_version
            record.runtime_settings = dict(self.deploy.runtime_settings)
            record.untrained = self.deploy.untrained
        mem = self.memory
        if mem is not None:
            record.peak_memory_mb = mem.peak_mb
            record.memory_probe = mem.probe
            record.host_rss_peak_mb = mem.peak_of("host_rss")
            record.runtime_memory_mb = mem.runtime_mb
            if mem.runtime_mb is not None and mem.peak_mb is not None:
                record.model_memory_mb = max(mem.peak_mb - mem.runtime_mb, 0.0)
            record.memory_mean_mb = mem.mean_mb
            record.memory_samples = mem.samples
            record.sample_period_ms = {
                k: v for k, v in (("requested", mem.requested_period_ms), ("mean", mem.period_mean_ms),
                                  ("p99", mem.period_p99_ms)) if v is not None
            }
            record.memory_timeline = mem.timeline
            record.sampler_cpu_fraction = mem.sampler_cpu_fraction
            record.gpu_state = mem.gpu_state
        split = self.device_split()
        if split is not None:
            record.device_time_per_image_s, record.host_share = split
        if self.allocator:
            record.allocator_peak_mb = self.allocator.get("peak_mb")
            record.allocator_reserved_peak_mb = self.allocator.get("reserved_peak_mb")
            if record.peak_memory_mb is None:
                record.peak_memory_mb = record.allocator_peak_mb
                record.memory_probe = f"{self.deploy.backend if self.deploy else 'runtime'}_allocator"
        if self.accuracy:
            record.accuracy = self.accuracy
            record.map = self.accuracy.get("AP")
        for key, value in fields_.items():
            if not hasattr(record, key):
                raise TypeError(f"RunRecord has no field {key!r}")
            setattr(record, key, value)
        return record
