"""The record odperf saves per measurement, and reading saved runs back without losing or mixing any.

A saved run is a pytest-benchmark JSON file. odperf adds two things to it:
- per benchmark, ``extra_info`` holds a flat ``RunRecord`` (``RunRecord.to_extra_info``);
- at top level, ``"odperf"`` holds ``{"schema": SCHEMA_VERSION, "profile": ..., "records": [...]}``
  with every RunRecord of the run, including those that never reached timing (oom, crash, timeout,
  skipped) and the untimed accuracy runs, because pytest-benchmark saves nothing for a benchmark that
  did not run.

A record is identified by what it measured: device profile, model, batch size and kind (``TIMING`` or
``ACCURACY``). The same record in a benchmark's ``extra_info`` and in the top-level block is one
measurement seen twice and is read once; two different records with one identity are an error, never a
silent pick. Files of an older schema are read through ``migrate_record``; a newer schema is refused.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from enum import Enum
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Iterable, Literal

from odperf.errors import ResultsError

SCHEMA_VERSION = 3  # 2: records carry their kind; 3: the GPU's state, device time and host share
class Outcome(str, Enum):
    """How a measurement ended: the one list the engine, the records, the checks and the gate use.

    A ``str`` enum: records keep (and JSON holds) the plain value, and ``outcome == "ok"`` holds either way.
    """

    OK = "ok"
    OOM = "oom"
    CRASH = "crash"
    TIMEOUT = "timeout"

    __str__ = str.__str__  # f-strings and messages show the value, not "Outcome.OK"
    __format__ = str.__format__


OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
FAILED_OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome if o is not Outcome.OK)

MAP_GROUPS: tuple[str, ...] = ("highest", "high", "medium", "low", "lowest")
"""The paper's groups of models by COCO mAP, most accurate first: a record's ``map_group``."""

RecordKind = Literal["timing", "accuracy", "stream", "pipeline"]
TIMING: Final = "timing"  # timed rounds of a batch size (benchmarks/test_inference.py)
ACCURACY: Final = "accuracy"  # an untimed pass that only scores mAP (benchmarks/test_accuracy.py)
STREAM: Final = "stream"  # a LoadGen scenario run over a stream of camera images (benchmarks/test_stream.py)
PIPELINE: Final = "pipeline"  # cameras -> broker -> detector instances -> collector (benchmarks/test_pipeline.py)
RECORD_KINDS: tuple[str, ...] = (TIMING, ACCURACY, STREAM, PIPELINE)

# In schema 1, the accuracy benchmark always ran at this batch size.
V1_ACCURACY_BATCH = 64

RecordKey = tuple[str, str, int, str]  # (device profile, model, batch size, kind)


@dataclass
class RunRecord:
    """What one measurement of (model, device profile, batch size, kind) found. All values JSON-plain."""

    model: str
    device_profile: str
    batch_size: int
    outcome: str = "ok"
    kind: str = TIMING  # one of RECORD_KINDS
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
    sampling: dict[str, Any] | None = None  # images chosen by the run: floor, ceiling, target and reached CI, why it stopped
    batch_mode: str = "batched"  # or "tile_by_tile" for a batch-1-only model run tile by tile
    # times, seconds
    time_per_image_s: dict[str, float] = field(default_factory=dict)  # mean, median, p95, min, max
    car_time_s: float | None = None  # mean time per image x images per car
    tiles_per_second: float | None = None
    deploy_s: dict[str, float] = field(default_factory=dict)  # import, load, first_inference, total
    protocol_overhead_s: float | None = None  # median per image of harness-timed minus worker-timed
    # GPU runs: the device's own time per image (CUDA events around the model calls: mean, median, min,
    # max; wall_mean: the worker-timed mean of the same images) and the host's share of the worker-timed
    # time; None where the device was not timed (CPU)
    device_time_per_image_s: dict[str, float] | None = None
    host_share: float | None = None
    # GPU runs: clocks, power, temperature (min/median/max), clock-event reasons seen (share of samples),
    # settings read once; over the timed images (odperf.measure.gpu_state.summarise)
    gpu_state: dict[str, Any] | None = None
    protocol_overhead_iqr_s: list[float] | None = None  # 25th and 75th percentiles of those pairs
    load: dict[str, Any] | None = None  # CPU cores the worker, harness and other processes used while timed
    # memory, MB (10**6 bytes)
    peak_memory_mb: float | None = None
    memory_probe: str | None = None  # which probe gave peak_memory_mb
    allocator_peak_mb: float | None = None  # the runtime allocator's peak in use (GPU runs)
    allocator_reserved_peak_mb: float | None = None  # ... and what it held from the driver (PyTorch's cache)
    host_rss_peak_mb: float | None = None
    runtime_memory_mb: float | None = None  # the headline probe's figure once the runtime was up, before the model
    model_memory_mb: float | None = None  # the model's own: peak_memory_mb - runtime_memory_mb (gated, reported)
    memory_mean_mb: float | None = None
    memory_samples: int | None = None
    sample_period_ms: dict[str, float] = field(default_factory=dict)  # requested, mean, p99
    memory_timeline: list[list[float]] = field(default_factory=list)  # [[t_s, mb], ...] downsampled
    sampler_cpu_fraction: float | None = None  # the sampling thread's own CPU time / wall time
    # accuracy
    map: float | None = None  # COCO AP@[.5:.95], 0..1
    accuracy: dict[str, Any] | None = None  # AP, AP50, ... ARl, per_category, scorer, repairs (measure.accuracy)
    # stream: scenario, LoadGen's summary, the line's verdict, peak and capacity (odperf.stream.record)
    stream: dict[str, Any] | None = None
    # pipeline: settings, the verdict, latency parts, cars, backlog, accounting, instances (odperf.pipeline.record)
    pipeline: dict[str, Any] | None = None
    # failures
    error: str | None = None  # message, tail of stderr, exit signal
    exit_signal: int | None = None
    exit_code: int | None = None
    odperf_schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ResultsError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.kind not in RECORD_KINDS:
            raise ResultsError(f"record kind must be one of {RECORD_KINDS}, got {self.kind!r}")

    def to_extra_info(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_extra_info(cls, data: dict[str, Any]) -> "RunRecord":
        """A record of the current schema (older ones go through ``migrate_record`` first)."""
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("model", "device_profile", "batch_size") if n not in data]
        if missing:
            raise ResultsError(f"not an odperf record: missing {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def key(self) -> RecordKey:
        """What was measured: a run may cover cpu and gpu, and time and score the same batch size; a stream
        record is one scenario's (kind ``stream:<scenario>``, ``+prefetch`` where the prefetch thread ran:
        streams with and without it are different measurements, to be shown side by side)."""
        kind = self.kind
        if self.kind == STREAM and self.stream:
            kind = f"{self.kind}:{self.stream.get('scenario')}" + ("+prefetch" if self.stream.get("prefetch") else "")
        return (self.device_profile, self.model, int(self.batch_size), kind)

    def describe(self) -> str:
        return describe_key(self.key)


def describe_key(key: RecordKey) -> str:
    profile, model, batch, kind = key
    return f"{kind} record of {model} batch {batch} on {profile}"


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


# --- schema versions ---------------------------------------------------------------------------------
def check_schema(version: Any, where: str) -> int:
    """The schema a file or record says it has, as an int this odperf can read (after migration)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ResultsError(f"{where}: unknown odperf schema {version!r} (this odperf reads schemas 1.."
                           f"{SCHEMA_VERSION}); the file is not odperf's or was edited by hand")
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{where}: written by a newer odperf (schema {version}; this one reads up to "
                           f"{SCHEMA_VERSION}); upgrade odperf to read it")
    return version


