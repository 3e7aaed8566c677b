"""The two sides of ``odperf ab`` and their slots: a source tree (this checkout, or a git ref checked out into a
temporary worktree) run with a Python, one fresh pytest of the selection per slot, interleaved A B / B A."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from odperf.commands.ab.settings import SLOT_TIMEOUT_S
from odperf.errors import OdperfError, ResultsError
from odperf.suite.launch import Selection, SuiteRun, child_env, pytest_command


@dataclass(frozen=True)
class Side:
    """What one side runs: a source tree, a Python, a model selection; ``text`` says it for the log."""

    label: str  # "baseline" or "candidate"
    root: Path | None  # a source tree of odperf (a git ref checked out); None: the odperf running this
    python: str
    models: str
    text: str
    pytest_args: tuple[str, ...] = ()  # this side's own pytest options (--baseline-args / --candidate-args)


def measure_sides(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Both sides' slots, interleaved A B / B A ...: per side, the JSON of each of its slots in pair order."""
    if not (args.baseline_ref or args.baseline_python or args.baseline_models or args.baseline_args):
        raise OdperfError("odperf ab needs a baseline: --baseline-ref REF, --baseline-python PYTHON, "
                          "--baseline-models SEL (e.g. NAME=PATH of another model folder) or --baseline-args ARGS")
    if args.pairs < 2:
        raise OdperfError(f"--pairs must be at least 2 (one A B and one B A), got {args.pairs}")
    out = Path(args.out).resolve()
    with ExitStack() as stack:
        sides = [stack.enter_context(_side(name, args)) for name in ("baseline", "candidate")]
        out.mkdir(parents=True, exist_ok=True)  # only once both sides exist: a bad ref leaves no folder
        for side in sides:
            print(f"odperf ab: {side.label}: {side.text}", flush=True)
        slots: dict[str, list[Path]] = {s.label: [] for s in sides}
        for i in range(args.pairs):
            for side in (sides if i % 2 == 0 else sides[::-1]):
                slots[side.label].append(_run_slot(side, args, out / f"{side.label}-{i + 1}.json", i + 1))
    return slots


@contextmanager
def _side(label: str, args: argparse.Namespace) -> Iterator[Side]:
    ref = getattr(args, f"{label}_ref")
    python = getattr(args, f"{label}_python") or sys.executable
    if shutil.which(python) is None:
        raise OdperfError(f"--{label}-python {python}: no such executable; give the python of the environment "
                          f"to run the {label} with (e.g. /envs/old/bin/python)")
    models = getattr(args, f"{label}_models") or args.models
    try:
        extra = tuple(shlex.split(getattr(args, f"{label}_args") or ""))
    except ValueError as exc:
        raise OdperfError(f"--{label}-args: {exc}; quote it as one shell word, e.g. --{label}-args='-k tx2'") from None
    parts = [f"git ref {ref}" if ref else "this odperf", f"python {python}", f"models {models}"]
    if extra:
        parts.append(f"pytest args {shlex.join(extra)}")
    if not ref:
        yield Side(label, None, python, models, ", ".join(parts), extra)
        return
    here = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())  # the checkout whose ref it is
    commit = git(here, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    parts[0] = f"git ref {ref} ({commit[:12]})"
    with tempfile.TemporaryDirectory(prefix=f"odperf-ab-{label}-") as tmp:
        tree = Path(tmp) / "tree"
        git(here, "worktree", "add", "--detach", str(tree), commit)
        try:
            yield Side(label, tree, python, models, ", ".join(parts), extra)
        finally:
            git(here, "worktree", "remove", "--force", str(tree))


def git(cwd: Path, *cmd: str) -> str:
    done = subprocess.run(["git", *cmd], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise OdperfError(f"git {' '.join(cmd)} failed in {cwd}: {done.stderr.strip() or done.stdout.strip()} "
                          f"(is this a git checkout with that ref? a fresh clone has full history)")
    return done.stdout


def _run_slot(side: Side, args: argparse.Namespace, json_path: Path, pair: int) -> Path:
    """One pytest run of the selection for one side; the JSON it wrote (refused when it wrote none)."""
    if json_path.exists():
        json_path.unlink()
    options = ("--odperf-accuracy",) if args.accuracy else ()
    selection = Selection(side.models, args.devices, args.images,
                          pytest_args=(*args.pytest_args, *side.pytest_args))
    cmd = pytest_command(SuiteRun(side.label, args.batch_sizes, options), selection, json_path,
                         root=side.root, python=side.python)
    env = child_env(source=side.root)  # the side's odperf, not the installed one
    log = json_path.with_suffix(".log")
    print(f"odperf ab: pair {pair}: {side.label}", flush=True)
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=side.root or Path.cwd(), env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=SLOT_TIMEOUT_S)
    if not json_path.is_file():
        raise ResultsError(f"{side.label} pair {pair}: pytest (exit {done.returncode}) wrote no {json_path}; "
                           f"its output is in {log}")
    return json_path
