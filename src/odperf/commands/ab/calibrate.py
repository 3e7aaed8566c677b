"""``odperf ab --calibrate N``: how often the A/B gate cries wolf, and how often it catches a real slowdown.

A/A: both sides are this checkout's HEAD, so every failure is a false alarm. Planted: the candidate is HEAD
plus a busy wait inside the worker's timed region of DELAY x each image's own time (a slowdown of the
measured path by that fraction), committed on a detached temporary tree, never on a branch. Each of the
2N comparisons is a full ``odperf ab`` run of the given selection, alternating A/A and planted so that
drift over the calibration falls on both. Every comparison's slots are then gated under each setting: the
thresholds given, CI's self-gate (``CI_SETTINGS``) and ``odperf ab``'s defaults, each on the first of
the --pairs measured that it asks for (what a run of that many pairs measures: A B, B A, ...), so one
calibration states every rate. ``calibration.md`` in --out holds each comparison's pair ratios and
verdicts, and the rates.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from odperf.commands.ab.settings import CI_SETTINGS, DEFAULT_SETTINGS
from odperf.commands.ab.sides import git, measure_sides
from odperf.commands.ab.verdict import gate_slots, median_times, pair_ratios
from odperf.errors import OdperfError
from odperf.report import significance as sig

WORKER = "src/odperf/engine/portable.py"  # the worker core, whose timed region every image goes through
TIMED = "            seconds = time.perf_counter() - t0\n"  # the end of an image's timed region


@dataclass
class Comparison:
    """One full A/B run: its kind, the geometric mean of its pair ratios per case, its verdict per setting."""

    kind: str  # "A/A" or "planted"
    number: int
    ratios: dict[tuple[str, int], float]
    failed: dict[str, list] = field(default_factory=dict)  # setting name -> gate failures (empty: pass)


def planted_commit(here: Path, delay: float) -> str:
    """A commit of HEAD whose worker spins ``delay`` x each image's time inside the timed region."""
    with tempfile.TemporaryDirectory(prefix="odperf-planted-") as tmp:
        tree = Path(tmp) / "tree"
        git(here, "worktree", "add", "--detach", str(tree), "HEAD")
        try:
            worker = tree / WORKER
            text = worker.read_text(encoding="utf-8")
            if TIMED not in text:
                raise OdperfError(f"{WORKER}: the end of the timed region ({TIMED.strip()!r}) is not there any "
                                  f"more; update odperf.commands.ab.calibrate.TIMED")
            spin = (f"            _end = time.perf_counter() + {delay} * (time.perf_counter() - t0)\n"
                    f"            while time.perf_counter() < _end:\n                pass\n")
            worker.write_text(text.replace(TIMED, spin + TIMED), encoding="utf-8")
            git(tree, "-c", "user.name=odperf calibration", "-c", "user.email=calibration@localhost",
                    "commit", "-qam", f"planted: the worker spins {delay:.0%} of each image's time")
            return git(tree, "rev-parse", "HEAD").strip()
        finally:
            git(here, "worktree", "remove", "--force", str(tree))


def settings(args: argparse.Namespace) -> tuple[dict[str, argparse.Namespace], list[str]]:
    """The gate settings every comparison is judged under: the ones given, CI's self-gate's and odperf ab's
    defaults, each on its own first pairs of the --pairs measured; and a line for each that needs more."""
    judged: dict[str, argparse.Namespace] = {}
    skipped: list[str] = []
    seen: list[dict] = []
    for label, values in (("given", {}), ("CI's", CI_SETTINGS), ("default", DEFAULT_SETTINGS)):
        setting = argparse.Namespace(**{**vars(args), **values})
        if vars(setting) in seen:
            continue
        seen.append(vars(setting))
        name = (f"{label} (+{setting.time_threshold:.0%}, alpha {setting.alpha:g}, slot alpha "
                f"{setting.slot_alpha:g}, {setting.pairs} pairs)")
        if setting.batch_sizes != args.batch_sizes:
            skipped.append(f"{name}: not judged, it runs batch sizes {setting.batch_sizes} (give --batch-sizes "
                           f"{setting.batch_sizes})")
        elif setting.pairs > args.pairs:
            skipped.append(f"{name}: not judged, it needs {setting.pairs} pairs (give --pairs {setting.pairs})")
        else:
            judged[name] = setting
    return judged, skipped


