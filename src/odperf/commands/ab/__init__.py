"""``odperf ab``: a baseline and a candidate measured interleaved on one machine in one job, then gated.

Runs measured at different times on a shared machine differ by more than any regression worth catching
(load, thermal state, neighbours). Here every pair of slots runs the same pytest selection once for each
side, in the order A B, then B A, then A B ... (each a fresh pytest and fresh workers), so drift and load
fall on both sides alike. The rounds of each side's slots are pooled into one saved run per side
(``<out>/baseline.json``, ``<out>/candidate.json``, readable by ``odperf gate`` and ``odperf report``) and
gated: time by a test over the pairs, one candidate/baseline ratio of medians per pair
(``significance.compare_pairs``: rounds of one run are not independent, pairs are); the model's own
memory and deployment time, one figure per slot, by the same paired test at ``--slot-alpha``; outcomes and
mAP exactly.

A side is a source tree run with a Python: this checkout, or a git ref of it (checked out with ``git
worktree add`` into a temporary folder, removed after), with this or another Python environment (say, a new
TensorFlow against the old), and optionally other models (``NAME=PATH`` of another model folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from odperf.commands import bench
from odperf.errors import OdperfError, ResultsError
from odperf.report import gate as gt
from odperf.report import significance as sig
from odperf.results import load_run

SLOT_TIMEOUT_S = 1800
DEPLOY_THRESHOLD = 0.25
SLOT_ALPHA = gt.DEFAULT_SLOT_ALPHA
# CI's self-gate (``--ci``), calibrated on a 2-core machine (reports/gate-calibration): centernet_tiny at batch
# 64 (one worker start per slot: 6 pairs cost what 4 pairs of batches 1 and 64 did); a slowdown must pass
# +15% and be significant at p < 0.05 over the 6 pairs; deployment and the model's own memory, one figure
# per slot and noisier, at p < 0.01; outcomes and mAP are gated exactly (accuracy, strict).
CI_SETTINGS = {"batch_sizes": "64", "time_threshold": 0.15, "alpha": 0.05, "slot_alpha": SLOT_ALPHA, "pairs": 6}
DEFAULT_SETTINGS = {"time_threshold": gt.DEFAULT_TIME_THRESHOLD, "alpha": sig.DEFAULT_ALPHA,
                    "slot_alpha": SLOT_ALPHA, "pairs": 4}  # odperf ab's own defaults

Key = tuple[str, str, int]  # (device profile, model, batch size), as the gate keys its rows


@dataclass(frozen=True)
class Side:
    """What one side runs: a source tree, a Python, a model selection; ``text`` says it for the log."""

    label: str  # "baseline" or "candidate"
    root: Path | None  # a source tree of odperf (a git ref checked out); None: the odperf running this
    python: str
    models: str
    text: str


def cmd_ab(args: argparse.Namespace) -> int:
    if args.ci:
        for name, value in CI_SETTINGS.items():
            setattr(args, name, value)
        args.accuracy = args.strict = True
    if getattr(args, "calibrate", None):
        from odperf.commands.ab.calibrate import calibrate  # noqa: PLC0415 (its own mode)

        return calibrate(args)
    slots = measure_sides(args)
    failed = len(gate_slots(slots, args, Path(args.out).resolve()))
    return 1 if failed else 0


def measure_sides(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Both sides' slots, interleaved A B / B A ...: per side, the JSON of each of its slots in pair order."""
    if not (args.baseline_ref or args.baseline_python or args.baseline_models):
        raise OdperfError("odperf ab needs a baseline: --baseline-ref REF, --baseline-python PYTHON or "
                          "--baseline-models SEL (e.g. NAME=PATH of another model folder)")
    if args.pairs < 2:
        raise OdperfError(f"--pairs must be at least 2 (one A B and one B A), got {args.pairs}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        sides = [stack.enter_context(_side(name, args)) for name in ("baseline", "candidate")]
        for side in sides:
            print(f"odperf ab: {side.label}: {side.text}", flush=True)
        slots: dict[str, list[Path]] = {s.label: [] for s in sides}
        for i in range(args.pairs):
            for side in (sides if i % 2 == 0 else sides[::-1]):
                slots[side.label].append(_run_slot(side, args, out / f"{side.label}-{i + 1}.json", i + 1))
    return slots


def gate_slots(slots: dict[str, list[Path]], args: argparse.Namespace, out: Path, show: bool = True) -> list[str]:
    """The verdict on measured slots under ``args``' thresholds: its failures (none: pass). ``show`` prints
    the pairs, every comparison and the verdict; the same slots can be gated again under other settings."""
    merged = {label: merge(paths, out / f"{label}.json") for label, paths in slots.items()}
    sides = slots["baseline"], slots["candidate"]
    ratios = pair_ratios(*sides, median_times)
    config = gt.GateConfig(time_threshold=args.time_threshold, memory_threshold=args.memory_threshold,
                           map_tolerance=args.map_tolerance, alpha=args.alpha, strict=args.strict,
                           pair_ratios=ratios, memory_alpha=args.slot_alpha,
                           memory_pair_ratios=pair_ratios(*sides, model_memories))
    result = gt.run_gate(load_run(merged["baseline"]), load_run(merged["candidate"]), config)
    deploy_lines, deploy_failures = deployment(*sides, args.deploy_threshold, args.slot_alpha)
    failures = result.failures + deploy_failures
    if show:
        for (_, model, batch), values in sorted(ratios.items()):
            print(f"pairs: {model} batch {batch}: candidate/baseline medians {' '.join(f'{r:.3f}' for r in values)}")
        for line in result.times + deploy_lines + failures:
            print(line)
        print(f"odperf ab: {f'FAIL ({len(failures)} failures)' if failures else 'pass'}: "
              f"{len(slots['baseline'])} pairs interleaved; {result.summary()}; deployment and the model's own "
              f"memory significant at p < {args.slot_alpha:g}")
    return failures


@contextmanager
def _side(label: str, args: argparse.Namespace) -> Iterator[Side]:
    ref = getattr(args, f"{label}_ref")
    python = getattr(args, f"{label}_python") or sys.executable
    if shutil.which(python) is None:
        raise OdperfError(f"--{label}-python {python}: no such executable; give the python of the environment "
                          f"to run the {label} with (e.g. /envs/old/bin/python)")
    models = getattr(args, f"{label}_models") or args.models
    parts = [f"git ref {ref}" if ref else "this odperf", f"python {python}", f"models {models}"]
    if not ref:
        yield Side(label, None, python, models, ", ".join(parts))
        return
    here = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").strip())  # the checkout whose ref it is
    commit = _git(here, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    parts[0] = f"git ref {ref} ({commit[:12]})"
    with tempfile.TemporaryDirectory(prefix=f"odperf-ab-{label}-") as tmp:
        tree = Path(tmp) / "tree"
        _git(here, "worktree", "add", "--detach", str(tree), commit)
        try:
            yield Side(label, tree, python, models, ", ".join(parts))
        finally:
            _git(here, "worktree", "remove", "--force", str(tree))


def _git(cwd: Path, *cmd: str) -> str:
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
    selection = argparse.Namespace(images=args.images, smoke=True, models=side.models, devices=args.devices,
                                   accuracy=False, pytest_args=list(args.pytest_args))  # no saved copy
    cmd = bench.pytest_command(selection, bench.Pass(side.label, args.batch_sizes, options), json_path,
                               save=False, root=side.root, python=side.python)
    env = bench.child_env()
    if side.root is not None:  # the side's odperf, not the installed one
        env["PYTHONPATH"] = os.pathsep.join([str(side.root / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    log = json_path.with_suffix(".log")
    print(f"odperf ab: pair {pair}: {side.label}", flush=True)
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=side.root or Path.cwd(), env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=SLOT_TIMEOUT_S)
    if not json_path.is_file():
        raise ResultsError(f"{side.label} pair {pair}: pytest (exit {done.returncode}) wrote no {json_path}; "
                           f"its output is in {log}")
    return json_path


def merge(paths: list[Path], out: Path) -> Path:
    """One saved run from one side's slots: every round of every slot pooled per benchmark; per record the
    worst outcome of any slot, the median of its memory figures and the lowest mAP."""
    from pytest_benchmark.stats import Stats

    docs = [json.loads(p.read_text()) for p in paths]
    records: dict[tuple, list[dict[str, Any]]] = {}
    for doc in docs:
        for rec in doc["odperf"]["records"]:
            records.setdefault(_key(rec), []).append(rec)
    merged_records = {key: _merge_records(recs) for key, recs in records.items()}
    rounds: dict[tuple, list[float]] = {}
    first: dict[tuple, dict[str, Any]] = {}
    for doc in docs:
        for b in doc["benchmarks"]:
            key = _key(b["extra_info"])
            rounds.setdefault(key, []).extend(b["stats"].get("data") or [])
            first.setdefault(key, b)
    benchmarks = []
    for key, b in first.items():
        rec = merged_records[key]
        if rec["outcome"] != "ok":
            continue
        stats = Stats()
        for t in rounds[key]:
            stats.update(t)
        arr = np.asarray(rounds[key])
        rec["time_per_image_s"] = {"mean": float(arr.mean()), "median": float(np.median(arr)),
                                   "p95": float(np.percentile(arr, 95)), "min": float(arr.min()),
                                   "max": float(arr.max())}
        rec["images_timed"] = int(arr.size)
        benchmarks.append({**b, "stats": {**stats.as_dict(), "data": rounds[key]}, "extra_info": rec})
    doc = {**docs[0], "benchmarks": benchmarks,
           "odperf": {**docs[0]["odperf"], "records": list(merged_records.values())}}
    out.write_text(json.dumps(doc, indent=2))
    return out


def _key(rec: dict[str, Any]) -> tuple:
    return rec["device_profile"], rec["model"], rec["batch_size"], rec.get("kind")


def _merge_records(recs: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in recs if r["outcome"] != "ok"]
    out = dict(failed[0] if failed else recs[0])
    for name in ("peak_memory_mb", "model_memory_mb", "runtime_memory_mb"):
        values = [r.get(name) for r in recs if r.get(name) is not None]
        out[name] = float(np.median(values)) if values else None
    maps = [r.get("map") for r in recs if r.get("map") is not None]
    out["map"] = min(maps) if maps else None
    return out


def deployment(baseline: list[Path], candidate: list[Path], threshold: float,
               alpha: float) -> tuple[list[str], list[str]]:
    """Deployment (worker start to a warm model), one figure per slot: one ratio per pair, tested as time is."""
    lines, failures = [], []
    for (_, model, batch), values in sorted(pair_ratios(baseline, candidate, deploy_totals).items()):
        change = sig.compare_pairs(values, threshold, alpha)
        where = f"{model} batch {batch}"
        lines.append(f"deployment: {where}: {change.text()} (one per slot, threshold +{threshold:.0%})")
        if change.regression:
            failures.append(f"FAIL deployment: {where}: {change.text()}")
    return lines, failures


def pair_ratios(baseline: list[Path], candidate: list[Path],
                figure: Callable[[Path], dict[Key, float]]) -> dict[Key, list[float]]:
    """Per (profile, model, batch), each pair's ratio candidate / baseline of one figure of a slot."""
    ratios: dict[Key, list[float]] = {}
    for a, b in zip(baseline, candidate):
        was, now = figure(a), figure(b)
        for key in sorted(set(was) & set(now)):
            if was[key] > 0:
                ratios.setdefault(key, []).append(now[key] / was[key])
    return ratios


def median_times(path: Path) -> dict[Key, float]:
    """A slot's median time per image per case, from pytest-benchmark's stats."""
    out: dict[Key, float] = {}
    for bm in json.loads(path.read_text())["benchmarks"]:
        rec = bm.get("extra_info") or {}
        if rec.get("model") is not None and rec.get("batch_size") is not None:
            out[(rec["device_profile"], rec["model"], int(rec["batch_size"]))] = float(bm["stats"]["median"])
    return out


def _timed_records(path: Path) -> Iterator[tuple[Key, dict[str, Any]]]:
    for rec in json.loads(path.read_text())["odperf"]["records"]:
        if rec["outcome"] == "ok" and rec.get("kind", "timing") == "timing":
            yield (rec["device_profile"], rec["model"], int(rec["batch_size"])), rec


def deploy_totals(path: Path) -> dict[Key, float]:
    return {key: float(rec["deploy_s"]["total"]) for key, rec in _timed_records(path)
            if (rec.get("deploy_s") or {}).get("total") is not None}


def model_memories(path: Path) -> dict[Key, float]:
    return {key: float(rec["model_memory_mb"]) for key, rec in _timed_records(path)
            if rec.get("model_memory_mb") is not None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ab", help="a baseline and a candidate measured interleaved on this machine, then gated",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for label in ("baseline", "candidate"):
        here = "this checkout" if label == "candidate" else "none"
        p.add_argument(f"--{label}-ref", metavar="REF", help=f"git ref of this project to run (default: {here})")
        p.add_argument(f"--{label}-python", metavar="PYTHON",
                       help="the Python (environment) to run it with (default: this one)")
        p.add_argument(f"--{label}-models", metavar="SEL", help="its --odperf-models (default: --models)")
    p.add_argument("--pairs", type=int, default=DEFAULT_SETTINGS["pairs"],
                   help="A/B pairs of runs, alternating order (default: %(default)s)")
    p.add_argument("--models", default="centernet_tiny", help="model selectors (default: %(default)s)")
    p.add_argument("--batch-sizes", default="1,64", help="tiles per model call (default: %(default)s)")
    p.add_argument("--images", type=int, default=5, help="camera images timed per case (default 5)")
    p.add_argument("--devices", default="cpu", help="cpu, gpu or gpu:N (default: cpu)")
    p.add_argument("--accuracy", action="store_true", help="score the timed images: mAP is gated too")
    p.add_argument("--strict", action="store_true",
                   help="any changed outcome or mAP fails (a change that must not change what is measured)")
    p.add_argument("--time-threshold", type=float, default=DEFAULT_SETTINGS["time_threshold"], metavar="FRACTION",
                   help="largest allowed growth of the median time per image, if significant (default: %(default)s)")
    p.add_argument("--deploy-threshold", type=float, default=DEPLOY_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of deployment time, worker start to warm model (default: "
                        "%(default)s: it includes the runtime's import, which varies more than inference)")
    p.add_argument("--memory-threshold", type=float, default=gt.DEFAULT_MEMORY_THRESHOLD, metavar="FRACTION",
                   help="largest allowed growth of the model's own memory (default: %(default)s)")
    p.add_argument("--map-tolerance", type=float, default=gt.DEFAULT_MAP_TOLERANCE, metavar="AP",
                   help="mAP drop allowed across runtime versions; exact on one version (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=DEFAULT_SETTINGS["alpha"], metavar="P",
                   help="significance level of the time tests (default: %(default)s)")
    p.add_argument("--slot-alpha", type=float, default=DEFAULT_SETTINGS["slot_alpha"], metavar="P",
                   help="significance level of the figures measured once per slot, deployment time and the "
                        "model's own memory (default: %(default)s: they spread more than the median of rounds)")
    p.add_argument("--out", default=".benchmarks/ab", help="where the slots' and merged runs go (default: %(default)s)")
    p.add_argument("--ci", action="store_true",
                   help="CI's self-gate settings: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                 CI_SETTINGS.items()) + " --accuracy --strict")
    p.add_argument("--calibrate", type=int, default=None, metavar="N",
                   help="instead of one comparison: N A/A comparisons of HEAD and N of HEAD against HEAD with a "
                        "planted slowdown (--planted-delay) in the worker's timed region; prints the false-alarm "
                        "and detection rates under these thresholds and CI's (odperf.commands.ab.calibrate)")
    p.add_argument("--planted-delay", type=float, default=0.25, metavar="FRACTION",
                   help="--calibrate: the planted slowdown, a fraction of each image's time (default 0.25)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to both sides' pytest (after --)")
    p.set_defaults(func=cmd_ab)
