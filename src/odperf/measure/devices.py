"""The hardware a run measures on, as named profiles (``fixtures/devices.toml``), and memory emulation.

A profile's ``name`` is what results are filed under and compared by (``v100_sxm2``, ``cpu``), so it must
be stable across driver versions and name spellings: it comes from the table's matching rules, never from
the raw device name. Emulation runs a smaller device's memory budget on a bigger one (``p100`` on an
H100, or a memory cap on the CPU) and is always recorded beside the results it produced.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import psutil

from odperf.errors import OdperfError
from odperf.package_data import fixtures_dir
from odperf.measure.probes import MB, import_nvml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GIB = 1024**3
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def default_table_path() -> Path:
    """The shipped ``devices.toml`` (``ODPERF_FIXTURES`` names another fixtures folder)."""
    return fixtures_dir() / "devices.toml"


class DeviceError(OdperfError):
    """An unknown profile name, a bad device table, an emulation the hardware cannot honour, or a GPU
    that is not among those odperf was given."""


@dataclass
class DeviceProfile:
    """A device as odperf files results under it. ``memory_mb`` in MB (10**6 bytes)."""

    name: str
    kind: str  # "cpu", "gpu" or "jetson"
    device: str  # what a MeasureRequest names: "cpu" or "gpu:N"
    display_name: str
    memory_mb: float
    markers: list[str]
    cores: int | None = None
    driver: str | None = None
    cuda: str | None = None
    compute_capability: str | None = None
    detected: bool = True  # False for a profile taken from the table (not present here)
    description: str | None = None
    nvml_index: int | None = None  # NVML's index of the physical GPU (the parent of a MIG instance)
    uuid: str | None = None  # "GPU-..." or "MIG-...": the device NVML reads memory from
    visible_entry: str | None = None  # the CUDA_VISIBLE_DEVICES entry a worker on this GPU is given
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    """One table entry: matches a device name (regex) and optionally a memory range (GiB)."""

    name: str
    kind: str
    match: str
    markers: tuple[str, ...]
    memory_gib: float | None = None
    min_memory_gib: float | None = None
    max_memory_gib: float | None = None
    description: str | None = None

    def matches(self, device_name: str, memory_gib: float | None) -> bool:
        if not re.search(self.match, device_name, flags=re.IGNORECASE):
            return False
        if memory_gib is not None:
            if self.min_memory_gib is not None and memory_gib < self.min_memory_gib:
                return False
            if self.max_memory_gib is not None and memory_gib > self.max_memory_gib:
                return False
        return True


@dataclass(frozen=True)
class DeviceTable:
    cpu_markers: tuple[str, ...]
    rules: tuple[Rule, ...]

    def match(self, kind: str, device_name: str, memory_gib: float | None = None) -> Rule | None:
        return next((r for r in self.rules if r.kind == kind and r.matches(device_name, memory_gib)), None)

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def load_table(path: str | Path | None = None) -> DeviceTable:
    """The device table at ``path`` (default: ``default_table_path()``), parsed once per path."""
    return _load_table(str(Path(path) if path is not None else default_table_path()))


@lru_cache(maxsize=8)
def _load_table(path: str) -> DeviceTable:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DeviceError(f"{p}: device table not found (it ships as fixtures/devices.toml)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeviceError(f"{p}: not valid TOML: {exc}") from exc
    rules = []
    for kind in ("gpu", "jetson"):
        for i, entry in enumerate(data.get(kind, [])):
            missing = [k for k in ("name", "match", "markers") if k not in entry]
            if missing:
                raise DeviceError(f"{p}: [[{kind}]] entry {i + 1} lacks {', '.join(missing)}")
            try:
                re.compile(entry["match"])
            except re.error as exc:
                raise DeviceError(f"{p}: [[{kind}]] {entry['name']}: bad match regex: {exc}") from exc
            rules.append(
                Rule(
                    name=entry["name"],
                    kind=kind,
                    match=entry["match"],
                    markers=tuple(entry["markers"]),
                    memory_gib=entry.get("memory_gib"),
                    min_memory_gib=entry.get("min_memory_gib"),
                    max_memory_gib=entry.get("max_memory_gib"),
                    description=entry.get("description"),
                )
            )
    cpu = data.get("cpu", {})
    return DeviceTable(cpu_markers=tuple(cpu.get("markers", ["cpu"])), rules=tuple(rules))


def slug(name: str) -> str:
    """``"NVIDIA GeForce RTX 4090"`` -> ``"nvidia_geforce_rtx_4090"``: a profile name for unknown GPUs."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