def _v1_to_v2(raw: dict[str, Any], has_stats: bool) -> dict[str, Any]:
    """Schema 1 had no kind. Its accuracy benchmark saved no pytest-benchmark stats, always ran at batch 64
    and always carries mAP; a timing record that ran ok always has stats. So: mAP, no stats, ok, batch 64
    -> accuracy; anything else -> timing."""
    accuracy = (not has_stats and raw.get("map") is not None and raw.get("outcome", "ok") == "ok"
                and raw.get("batch_size") == V1_ACCURACY_BATCH)
    return {**raw, "kind": ACCURACY if accuracy else TIMING, "odperf_schema": 2}


def _v2_to_v3(raw: dict[str, Any], has_stats: bool) -> dict[str, Any]:
    """Schema 2 recorded neither the GPU's state nor its device time: both unknown, not zero."""
    return {**raw, "device_time_per_image_s": None, "host_share": None, "gpu_state": None, "odperf_schema": 3}


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3}  # from version N to N + 1


def migrate_record(raw: dict[str, Any], version: int, *, has_stats: bool) -> dict[str, Any]:
    """A raw record of schema ``version`` brought to SCHEMA_VERSION, one step at a time. ``has_stats``:
    the record is (or equals) a benchmark's extra_info with pytest-benchmark stats."""
    out = dict(raw)
    for step in range(version, SCHEMA_VERSION):
        out = MIGRATIONS[step](out, has_stats)
    return out


