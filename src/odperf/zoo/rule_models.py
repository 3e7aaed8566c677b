"""The models an expectations rule names must exist: a typo (``centernet_tinyy``) would match no model, and
the rule would silently hold nothing to its deadline or floor while the run passes."""

from __future__ import annotations

import difflib
from typing import Iterable, Protocol

from odperf.errors import OdperfError
from odperf.results import MAP_GROUPS
from odperf.zoo.registry import FAMILIES, META_ARCHS, _untrained_embedded, all_models


class _Named(Protocol):
    name: str
    meta_arch: str | None
    family: str | None


class _Rules(Protocol):
    rules: list
    source: object


def known_selectors(run_models: Iterable[_Named] = ()) -> set[str]:
    """What a rule's ``models`` entry may say (lower case): ``*``, a registry name (embedded ones not yet
    trained included), a meta-architecture, a family, ``group:<mAP group>``, or a model of this run (a path
    model is named by its folder or ``NAME=PATH``)."""
    names = {m.name for m in all_models()} | set(_untrained_embedded()) | set(META_ARCHS) | set(FAMILIES)
    for m in run_models:
        names |= {v for v in (m.name, m.meta_arch, m.family) if v}
    return {"*"} | {n.lower() for n in names} | {f"group:{g}" for g in MAP_GROUPS}


def check_rule_models(files: Iterable[_Rules], run_models: Iterable[_Named] = ()) -> None:
    """OdperfError naming the first rule entry that names no model, with the closest names."""
    known = known_selectors(run_models)
    for expectations in files:
        for i, rule in enumerate(expectations.rules, start=1):
            for entry in rule.models:
                if entry.strip().lower() in known:
                    continue
                close = difflib.get_close_matches(entry.strip().lower(), sorted(known), n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise OdperfError(f"{expectations.source or 'expectations'}, rule {i}: models entry {entry!r} names "
                                  f"no model, meta-architecture, family or group:<mAP group> odperf knows; {hint}"
                                  "`odperf zoo list` shows the models")