# --- detection ------------------------------------------------------------------------------------
def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_profile(table: DeviceTable | None = None) -> DeviceProfile:
    table = table or load_table()
    return DeviceProfile(
        name="cpu",
        kind="cpu",
        device="cpu",
        display_name=cpu_name(),
        memory_mb=psutil.virtual_memory().total / MB,
        markers=list(table.cpu_markers),
        cores=os.cpu_count(),
        description=f"{cpu_name()}, {os.cpu_count()} cores",
    )


def jetson_model(path: Path | None = None) -> str | None:
    """The board's model string on a Jetson (device tree), else None."""
    try:
        text = (path or DEVICE_TREE_MODEL).read_bytes().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None
    return text if re.search(r"jetson|nvidia", text, re.IGNORECASE) else None


def gpu_profile(
    name: str, memory_bytes: float, index: int = 0, table: DeviceTable | None = None, **info: Any
) -> DeviceProfile:
    """Profile of an NVIDIA GPU from its NVML name and total memory, by the table's rules."""
    table = table or load_table()
    rule = table.match("gpu", name, memory_bytes / GIB)
    return DeviceProfile(
        name=rule.name if rule else slug(name),
        kind="gpu",
        device=f"gpu:{index}",
        display_name=name,
        memory_mb=memory_bytes / MB,
        markers=list(rule.markers) if rule else ["gpu", slug(name)],
        description=rule.description if rule else name,
        **info,
    )


def jetson_profile(model: str, memory_bytes: float | None = None, table: DeviceTable | None = None) -> DeviceProfile:
    """Profile of a Jetson board from its device-tree model string; memory is the host's (shared)."""
    table = table or load_table()
    memory = memory_bytes if memory_bytes is not None else psutil.virtual_memory().total
    rule = table.match("jetson", model, memory / GIB)
    return DeviceProfile(
        name=rule.name if rule else slug(model),
        kind="jetson",
        device="gpu:0",
        display_name=model,
        memory_mb=memory / MB,
        markers=list(rule.markers) if rule else ["jetson", slug(model)],
        cores=os.cpu_count(),
        description=rule.description if rule else model,
    )


def nvml_gpus(nvml: Any, table: DeviceTable | None = None, env: Mapping[str, str] | None = None) -> list[DeviceProfile]:
    """The GPUs odperf was given (``CUDA_VISIBLE_DEVICES``, else every GPU NVML sees), as ``gpu:0..k-1``
    in the given order; each keeps its NVML index and UUID so that probes read the same card."""
    from odperf.measure.visible_gpus import parent_handle, visible_gpus

    driver = _text(_try(nvml.nvmlSystemGetDriverVersion))
    cuda_raw = _try(nvml.nvmlSystemGetCudaDriverVersion)
    cuda = f"{cuda_raw // 1000}.{(cuda_raw % 1000) // 10}" if isinstance(cuda_raw, int) else None
    out = []
    for gpu in visible_gpus(nvml, env):
        parent = parent_handle(nvml, gpu)
        cc = _try(nvml.nvmlDeviceGetCudaComputeCapability, parent)
        name = _text(nvml.nvmlDeviceGetName(gpu.handle)) or f"gpu{gpu.nvml_index}"
        memory = float(nvml.nvmlDeviceGetMemoryInfo(gpu.handle).total)
        info = dict(
            table=table, driver=driver, cuda=cuda, compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
            nvml_index=gpu.nvml_index, uuid=gpu.uuid, visible_entry=gpu.entry,
        )
        if gpu.mig:
            parent_name = _text(nvml.nvmlDeviceGetName(parent)) or name
            whole = gpu_profile(parent_name, float(nvml.nvmlDeviceGetMemoryInfo(parent).total), **info)
            out.append(mig_profile(whole, name, memory, gpu.position))
        else:
            out.append(gpu_profile(name, memory, index=gpu.position, **info))
    return out