# --- reading a file ----------------------------------------------------------------------------------
@dataclass
class SavedRun:
    """One pytest-benchmark JSON file read back: its machine, and a record per measurement."""

    path: Path
    profile: str
    machine_info: dict[str, Any]
    records: list[RunRecord]
    stats: dict[RecordKey, dict[str, Any]]  # pytest-benchmark stats by RunRecord.key
    datetime: str | None = None
    schema: int = SCHEMA_VERSION  # the schema the file was written with (older ones read migrated)
    fingerprint: str = ""  # equal for the --benchmark-json file and the saved copy of one run
    has_raw_data: bool = False  # stats hold every round's time (--benchmark-json, --benchmark-save-data)
    also_saved_as: list[Path] = field(default_factory=list)  # other files holding this same run
    time_breakdown: dict[str, Any] | None = None  # where the run's wall time went (odperf.measure.breakdown)

    @property
    def label(self) -> str:
        return f"{self.profile}:{self.path.stem}"


class ForeignResults(ResultsError):
    """Valid JSON that is not an odperf run: a folder of saved runs may hold other suites' files."""


GLOB_CHARS = "*?["


def missing_file_error(p: Path) -> ResultsError:
    """Why ``p`` cannot be read, saying what is really wrong. pytest-benchmark writes no file at all under
    xdist: name that cause only where it can be one (a .json in an existing folder, nothing like it there)."""
    if any(c in str(p) for c in GLOB_CHARS):
        return ResultsError(f"{p}: the pattern matched no file; check it (quote it so that odperf expands it)")
    if p.is_dir():
        return ResultsError(f"{p}: is a folder, not a results file; name a JSON file in it "
                            f"(`odperf report` and `odperf compare` also read folders)")
    folder = p.parent
    if not folder.is_dir():
        return ResultsError(f"{p}: no such results file: the folder {folder} does not exist; check the path")
    others = {f.stem: f for f in folder.iterdir() if f.suffix == ".json"}
    near = difflib.get_close_matches(p.stem, list(others), n=1, cutoff=0.75)
    if near:
        return ResultsError(f"{p}: no such results file; did you mean {others[near[0]]}?")
    if p.suffix != ".json":
        return ResultsError(f"{p}: no such results file; check the path")
    return ResultsError(
        f"{p}: no such results file. If it was a --benchmark-json target, pytest never wrote it: "
        f"pytest-benchmark writes nothing under xdist (-n) or when no benchmark ran; rerun the timing "
        f"suite with -p no:xdist and --benchmark-json={p}"
    )


def load_run(path: str | Path) -> SavedRun:
    """Read a saved run; a missing, empty, corrupt, foreign, newer or self-contradicting file raises
    ResultsError saying which and why."""
    p = Path(path)
    if not p.is_file():
        raise missing_file_error(p)
    text = p.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise ResultsError(f"{p}: the results file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); is the file truncated?") from exc
    if not isinstance(data, dict) or "benchmarks" not in data or "machine_info" not in data:
        raise ForeignResults(f"{p}: not a pytest-benchmark results file (no 'benchmarks'/'machine_info')")
    block = data.get("odperf") if isinstance(data.get("odperf"), dict) else {}
    schema = check_schema(block["schema"], str(p)) if "schema" in block else None
    records, stats, raw_data, versions = _read_records(p, data, block, schema)
    if not records:
        raise ForeignResults(
            f"{p}: holds no odperf measurements (foreign or empty pytest-benchmark file); "
            f"produce one with `pytest benchmarks --benchmark-json={p}`"
        )
    profile = block.get("profile") or data["machine_info"].get("odperf_profile") or next(
        iter(records.values())
    ).device_profile
    return SavedRun(
        path=p,
        profile=profile,
        machine_info=data["machine_info"],
        records=sorted(records.values(), key=lambda r: r.key),
        stats=stats,
        datetime=data.get("datetime"),
        schema=schema or min(versions, default=SCHEMA_VERSION),
        fingerprint=_fingerprint(data),
        has_raw_data=raw_data,
        time_breakdown=block.get("time_breakdown") or None,
    )


