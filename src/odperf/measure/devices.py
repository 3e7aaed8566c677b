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


OWN_TABLE_ENV = "ODPERF_DEVICES"  # a site's own device table, read before the shipped one
BOARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
class BoardEntry:
    """A ``[[board]]`` entry: a board of this site by name, so ``--odperf-board NAME`` (or ``NAME`` in
    ``ODPERF_BOARDS``) stands for its ``url`` (``ssh://...`` with its query keys, as on the command line),
    filed under ``profile`` (detected on the board when left out)."""

    name: str
    url: str
    profile: str | None = None
    description: str | None = None
    table: str = ""  # the file it came from, for messages

    @property
    def spec(self) -> str:
        """Its ``--odperf-board`` spelling."""
        return f"{self.profile}={self.url}" if self.profile else self.url


@dataclass(frozen=True)
class DeviceTable:
    cpu_markers: tuple[str, ...]
    rules: tuple[ProfileRule, ...]
    boards: tuple[BoardEntry, ...] = ()

    def match(self, kind: str, device_name: str, memory_gib: float | None = None) -> ProfileRule | None:
        return next((r for r in self.rules if r.kind == kind and r.matches(device_name, memory_gib)), None)

    def rule(self, name: str) -> ProfileRule | None:
        return next((r for r in self.rules if r.name == name), None)

    def board(self, name: str) -> BoardEntry | None:
        return next((b for b in self.boards if b.name == name), None)


def load_table(path: str | Path | None = None) -> DeviceTable:
    """The device table at ``path``, parsed once per path; by default the shipped one
    (``default_table_path()``) under a site's own (``ODPERF_DEVICES``): the site's profiles match first,
    its boards are named with the shipped ones."""
    if path is not None:
        return _load_table(str(Path(path)))
    shipped = _load_table(str(default_table_path()))
    own = os.environ.get(OWN_TABLE_ENV)
    if not own:
        return shipped
    if not Path(own).expanduser().is_file():
        raise DeviceError(f"{OWN_TABLE_ENV}={own}: no such file; give the path of the site's own device table "
                          f"(its [[board]] entries, its own profiles), or unset {OWN_TABLE_ENV}")
    try:
        site = _load_table(str(Path(own).expanduser()))
    except DeviceError as exc:
        raise DeviceError(f"{OWN_TABLE_ENV}: {exc}") from exc
    taken = {b.name for b in site.boards}
    return DeviceTable(cpu_markers=shipped.cpu_markers, rules=site.rules + shipped.rules,
                       boards=site.boards + tuple(b for b in shipped.boards if b.name not in taken))


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
    # Every array of tables ([[gpu]], [[jetson]], ...) but [[board]] holds the rules of the kind of device
    # it names.
    for kind, entries in data.items():
        if not isinstance(entries, list) or kind == "board":
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
    return DeviceTable(cpu_markers=tuple(cpu.get("markers", ["cpu"])), rules=tuple(rules),
                       boards=_board_entries(p, data.get("board", [])))


def _board_entries(p: Path, entries: Any) -> tuple[BoardEntry, ...]:
    """The table's ``[[board]]`` entries, checked: each names a board once and gives its URL."""
    if not isinstance(entries, list):
        raise DeviceError(f"{p}: board must be an array of tables ([[board]])")
    out: list[BoardEntry] = []
    for i, entry in enumerate(entries):
        missing = [k for k in ("name", "url") if k not in entry]
        if missing:
            raise DeviceError(f"{p}: [[board]] entry {i + 1} lacks {', '.join(missing)}")
        name, url = str(entry["name"]), str(entry["url"])
        if not BOARD_NAME.match(name):
            raise DeviceError(f"{p}: [[board]] {name!r}: a name is letters, digits, '.', '_' and '-' (e.g. lab-tx2)")
        if any(b.name == name for b in out):
            raise DeviceError(f"{p}: [[board]] {name!r} is named twice")
        if not url.startswith(("ssh://", "local://")):
            raise DeviceError(f"{p}: [[board]] {name}: url {url!r} must start with ssh:// (or local://); its "
                              "profile goes in profile = \"tx2\"")
        unknown = sorted(set(entry) - {"name", "url", "profile", "description"})
        if unknown:
            raise DeviceError(f"{p}: [[board]] {name}: unknown key(s) {', '.join(unknown)} "
                              "(known: name, url, profile, description)")
        out.append(BoardEntry(name=name, url=url, profile=str(entry["profile"]).lower() if entry.get("profile") else None,
                              description=entry.get("description"), table=str(p)))
    return tuple(out)


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
