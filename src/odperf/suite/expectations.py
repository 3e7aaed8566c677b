"""Expectations the suite asserts: deadlines, out-of-memory behaviour and mAP floors.

They live in a TOML file (default ``fixtures/expectations.toml``) as an ordered list of rules::

    [profiles.cpu]
    car_interval_s = 600        # the line's interval between cars: the deadline for a whole car

    [[rule]]
    profiles = ["p100", "v100_pcie", "v100_sxm2"]   # device profiles; "*" or omitted = all
    models = ["faster_rcnn_nas"]                     # names, meta-archs, families, "group:high"; "*" = all
    batches = ">=4"                                  # "*", a list [1, 2], or ">=N" / "<=N" / ">N" / "<N"
    oom = true                                       # this batch must run out of memory (strict)
    note = "paper, Fig. 3: out of memory at batch 4 and above on 12 and 16 GB cards"

Fields a rule may set: ``deadline_image_s`` (mean time per camera image), ``deadline_car_s`` (time per car:
mean per image x images per car; defaults to the profile's ``car_interval_s``), ``oom`` (true: the run must
end out of memory; false: it must not; "either": a measured boundary where both happen, each recorded),
``map_floor`` (COCO mAP@[.5:.95], 0..1), ``note``; for streams (benchmarks/test_stream.py, odperf.stream):
``line_rate`` (camera images per second the device must hold; defaults to 95 / the profile's
``car_interval_s``), ``tail_latency_s`` (the 99th-percentile latency bound at that rate; defaults to
``deadline_image_s``), ``peak_rate_floor`` (the least peak rate within that bound, images/s). A case takes,
field by field, the value of the last rule that matches it, so later rules refine earlier ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from odperf.util.tomlfile import tomllib
from odperf.errors import OdperfError

FIELDS = ("deadline_image_s", "deadline_car_s", "oom", "map_floor", "line_rate", "tail_latency_s", "peak_rate_floor")
_BATCH_RULE = re.compile(r"^(>=|<=|>|<)\s*(\d+)$")


class ExpectationsError(OdperfError):
    """An expectations file that cannot be read or holds a malformed rule."""


@dataclass(frozen=True)
class Expectation:
    """What one (device profile, model, batch size) is expected to do; None = not asserted."""

    deadline_image_s: float | None = None
    deadline_car_s: float | None = None
    oom: bool | str | None = None  # True, False, "either", or None (unexpected oom fails)
    map_floor: float | None = None
    line_rate: float | None = None  # stream: images/s to hold (None: from the profile's car_interval_s)
    tail_latency_s: float | None = None  # stream: 99th-percentile latency bound (None: deadline_image_s)
    peak_rate_floor: float | None = None  # stream: the least peak rate within tail_latency_s, images/s
    notes: tuple[str, ...] = ()

    def accuracy_only(self) -> "Expectation":
        """What an untimed accuracy run is held to: its mAP floor and out-of-memory behaviour."""
        return replace(self, deadline_image_s=None, deadline_car_s=None)


@dataclass(frozen=True)
class ModelTags:
    """The names a rule's ``models`` entry can match a model by."""

    name: str
    meta_arch: str | None = None
    family: str | None = None
    map_group: str | None = None

    def matches(self, selector: str) -> bool:
        s = selector.strip().lower()
        if s == "*":
            return True
        if s.startswith("group:"):
            return (self.map_group or "").lower() == s[len("group:") :]
        return s in {self.name.lower(), (self.meta_arch or "").lower(), (self.family or "").lower()}


@dataclass
class Rule:
    profiles: tuple[str, ...]
    models: tuple[str, ...]
    batches: Any
    values: dict[str, Any]
    note: str | None = None

    def matches(self, profile: str, model: ModelTags, batch: int) -> bool:
        if "*" not in self.profiles and profile not in self.profiles:
            return False
        if not any(model.matches(m) for m in self.models):
            return False
        return _batch_matches(self.batches, batch)


