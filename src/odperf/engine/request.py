"""What to measure: one (model, device, batch size) run, as the parent asks the worker for it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from odperf.errors import WorkloadError


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
    backend: str = "tensorflow"  # the runtime the worker starts (odperf.backends)
    model_dir: str | None = None
    dataset_root: str | None = None  # COCO-format root; None -> the embedded synthetic dataset
    dataset_split: str = "val"  # "val" names the embedded dataset's validation split (val2017)
    seed: int = 0
    grid: tuple[int, int, int] = (9, 7, 300)  # rows, cols, tile
    warmup_images: int = 1  # untimed images before timing; 0 only for untimed (accuracy) runs
    memory_limit_mb: int | None = None
    emulate_profile: str | None = None
    timeout_s: float = 900.0
    start_timeout_s: float | None = None  # spawn, import, load and warm-up; None: timeout_s
    sample_period_ms: float = 10.0
    keep_detections: bool = False  # accuracy: the worker keeps detections of every timed image
    results_path: str | None = None  # with keep_detections: also write them as COCO results (JSON) here
    batch_policy: str = "tile_by_tile"
    bare_loop: bool = True  # finish() re-runs the images in a bare in-process loop (harness overhead)

    def __post_init__(self) -> None:
        self.grid = tuple(int(v) for v in self.grid)  # type: ignore[assignment]
        if len(self.grid) != 3:
            raise WorkloadError(f"grid must be (rows, cols, tile), got {self.grid!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise WorkloadError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.images, int) or self.images < 1:
            raise WorkloadError(f"images must be a positive integer (camera images to time), got {self.images!r}")
        if self.warmup_images < 0:
            raise WorkloadError(f"warmup_images must be >= 0, got {self.warmup_images}")
        kind, _, index = self.device.partition(":")
        if not (self.device == "cpu" or (kind == "gpu" and index.isdigit())):
            raise WorkloadError(f"device must be 'cpu' or 'gpu:N', got {self.device!r}")
        if self.timeout_s <= 0 or self.sample_period_ms <= 0 or (self.start_timeout_s is not None and self.start_timeout_s <= 0):
            raise WorkloadError("timeout_s, start_timeout_s and sample_period_ms must be positive")
        from odperf.backends import BACKENDS

        if self.backend not in BACKENDS:
            raise WorkloadError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.memory_limit_mb is not None and self.memory_limit_mb <= 0:
            raise WorkloadError(f"memory_limit_mb must be positive, got {self.memory_limit_mb}")

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("gpu")

    @property
    def gpu_index(self) -> int | None:
        return int(self.device.split(":")[1]) if self.is_gpu else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = list(self.grid)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MeasureRequest":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