def _read_records(
    p: Path, data: dict[str, Any], block: dict[str, Any], schema: int | None
) -> tuple[dict[RecordKey, RunRecord], dict[RecordKey, dict[str, Any]], bool, set[int]]:
    """Records by identity, from the benchmarks' extra_info and the top-level block, each read once;
    also whether stats hold raw rounds, and the schemas the records were written with."""
    versions: set[int] = set()
    records: dict[RecordKey, RunRecord] = {}
    stats: dict[RecordKey, dict[str, Any]] = {}
    where: dict[RecordKey, str] = {}
    from_bench: list[dict[str, Any]] = []
    raw_data = False

    def version(raw: dict[str, Any], place: str) -> int:
        v = raw.get("odperf_schema", schema)
        if v is None:
            raise ResultsError(f"{p}: {place} has no odperf schema; the file is not odperf's or was edited")
        versions.add(check_schema(v, f"{p}: {place}"))
        return int(v)

    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "odperf_schema" not in info:
            continue
        place = f"benchmark {bench.get('name', '?')!r}"
        rec = _record(p, migrate_record(info, version(info, place), has_stats=True), place)
        if rec.key in records:
            raise _duplicate(p, rec.key, where[rec.key], place)
        records[rec.key], where[rec.key] = rec, place
        stats[rec.key] = bench.get("stats") or {}
        raw_data = raw_data or bool(stats[rec.key].get("data"))
        from_bench.append(_fields_of(info))

    seen_in_block: dict[RecordKey, str] = {}
    for n, raw in enumerate(block.get("records", [])):
        if not isinstance(raw, dict):
            raise ResultsError(f"{p}: record #{n + 1} of the odperf block is not an object")
        place = f"record #{n + 1} of the odperf block"
        rec = _record(p, migrate_record(raw, version(raw, place), has_stats=_fields_of(raw) in from_bench), place)
        if rec.key in seen_in_block:
            raise _duplicate(p, rec.key, seen_in_block[rec.key], place)
        seen_in_block[rec.key] = place
        if rec.key in records:
            if rec != records[rec.key]:  # the one intended merge is the same record in both places
                raise _duplicate(p, rec.key, where[rec.key], place)
            continue
        records[rec.key], where[rec.key] = rec, place
    return records, stats, raw_data, versions


def _record(p: Path, raw: dict[str, Any], place: str) -> RunRecord:
    try:
        return RunRecord.from_extra_info(raw)
    except (ResultsError, TypeError, ValueError) as exc:
        raise ResultsError(f"{p}: {place}: {exc}") from exc


def _fields_of(raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(RunRecord)}
    return {k: v for k, v in raw.items() if k in names}


def _duplicate(p: Path, key: RecordKey, first: str, second: str) -> ResultsError:
    return ResultsError(
        f"{p}: two different records of one measurement ({describe_key(key)}): {first} and {second}; "
        f"a run holds one record per measurement: was the file merged from two runs or edited? "
        f"Keep one of them, or save the runs as separate files"
    )


def _fingerprint(data: dict[str, Any]) -> str:
    """What pytest-benchmark writes identically into --benchmark-json and --benchmark-save for one run:
    not ``datetime`` (taken at each write) nor the rounds' raw ``data`` (only in some copies)."""
    benches = [{**b, "stats": {k: v for k, v in (b.get("stats") or {}).items() if k != "data"}}
               for b in data.get("benchmarks", []) if isinstance(b, dict)]
    text = json.dumps([data.get("machine_info"), data.get("commit_info"), benches, data.get("odperf")],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (a --benchmark-storage tree) into their JSON files, newest name last. Reports read
    through ``odperf.report.sources.load_runs``, which also expands patterns and reads each run once."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        out.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    return out