def geometric_means(slots: dict[str, list[Path]]) -> dict[tuple[str, int], float]:
    return {(model, batch): sig.geometric_mean(values) for (_, model, batch), values
            in pair_ratios(slots["baseline"], slots["candidate"], median_times).items()}


def first_pairs(slots: dict[str, list[Path]], pairs: int) -> dict[str, list[Path]]:
    """The slots of the first ``pairs`` pairs: what a run of that many pairs would have measured (A B, B A...)."""
    return {label: paths[:pairs] for label, paths in slots.items()}


def calibrate(args: argparse.Namespace) -> int:
    runs = args.calibrate
    if runs < 1:
        raise OdperfError(f"--calibrate needs at least 1 comparison of each kind, got {runs}")
    if args.baseline_ref or args.candidate_ref or args.baseline_python or args.baseline_models:
        raise OdperfError("--calibrate chooses both sides itself (HEAD against HEAD, and against HEAD with a "
                          "planted slowdown): leave out --baseline-*/--candidate-ref")
    here = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    out = Path(args.out).resolve() / "calibration"
    planted = planted_commit(here, args.planted_delay)
    judged, skipped = settings(args)
    done: list[Comparison] = []
    t0 = time.monotonic()
    for k in range(1, runs + 1):
        for kind, candidate in (("A/A", "HEAD"), ("planted", planted)):
            one = argparse.Namespace(**{**vars(args), "baseline_ref": "HEAD", "candidate_ref": candidate,
                                        "out": str(out / f"{'aa' if kind == 'A/A' else 'planted'}-{k}")})
            slots = measure_sides(one)
            comparison = Comparison(kind, k, geometric_means(slots))
            for name, setting in judged.items():  # fewer pairs than measured: their pooled runs apart
                where = Path(one.out) / ("" if setting.pairs == args.pairs else f"first-{setting.pairs}-pairs")
                where.mkdir(exist_ok=True)
                comparison.failed[name] = gate_slots(first_pairs(slots, setting.pairs), setting, where,
                                                        show=False)
            done.append(comparison)
            print(f"odperf ab --calibrate: {kind} {k}: " + "; ".join(
                f"{name}: {'FAIL' if failed else 'pass'}" for name, failed in comparison.failed.items())
                + "; ratios " + ", ".join(f"{m} b{b} {r:.3f}" for (m, b), r in sorted(comparison.ratios.items())),
                flush=True)
    minutes = (time.monotonic() - t0) / 60
    text = report(done, list(judged), args, minutes, skipped)
    (out / "calibration.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def report(done: list[Comparison], names: list[str], args: argparse.Namespace, minutes: float,
           skipped: list[str]) -> str:
    """The rates per setting, then every comparison: its ratios and verdicts."""
    aa = [c for c in done if c.kind == "A/A"]
    planted = [c for c in done if c.kind == "planted"]
    lines = [f"# odperf ab calibration: {len(aa)} A/A and {len(planted)} planted +{args.planted_delay:.0%}",
             "", f"Selection: models {args.models}, batch sizes {args.batch_sizes}, {args.images} images per case, "
             f"{args.pairs} pairs measured (each setting judged on its first pairs), devices {args.devices}"
             f"{', accuracy' if args.accuracy else ''}"
             f"{', strict' if args.strict else ''}; {minutes:.1f} min in all.", "",
             "| gate setting | false alarms (A/A) | planted slowdown caught |", "|---|---|---|"]
    for name in names:
        alarms = sum(bool(c.failed[name]) for c in aa)
        caught = sum(bool(c.failed[name]) for c in planted)
        lines.append(f"| {name} | {alarms}/{len(aa)} | {caught}/{len(planted)} |")
    lines += ([""] + [f"- {line}" for line in skipped]) if skipped else []
    lines += ["", "| comparison | geometric mean of the pair ratios (all pairs) | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for c in done:
        ratios = ", ".join(f"{m} b{b} {r:.3f}" for (m, b), r in sorted(c.ratios.items()))
        # each verdict whole: a cut one could misstate a figure (p=9.19e-06 cut to p=9.19)
        verdicts = " | ".join("; ".join(map(str, c.failed[n])) or "pass" for n in names)
        lines.append(f"| {c.kind} {c.number} | {ratios} | {verdicts} |")
    return "\n".join(lines) + "\n"
