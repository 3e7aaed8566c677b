"""What to measure: one (model, device, batch size) run, as the parent asks the worker for it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from odperf.backends.names import DEFAULT
from odperf.errors import WorkloadError
from odperf.measure.scorers import DEFAULT_SCORER, check_scorer
from odperf.measure.devices import DeviceError, parse_device
from odperf.workload import CameraGrid

BATCH_POLICIES = ("tile_by_tile", "refuse")  # as odperf.zoo.loaders, which the parent need not import
MAX_WARMUP_IMAGES = 30  # a steady warm-up's bound by default: never endless on a runtime that never settles


@dataclass
class MeasureRequest:
    """A measurement of ``model`` at ``batch_size`` tiles per call on ``device`` over ``images`` camera images.

    ``timeout_s`` bounds each step separately (each image; finish; and start: spawn, import, load and
    warm-up, unless ``start_timeout_s`` gives start its own bound), so a long car does not need a long
    timeout to catch a hang. ``memory_limit_mb`` caps the worker's
    memory to emulate a smaller device (``emulate_profile`` names it, for the record).
    """

    model: str  # registry name or path to an exported detector
    batch_size: int
    images: int  # camera images timed (rounds)
    device: str = "cpu"  # "cpu" or "gpu:N"
    backend: str = DEFAULT  # the runtime the worker starts (odperf.backends)
    model_dir: str | None = None
    dataset_root: str | None = None  # COCO-format root; None -> the embedded synthetic dataset
    dataset_split: str = "val"  # "val" names the embedded dataset's validation split (val2017)
    seed: int = 0
    grid: tuple[int, int, int] = (9, 7, 300)  # rows, cols, tile
    warmup_images: int = 1  # untimed images before timing; 0 only for untimed (accuracy) runs
    # then, where given, warm up on until the last STEADY_WINDOW warm-up images agree within this fraction
    # (slowest - fastest over their median), at most max_warmup_images in all (engine.portable.steady)
    steady_warmup: float | None = None
    max_warmup_images: int = MAX_WARMUP_IMAGES
    memory_limit_mb: int | None = None
    emulate_profile: str | None = None
    timeout_s: float = 900.0
    start_timeout_s: float | None = None  # spawn, import, load and warm-up; None: timeout_s
    sample_period_ms: float = 10.0
    keep_detections: bool = False  # accuracy: the worker keeps detections of every timed image
    results_path: str | None = None  # with keep_detections: also write them as COCO results (JSON) here
    scorer: str = DEFAULT_SCORER  # with keep_detections: the COCOeval that scores them (odperf.measure.scorers)
    # with keep_detections: detections the same as the model's reference's on every image timed take the
    # reference's score over its images (a run that chose its images per case and timed a reference: the suite)
    against_reference: bool = False
    batch_policy: str = "tile_by_tile"
    # Set by WorkerSession, never by a caller: the file (the parent's, nameless) the worker saves detections to.
    detections_path: str | None = None

    def __post_init__(self) -> None:
        """Refuse a request no worker could carry out, as one WorkloadError naming the field and the fix,
        before any process starts (a bad seed used to surface as a crash of the model)."""
        try:
            self.grid = tuple(int(v) for v in self.grid)  # type: ignore[assignment]
        except (TypeError, ValueError):
            raise WorkloadError(f"grid must be (rows, cols, tile) of positive integers, got {self.grid!r}") from None
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise WorkloadError(f"grid must be (rows, cols, tile) of positive integers, got {self.grid!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise WorkloadError(f"model must name a registry model or a path to a detector, got {self.model!r}")
        _positive_int("batch size", self.batch_size)
        tiles = self.tiles_per_image
        if self.batch_size > tiles:
            raise WorkloadError(
                f"batch size {self.batch_size} is more than the {tiles} tiles of a camera image: a call never "
                f"holds tiles of two images; use a batch size of at most {tiles}"
            )
        _positive_int("images (camera images to time)", self.images)
        _whole("warmup_images", self.warmup_images, minimum=0)
        if self.steady_warmup is not None:
            if isinstance(self.steady_warmup, bool) or not isinstance(self.steady_warmup, (int, float)) \
                    or not 0 < self.steady_warmup < 1:
                raise WorkloadError(f"steady_warmup must be a fraction between 0 and 1 (0.05: within 5%), got "
                                    f"{self.steady_warmup!r}")
            _whole("max_warmup_images", self.max_warmup_images, minimum=max(self.warmup_images, 1),
                   fix="it bounds the warm-up, warmup_images included")
        _whole("seed", self.seed, minimum=0, fix="the camera images' seed is a non-negative integer, e.g. 0")
        try:
            self.device = str(parse_device(self.device))
        except DeviceError:
            raise WorkloadError(f"device must be 'cpu' or 'gpu:N', got {self.device!r}") from None
        _positive_number("timeout_s", self.timeout_s)
        _positive_number("sample_period_ms", self.sample_period_ms)
        if self.start_timeout_s is not None:
            _positive_number("start_timeout_s", self.start_timeout_s)
        if self.memory_limit_mb is not None:
            _positive_int("memory_limit_mb", self.memory_limit_mb)
        if self.emulate_profile is not None and self.memory_limit_mb is None:
            raise WorkloadError(f"emulate_profile {self.emulate_profile!r} names the emulated device for the "
                                "record; give its memory as memory_limit_mb (the run's targets decide it)")
        from odperf.backends import BACKENDS

        if self.backend not in BACKENDS:
            raise WorkloadError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.dataset_split, str) or not self.dataset_split or "/" in self.dataset_split:
            raise WorkloadError(f"dataset_split must be a split name such as 'val2017', got {self.dataset_split!r}")
        check_scorer(self.scorer)
        if self.batch_policy not in BATCH_POLICIES:
            raise WorkloadError(f"batch_policy must be one of {', '.join(BATCH_POLICIES)}, got {self.batch_policy!r}")

    @property
    def camera_grid(self) -> CameraGrid:
        """The camera image's geometry: ``grid`` is its (rows, cols, tile)."""
        rows, cols, tile = self.grid
        return CameraGrid(rows=rows, cols=cols, tile=tile)

    @property
    def tiles_per_image(self) -> int:
        """Tiles per camera image sent to the model, blanks included."""
        return self.camera_grid.tiles_per_image

    @property
    def is_gpu(self) -> bool:
        return parse_device(self.device).is_gpu

    @property
    def gpu_index(self) -> int | None:
        return parse_device(self.device).index if self.is_gpu else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = list(self.grid)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MeasureRequest":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _whole(name: str, value: object, minimum: int, fix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WorkloadError(f"{name} must be an integer >= {minimum}, got {value!r}" + (f"; {fix}" if fix else ""))


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkloadError(f"{name} must be a positive integer, got {value!r}")


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise WorkloadError(f"{name} must be a positive number, got {value!r}")
