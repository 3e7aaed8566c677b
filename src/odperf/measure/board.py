"""Boards named on the command line: ``--odperf-board [PROFILE=]ssh://[user@]host[:port][?key=value&...]``, or
``PROFILE=local://?python=PATH`` for a board's interpreter on this host reached through local pipes instead of
SSH (the same worker and protocol without the link: what the link costs is the difference between the two),
or the NAME of a ``[[board]]`` entry of the device table that stands for its URL (``board_spec``).

Query keys: ``python`` (the board's interpreter, default ``python3``), ``ssh_config`` (an ssh config
file, passed as ``-F``: keys, known_hosts, jump hosts), and, for stand-ins of the Jetson files,
``meminfo``, ``device_tree``, ``tegrastats`` and ``jtop`` (a folder holding a stand-in jetson-stats).
Without a PROFILE the board names itself: its
``/proc/device-tree/model`` (else ``/etc/nv_tegra_release``), read over SSH, matched against the device
table's ``[[jetson]]`` entries. The profile's markers (``jetson``, ``tx2``, ...) and ``board`` go on
the board's cases, so ``pytest benchmarks -m tx2 --odperf-board ...`` runs exactly those.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlparse

from odperf.backends.names import BOARD_RUNTIMES
from odperf.errors import OdperfError
from odperf.measure.devices import BOARD_NAME, OWN_TABLE_ENV, load_table

BOARD_MARKER = "board"
DEVICE_TREE = "/proc/device-tree/model"
TEGRA_RELEASE = "/etc/nv_tegra_release"
QUERY_KEYS = ("python", "ssh_config", "meminfo", "device_tree", "tegrastats", "jtop")
MEMINFO = "/proc/meminfo"


class BoardError(OdperfError):
    """A board named wrongly (spelling of the target, missing python option)."""


@dataclass
class Board:
    """A board reached over SSH: ``profile`` names its cases (tx2, orin_nano, ...), ``python`` its
    interpreter with numpy and TensorFlow or PyTorch (``runtimes``: what ``check_board`` found there, every
    board runtime until it has looked); ``ssh_options`` are passed to ssh as given (``-o`` pairs,
    ``-i`` keys); ``meminfo`` is read on the board (a stand-in's path in tests)."""

    profile: str
    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    ssh: str = "ssh"
    ssh_options: list[str] = field(default_factory=list)
    meminfo: str = MEMINFO
    tegrastats: str | None = "tegrastats"  # run on the board where found there (a cross-check of RAM used)
    jtop: str | None = None  # a folder to import jetson-stats' jtop from (a stand-in's); None: the board's own
    link: str = "ssh"  # "ssh", or "local pipes" (local://: this host's interpreter, no SSH)
    runtimes: tuple[str, ...] = BOARD_RUNTIMES

    @classmethod
    def parse(cls, spec: str, **options: Any) -> "Board":
        """A board from its ``--odperf-board`` spelling (``parse_board``), fields overridden by ``options``."""
        board, _ = parse_board(spec)
        return replace(board, **options)

    @property
    def destination(self) -> str:
        if self.link != "ssh":
            return "this host"
        return f"{self.user}@{self.host}" if self.user else self.host

    def command(self, remote: str) -> list[str]:
        """The ssh command line running ``remote`` (a shell command) on the board; a local board's shell."""
        if self.link != "ssh":
            return ["sh", "-c", remote]
        port = ["-p", str(self.port)] if self.port else []
        return [self.ssh, "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                *port, *self.ssh_options, self.destination, remote]


@dataclass(frozen=True)
class BoardTarget:
    """A board and what its cases are filed and selected under."""

    board: Board
    markers: tuple[str, ...]
    memory_mb: float | None
    model: str | None  # what the board says it is, when it was asked


def board_spec(spec: str) -> str:
    """A ``--odperf-board`` value in its URL spelling: a bare NAME stands for the device table's
    ``[[board]]`` entry of that name (the shipped table's, or the site's own that ``ODPERF_DEVICES`` names)."""
    name = spec.strip()
    if not BOARD_NAME.match(name):
        return spec
    table = load_table()
    entry = table.board(name)
    if entry is None:
        known = ", ".join(b.name for b in table.boards) or "none"
        raise BoardError(f"--odperf-board {spec}: no [[board]] entry named {name!r} (named: {known}); give its "
                         f"[PROFILE=]ssh://... URL, or add [[board]] name = {name!r} url = \"ssh://...\" to the "
                         f"device table {OWN_TABLE_ENV} names")
    return entry.spec


def parse_board(spec: str) -> tuple[Board, str | None]:
    """The Board of a ``--odperf-board`` value (a URL, or a ``[[board]]`` entry's name) and its device-tree
    path; BoardError naming the fix."""
    named = board_spec(spec)
    if named != spec:
        try:
            return parse_board(named)
        except BoardError as exc:
            raise BoardError(f"[[board]] {spec.strip()}: {exc}") from None
    head, sep, rest = spec.partition("=")
    url = rest if sep and not head.startswith("ssh:") else spec
    profile = head.strip().lower() if sep and not head.startswith("ssh:") else ""
    parsed = urlparse(url)
    local = parsed.scheme == "local" and not parsed.netloc and profile
    if not local and (parsed.scheme != "ssh" or not parsed.hostname):
        raise BoardError(f"--odperf-board {spec}: expected [PROFILE=]ssh://[user@]host[:port][?python=PATH] "
                         "(e.g. tx2=ssh://nvidia@tx2.local?python=/usr/bin/python3) or PROFILE=local://?python=PATH")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise BoardError(f"--odperf-board {spec}: unknown key(s) {', '.join(unknown)} (known: {', '.join(QUERY_KEYS)})")
    options = ["-F", query["ssh_config"]] if "ssh_config" in query else []
    board = Board(profile=profile, host=parsed.hostname or "localhost", user=parsed.username, port=parsed.port,
                  python=query.get("python", "python3"), ssh_options=options,
                  meminfo=query.get("meminfo", MEMINFO), tegrastats=query.get("tegrastats", "tegrastats"),
                  jtop=query.get("jtop"),
                  link="local pipes" if local else "ssh")
    return board, query.get("device_tree")


def board_model(board: Board, device_tree: str | None = None, timeout_s: float = 60.0) -> str | None:
    """What the board says it is: its device-tree model, else its L4T release line; None when neither."""
    paths = [device_tree or DEVICE_TREE, TEGRA_RELEASE]
    script = "; ".join(f"[ -r {p} ] && tr -d '\\0' < {p} && exit 0" for p in paths) + "; exit 3"
    try:
        out = subprocess.run(board.command(script), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BoardError(f"board {board.destination}: no answer over SSH within {timeout_s:g} s") from None
    if out.returncode == 255:
        raise BoardError(f"board {board.destination}: ssh failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'exit 255'}")
    return out.stdout.strip() or None if out.returncode == 0 else None


# the board's python, numpy, then each runtime it can import (torch counts with torchvision only), without
# importing them (seconds on a TX2)
PROBE = ("import sys, importlib.util as u; print(sys.version.split()[0]); import numpy; print(numpy.__version__); "
         "print(','.join([n for n, m in (('tensorflow', ('tensorflow',)), ('torch', ('torch', 'torchvision'))) "
         "if all(u.find_spec(x) for x in m)]) or 'none')")


def check_board(board: Board, timeout_s: float = 120.0) -> str:
    """Before any case: the board answers over SSH, its python runs (3.6 or newer) with numpy and TensorFlow
    or PyTorch (with torchvision) importable; one BoardError line naming the board and the fix otherwise.
    Sets ``board.runtimes`` to those found; returns what it found."""
    import shlex

    where = f"--odperf-board {board.profile or ''}={board.destination}"
    try:
        out = subprocess.run(board.command(f"{shlex.quote(board.python)} -c {shlex.quote(PROBE)}"),
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BoardError(f"{where}: no answer over SSH within {timeout_s:g} s") from None
    said = out.stderr.strip().splitlines()
    lines = out.stdout.split()
    if out.returncode == 255:
        raise BoardError(f"{where}: ssh failed ({said[-1] if said else 'exit 255'}); check the host, the key "
                         "and that the board's host key is in known_hosts (odperf never skips that check)")
    if out.returncode == 127 or not lines:
        raise BoardError(f"{where}: cannot run {board.python} on the board ({said[-1] if said else out.returncode}); "
                         "give the board's interpreter as ?python=/usr/bin/python3")
    version = tuple(int(v) for v in lines[0].split(".")[:2])
    if version < (3, 6):
        raise BoardError(f"{where}: {board.python} is Python {lines[0]}; the worker needs 3.6 or newer")
    if len(lines) < 2:
        raise BoardError(f"{where}: {board.python} has no numpy ({said[-1] if said else ''}); install JetPack's "
                         "python3-numpy (sudo apt-get install python3-numpy)")
    found = tuple(r for r in (lines[2].split(",") if len(lines) > 2 else []) if r in BOARD_RUNTIMES)
    if not found:
        raise BoardError(f"{where}: {board.python} cannot import tensorflow, nor torch with torchvision; install "
                         "NVIDIA's TensorFlow or PyTorch wheel for the board's JetPack (see the README's Jetson section)")
    board.runtimes = found
    return f"Python {lines[0]}, numpy {lines[1]}, {' and '.join(found)}"


def board_target(spec: str, check: bool = True) -> BoardTarget:
    """A board from its ``--odperf-board`` value, its profile named or detected, with markers and memory, and
    its runtimes from its python over SSH (``check_board``); with ``check`` a board it cannot use is an error
    here (the run's one check), else left to fail its cases."""
    board, device_tree = parse_board(spec)
    try:
        check_board(board)  # also learns the board's runtimes, which choose its cases: every process asks
    except BoardError:
        if check:
            raise
    table = load_table()
    model = None
    if not board.profile:
        model = board_model(board, device_tree)
        rule = table.match("jetson", model) if model else None
        if rule is None:
            said = f"it says {model!r}" if model else f"it has no {DEVICE_TREE} or {TEGRA_RELEASE}"
            raise BoardError(f"--odperf-board {spec}: cannot tell which board this is ({said}); name it: "
                             f"tx2=ssh://..., orin=ssh://...")
        board.profile = rule.name
    rule = table.rule(board.profile)
    markers = (rule.markers if rule else ("jetson", board.profile)) + (BOARD_MARKER,)
    memory = rule.memory_gib * 1024**3 / 1e6 if rule and rule.memory_gib else None
    return BoardTarget(board=board, markers=tuple(dict.fromkeys(markers)), memory_mb=memory, model=model)
