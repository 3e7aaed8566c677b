"""README figures that cannot go stale: blocks of the README regenerated from a committed report.

A block is delimited by ``<!-- odperf:excerpt KEY="VALUE" ... -->`` and ``<!-- /odperf:excerpt -->``; its
body is rebuilt from the report's Markdown tables (``source``): the table under the heading that starts
with ``section``, only the ``columns`` named (all when none), only the ``rows`` whose leading cells match
(``device/model/batch;...``, in the order given). ``odperf readme`` rewrites every block in place;
``odperf readme --check`` (and the test suite) fails when a block says something the report does not.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from odperf.errors import OdperfError

BLOCK = re.compile(r"(<!-- odperf:excerpt (?P<spec>.*?) -->\n)(?P<body>.*?)(<!-- /odperf:excerpt -->)", re.S)


@dataclass(frozen=True)
class Table:
    """One Markdown table of a report: its header cells and its rows of cells, as the report wrote them."""

    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables_of(markdown: str) -> dict[str, Table]:
    """Each ``## heading``'s first table."""
    out: dict[str, Table] = {}
    heading = None
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif heading and line.startswith("|") and heading not in out and i + 1 < len(lines) \
                and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            out[heading] = Table(_cells(line), rows)
    return out


def render(spec: dict[str, str], root: Path) -> str:
    """The Markdown table a block's spec asks for, from its source report."""
    source = root / spec["source"]
    if not source.is_file():
        raise OdperfError(f"README excerpt: {spec['source']} does not exist; render the report first")
    tables = tables_of(source.read_text(encoding="utf-8"))
    found = [t for h, t in tables.items() if h.startswith(spec["section"])]
    if not found:
        raise OdperfError(f"README excerpt: no table under a heading starting {spec['section']!r} in {source}")
    table = found[0]
    names = [c.strip() for c in spec.get("columns", "").split(",") if c.strip()] or table.header
    missing = [n for n in names if n not in table.header]
    if missing:
        raise OdperfError(f"README excerpt: {source} has no column {', '.join(missing)}")
    picks = [table.header.index(n) for n in names]
    rows = table.rows
    if spec.get("rows"):
        keys = [k.split("/") for k in spec["rows"].split(";") if k]
        rows = []
        for key in keys:
            match = [r for r in table.rows if r[:len(key)] == key]
            if not match:
                raise OdperfError(f"README excerpt: {source} has no row {'/'.join(key)}")
            rows.append(match[0])
    body = [[row[i] for i in picks] for row in rows]
    return tabulate(body, headers=names, tablefmt="github", disable_numparse=True) + "\n"


def update(text: str, root: Path) -> str:
    """``text`` with every excerpt block rebuilt from the reports under ``root``."""
    def rebuild(m: re.Match[str]) -> str:
        spec = dict(part.split("=", 1) for part in shlex.split(m.group("spec")))
        return m.group(1) + render(spec, root) + m.group(4)

    return BLOCK.sub(rebuild, text)


def stale_blocks(text: str, root: Path) -> list[str]:
    """The specs of the blocks whose body differs from what their report says."""
    fresh = update(text, root)
    old = [m.group("spec") for m in BLOCK.finditer(text)]
    return [spec for spec, a, b in zip(old, BLOCK.finditer(text), BLOCK.finditer(fresh))
            if a.group("body") != b.group("body")]