def _batch_matches(spec: Any, batch: int) -> bool:
    if spec in (None, "*"):
        return True
    if isinstance(spec, int):
        return batch == spec
    if isinstance(spec, list):
        return batch in spec
    m = _BATCH_RULE.match(str(spec).strip())
    op, n = m.group(1), int(m.group(2))  # validated when loaded
    return {">=": batch >= n, "<=": batch <= n, ">": batch > n, "<": batch < n}[op]


@dataclass
class Expectations:
    """The rules of one file, plus per-profile settings such as the interval between cars."""

    rules: list[Rule] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    def lookup(self, profile: str, model: ModelTags, batch: int) -> Expectation:
        merged: dict[str, Any] = {}
        notes: list[str] = []
        for rule in self.rules:
            if rule.matches(profile, model, batch):
                merged.update(rule.values)
                if rule.note:
                    notes.append(rule.note)
        if merged.get("deadline_car_s") is None:
            interval = self.profiles.get(profile, {}).get("car_interval_s")
            if interval is not None:
                merged["deadline_car_s"] = float(interval)
        return Expectation(notes=tuple(notes), **merged)


def _as_tuple(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ("*",)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ExpectationsError(f"{where}: '{key}' must be a string or a list of strings, got {value!r}")


def parse(data: dict[str, Any], source: Path | None = None) -> Expectations:
    name = str(source) if source else "expectations"
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ExpectationsError(f"{name}: [profiles] must be a table of tables")
    rules: list[Rule] = []
    for i, raw in enumerate(data.get("rule", []), start=1):
        where = f"{name}, rule {i}"
        unknown = set(raw) - set(FIELDS) - {"profiles", "models", "batches", "note"}
        if unknown:
            raise ExpectationsError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: profiles, models, batches, note, "
                f"{', '.join(FIELDS)}"
            )
        batches = raw.get("batches", "*")
        ok = (
            batches == "*"
            or isinstance(batches, int)
            or (isinstance(batches, list) and all(isinstance(b, int) for b in batches))
            or (isinstance(batches, str) and _BATCH_RULE.match(batches.strip()))
        )
        if not ok:
            raise ExpectationsError(
                f"{where}: 'batches' must be \"*\", an integer, a list of integers or like \">=4\"; got {batches!r}"
            )
        values = {k: raw[k] for k in FIELDS if k in raw}
        for k in ("deadline_image_s", "deadline_car_s", "map_floor", "line_rate", "tail_latency_s", "peak_rate_floor"):
            if k in values and (not isinstance(values[k], (int, float)) or values[k] < 0):
                raise ExpectationsError(f"{where}: '{k}' must be a non-negative number, got {values[k]!r}")
        if "oom" in values and not (isinstance(values["oom"], bool) or values["oom"] == "either"):
            raise ExpectationsError(f"{where}: 'oom' must be true, false or \"either\", got {values['oom']!r}")
        rules.append(
            Rule(
                profiles=_as_tuple(raw.get("profiles"), where, "profiles"),
                models=_as_tuple(raw.get("models"), where, "models"),
                batches=batches,
                values=values,
                note=raw.get("note"),
            )
        )
    return Expectations(rules=rules, profiles=profiles, source=source)


def load(path: str | Path) -> Expectations:
    p = Path(path)
    if not p.is_file():
        raise ExpectationsError(
            f"expectations file {p} does not exist; pass --odperf-expectations=FILE or use the default "
            f"fixtures/expectations.toml"
        )
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExpectationsError(f"{p}: not valid TOML: {exc}") from exc
    return parse(data, p)


def merge(files: Iterable[Expectations]) -> Expectations:
    """Rules of several files in order; later files refine earlier ones."""
    out = Expectations()
    for e in files:
        out.rules.extend(e.rules)
        for name, settings in e.profiles.items():
            out.profiles.setdefault(name, {}).update(settings)
    return out