def mig_profile(whole: DeviceProfile, name: str, memory_bytes: float, index: int) -> DeviceProfile:
    """A MIG instance, named after its GPU's profile and its slice (``a100_mig_1g_5gb``): its results are
    a slice's, never to be filed or compared as the whole card's."""
    _, _, slice_ = name.partition(" MIG ")
    own = f"{whole.name}_mig_{slug(slice_) if slice_ else 'instance'}"
    return replace(
        whole, name=own, device=f"gpu:{index}", display_name=name, memory_mb=memory_bytes / MB,
        markers=["gpu", "mig", own], description=f"{name} (a MIG instance of {whole.display_name})",
    )


def detect_profiles(table: DeviceTable | None = None, env: Mapping[str, str] | None = None) -> list[DeviceProfile]:
    """The CPU first, then each NVIDIA GPU odperf was given (NVML) or the Jetson board this machine has."""
    table = table or load_table()
    profiles = [cpu_profile(table)]
    board = jetson_model()
    if board is not None:
        profiles.append(jetson_profile(board, table=table))
        return profiles
    nvml = import_nvml()
    if nvml is not None:
        try:
            profiles.extend(nvml_gpus(nvml, table, env))
        finally:
            _try(nvml.nvmlShutdown)
    return profiles


def get_profile(name: str, table: DeviceTable | None = None) -> DeviceProfile:
    """The detected profile called ``name``, else the table's nominal one (``detected=False``)."""
    table = table or load_table()
    for profile in detect_profiles(table):
        if profile.name == name:
            return profile
    rule = table.rule(name)
    if rule is None:
        known = ", ".join(["cpu", *(r.name for r in table.rules)])
        raise DeviceError(f"unknown device profile {name!r}; known profiles: {known}")
    return DeviceProfile(
        name=rule.name,
        kind=rule.kind,
        device="gpu:0",
        display_name=rule.description or rule.name,
        memory_mb=(rule.memory_gib or 0) * GIB / MB,
        markers=list(rule.markers),
        detected=False,
        description=rule.description,
    )


# --- emulation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Emulation:
    """A smaller device's memory budget run on this one; saved in every record it produced."""

    profile: str | None
    memory_limit_mb: int
    how: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def emulation(device: str, profile: str | None = None, memory_limit_mb: int | None = None) -> Emulation | None:
    """The memory cap for a run on ``device`` emulating ``profile`` (its nominal memory) or a bare cap.

    On a GPU the cap is a TensorFlow logical-device memory limit; on the CPU a limit on the worker's
    data segment (RLIMIT_DATA) above what the TensorFlow runtime holds before the model loads, so that
    the cap, like a GPU's, covers the model's weights and activations.
    """
    if profile is None and memory_limit_mb is None:
        return None
    if memory_limit_mb is None:
        target = get_profile(profile)  # type: ignore[arg-type]
        memory_limit_mb = int(target.memory_mb)
    if memory_limit_mb <= 0:
        raise DeviceError(f"memory limit must be positive, got {memory_limit_mb} MB")
    how = "tf_logical_device_memory_limit" if device.startswith("gpu") else "rlimit_data_above_runtime"
    return Emulation(profile=profile, memory_limit_mb=int(memory_limit_mb), how=how)


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
