"""The record odperf saves per benchmark in pytest-benchmark's ``extra_info``, and reading saved runs back.

A saved run is a pytest-benchmark JSON file. odperf adds two things to it:
- per benchmark, ``extra_info`` holds a flat ``RunRecord`` (``RunRecord.to_extra_info``);
- at top level, ``"odperf"`` holds ``{"schema": SCHEMA_VERSION, "profile": ..., "records": [...]}``
  with one RunRecord per measured (model, device, batch) including those that never reached timing
  (oom, crash, timeout, skipped), because pytest-benchmark saves nothing for a benchmark that did not run.

Reports read both and prefer the benchmark's own stats (``stats``) for times when they exist.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from odperf.errors import ResultsError

SCHEMA_VERSION = 1
OUTCOMES = ("ok", "oom", "crash", "timeout", "skipped")


@dataclass
class RunRecord:
    """What one measurement of (model, device profile, batch size) found. All values JSON-plain."""

    model: str
    device_profile: str
    batch_size: int
    outcome: str = "ok"
    meta_arch: str | None = None
    map_group: str | None = None
    backend: str | None = None  # the runtime that ran the model (odperf.backends); None in old files
    runtime_version: str | None = None
    runtime_settings: dict[str, Any] = field(default_factory=dict)  # precision, cudnn.benchmark, threads
    untrained: bool = False  # random weights: time and memory only, its mAP means nothing
    device_name: str | None = None
    emulated: dict[str, Any] | None = None  # {"profile": "p100", "memory_limit_mb": 12288, "how": "..."}
    tiles_per_image: int = 64
    images_timed: int = 0
    batch_mode: str = "batched"  # or "tile_by_tile" for a batch-1-only model run tile by tile
    # times, seconds
    time_per_image_s: dict[str, float] = field(default_factory=dict)  # mean, median, p95, min, max
    car_time_s: float | None = None  # mean time per image x images per car
    tiles_per_second: float | None = None
    deploy_s: dict[str, float] = field(default_factory=dict)  # import, load, first_inference, total
    harness_efficiency: float | None = None  # bare in-process loop time / harness-timed time
    protocol_overhead_s: float | None = None  # median per image of harness-timed minus worker-timed
    # memory, MB (10**6 bytes)
    peak_memory_mb: float | None = None
    memory_probe: str | None = None  # which probe gave peak_memory_mb
    allocator_peak_mb: float | None = None
    host_rss_peak_mb: float | None = None
    memory_mean_mb: float | None = None
    memory_samples: int | None = None
    sample_period_ms: dict[str, float] = field(default_factory=dict)  # requested, mean, p99
    memory_timeline: list[list[float]] = field(default_factory=list)  # [[t_s, mb], ...] downsampled
    sampler_cpu_fraction: float | None = None  # the sampling thread's own CPU time / wall time
    # accuracy
    map: float | None = None  # COCO AP@[.5:.95], 0..1
    accuracy: dict[str, Any] | None = None  # AP, AP50, AP75, APs, APm, APl, AR100, per_category
    # failures
    error: str | None = None  # message, tail of stderr, exit signal
    exit_signal: int | None = None
    exit_code: int | None = None
    odperf_schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ResultsError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    def to_extra_info(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_extra_info(cls, data: dict[str, Any]) -> "RunRecord":
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("model", "device_profile", "batch_size") if n not in data]
        if missing:
            raise ResultsError(f"not an odperf record: missing {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def key(self) -> tuple[str, str, int]:
        """One measurement per device profile, model and batch size (a run may cover cpu and gpu)."""
        return (self.device_profile, self.model, int(self.batch_size))


def _plain(value: Any) -> Any:
    """JSON-plain copy: numpy scalars and arrays become floats, ints and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


@dataclass
class SavedRun:
    """One pytest-benchmark JSON file read back: its machine, and a record per measurement."""

    path: Path
    profile: str
    machine_info: dict[str, Any]
    records: list[RunRecord]
    stats: dict[tuple[str, str, int], dict[str, Any]]  # pytest-benchmark stats by RunRecord.key
    datetime: str | None = None

    @property
    def label(self) -> str:
        return f"{self.profile}:{self.path.stem}"


def load_run(path: str | Path) -> SavedRun:
    """Read a saved run; a missing, empty, corrupt or foreign file raises ResultsError saying which."""
    p = Path(path)
    if not p.is_file():
        raise ResultsError(
            f"{p}: no such results file. pytest-benchmark writes none under xdist (-n): "
            f"rerun the timing suite with -p no:xdist and --benchmark-json={p}"
        )
    text = p.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ResultsError(f"{p}: the results file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); is the file truncated?") from exc
    if not isinstance(data, dict) or "benchmarks" not in data or "machine_info" not in data:
        raise ResultsError(f"{p}: not a pytest-benchmark results file (no 'benchmarks'/'machine_info')")
    extra = data.get("odperf")
    records: dict[tuple[str, str, int], RunRecord] = {}
    stats: dict[tuple[str, str, int], dict[str, Any]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "odperf_schema" not in info:
            continue
        rec = RunRecord.from_extra_info(info)
        records[rec.key] = rec
        stats[rec.key] = bench.get("stats") or {}
    if isinstance(extra, dict):
        for raw in extra.get("records", []):
            rec = RunRecord.from_extra_info(raw)
            records.setdefault(rec.key, rec)
    if not records:
        raise ResultsError(
            f"{p}: holds no odperf measurements (foreign or empty pytest-benchmark file); "
            f"produce one with `pytest benchmarks --benchmark-json={p}`"
        )
    profile = (extra or {}).get("profile") or data["machine_info"].get("odperf_profile") or next(
        iter(records.values())
    ).device_profile
    return SavedRun(
        path=p,
        profile=profile,
        machine_info=data["machine_info"],
        records=sorted(records.values(), key=lambda r: r.key),
        stats=stats,
        datetime=data.get("datetime"),
    )


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (a --benchmark-storage tree) into their JSON files, newest name last."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(p.rglob("*.json")))
        else:
            out.append(p)
    return out
