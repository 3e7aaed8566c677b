"""The hardware a run measures on, as named profiles (``fixtures/devices.toml``), and the device strings.

A profile's ``name`` is what results are filed under and compared by (``v100_sxm2``, ``cpu``), so it must
be stable across driver versions and name spellings: it comes from the table's matching rules, never from
the raw device name. A device string (``"cpu"``, ``"gpu:N"``) says where a worker runs; ``parse_device``
is its one reader. How each kind of device is found, probed and handed to a worker is
``odperf.measure.kinds``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from odperf.util.tomlfile import tomllib
from odperf.errors import OdperfError
from odperf.util.package_data import fixtures_dir

GIB = 1024**3


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
    kind: str  # the name of its entry in odperf.measure.kinds: "cpu", "gpu", "jetson"
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
class ProfileRule:
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
    rules: tuple[ProfileRule, ...]

    def match(self, kind: str, device_name: str, memory_gib: float | None = None) -> ProfileRule | None:
        return next((r for r in self.rules if r.kind == kind and r.matches(device_name, memory_gib)), None)

    def rule(self, name: str) -> ProfileRule | None:
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
    # Every array of tables ([[gpu]], [[jetson]], ...) holds the rules of the kind of device it names.
    for kind, entries in data.items():
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            missing = [k for k in ("name", "match", "markers") if k not in entry]
            if missing:
                raise DeviceError(f"{p}: [[{kind}]] entry {i + 1} lacks {', '.join(missing)}")
            try:
                re.compile(entry["match"])
            except re.error as exc:
                raise DeviceError(f"{p}: [[{kind}]] {entry['name']}: bad match regex: {exc}") from exc
            rules.append(
                ProfileRule(
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


# --- device strings -------------------------------------------------------------------------------
DEVICE_FORMS = "cpu, gpu (= gpu:0) or gpu:N"


@dataclass(frozen=True)
class DeviceRef:
    """Where a worker runs: the CPU, or the N-th GPU odperf was given (whatever kind of GPU it is)."""

    slot: str  # "cpu" or "gpu"
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.slot == "cpu" else f"gpu:{self.index}"

    @property
    def is_gpu(self) -> bool:
        return self.slot == "gpu"

    @property
    def label(self) -> str:
        """The device in benchmark ids: ``cpu``, ``gpu`` (gpu:0), ``gpu1``..."""
        return "gpu" if str(self) == "gpu:0" else str(self).replace(":", "")


def parse_device(text: str) -> DeviceRef:
    """``"cpu"``, ``"gpu"`` (= ``gpu:0``) or ``"gpu:N"``, any case; DeviceError naming the forms otherwise."""
    slot, colon, index = str(text).strip().lower().partition(":")
    if slot == "cpu" and not colon:
        return DeviceRef("cpu")
    if slot == "gpu" and (not colon or index.isdigit()):
        return DeviceRef("gpu", int(index or 0))
    raise DeviceError(f"device {text!r} is not one odperf knows; name it as {DEVICE_FORMS} (N counts from 0)")
