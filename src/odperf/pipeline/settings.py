"""What a pipeline pass runs: the detector, the deployment (instances), the cameras and lines, the faults.

Cameras come in lines of ``cameras_per_line`` (the paper's 5); a car passes each line every
``car_interval_s`` seconds and each of its cameras takes ``shots`` images of it (5 x 19 = 95), spread
evenly over the interval (``fixed``) or as a Poisson process of the same mean rate (``poisson``, as the
streaming pass's Server scenario), so one camera offers ``shots / car_interval_s`` images per second. An
image is due ``deadline_s`` after its capture; a car is due ``car_deadline_s`` after its first image
(default: the interval plus the image deadline, when the last image taken is due).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from odperf.errors import WorkloadError
from odperf.pipeline.codec import ENCODINGS

ARRIVALS = ("fixed", "poisson")


@dataclass
class PipelineSettings:
    """One pipeline pass. Instances share ``device``, or take ``devices`` in turn (instance i on
    ``devices[i % len(devices)]``); ``memory_limit_mb`` caps each (an emulated slice of its device)."""

    model: str = "centernet_tiny"
    batch_size: int = 64
    backend: str = "tensorflow"
    device: str = "cpu"
    model_dir: str | None = None
    dataset_root: str | None = None
    instances: int = 1
    devices: tuple[str, ...] = ()
    memory_limit_mb: int | None = None
    cameras: int = 5
    cameras_per_line: int = 5
    shots: int = 19
    cars: int = 1  # cars per line
    car_interval_s: float = 120.0
    arrivals: str = "poisson"
    deadline_s: float = 32.0  # per image, capture to detections back
    car_deadline_s: float | None = None
    percentile: float = 0.99
    images: int = 4  # distinct camera images the cameras cycle through (scored once each)
    encoding: str = "jpeg"
    seed: int = 0
    grid: tuple[int, int, int] = (9, 7, 300)
    claim_idle_s: float = 10.0  # an image held this long unacknowledged is taken over by another instance
    retry_s: float = 20.0  # how long a broker operation retries a broker that went away
    drain_s: float | None = None  # after the last capture, how long to wait for results (default: 3 deadlines + claim)
    start_timeout_s: float = 600.0
    kill_instance_at_s: float | None = None  # fault: SIGKILL instance 0 this long after the first capture
    restart_broker_at_s: float | None = None  # fault: kill -9 the local broker and start it again
    broker_down_s: float = 1.0

    def __post_init__(self) -> None:
        self.grid = tuple(int(v) for v in self.grid)  # type: ignore[assignment]
        self.devices = tuple(str(d) for d in self.devices)
        for name in ("batch_size", "instances", "cameras", "cameras_per_line", "shots", "cars", "images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkloadError(f"pipeline {name.replace('_', ' ')} must be a positive integer, got {value!r}")
        for name in ("car_interval_s", "deadline_s", "claim_idle_s", "retry_s", "start_timeout_s"):
            _positive(name, getattr(self, name))
        for name in ("car_deadline_s", "drain_s", "kill_instance_at_s", "restart_broker_at_s"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), allow_zero=name.endswith("_at_s"))
        if self.arrivals not in ARRIVALS:
            raise WorkloadError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {self.arrivals!r}")
        if self.encoding not in ENCODINGS:
            raise WorkloadError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        if not 0 < self.percentile < 1:
            raise WorkloadError(f"percentile must be within (0, 1), e.g. 0.99, got {self.percentile!r}")
        if self.kill_instance_at_s is not None and self.instances < 2:
            raise WorkloadError("a killed instance's images need another instance to take them over: give "
                                "--instances 2 or more with --kill-instance-at")

    def instance_device(self, instance: int) -> str:
        return self.devices[instance % len(self.devices)] if self.devices else self.device

    @property
    def lines(self) -> int:
        return math.ceil(self.cameras / self.cameras_per_line)

    def line_cameras(self, line: int) -> int:
        """Cameras of line ``line`` (the last line holds what is left over)."""
        return min(self.cameras_per_line, self.cameras - line * self.cameras_per_line)

    @property
    def camera_rate(self) -> float:
        """Images per second one camera offers."""
        return self.shots / self.car_interval_s

    @property
    def rate(self) -> float:
        """Images per second all cameras offer."""
        return self.cameras * self.camera_rate

    @property
    def published(self) -> int:
        """Images the run publishes."""
        return self.cameras * self.shots * self.cars

    @property
    def car_due_s(self) -> float:
        return self.car_deadline_s if self.car_deadline_s is not None else self.car_interval_s + self.deadline_s

    @property
    def drain_after_s(self) -> float:
        return self.drain_s if self.drain_s is not None else 3 * self.deadline_s + self.claim_idle_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = list(self.grid)
        data["devices"] = list(self.devices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _positive(name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise WorkloadError(f"pipeline {name} must be a positive number of seconds, got {value!r}")
