"""``odperf ab``'s verdict on measured slots: each side's slots pooled, time and the once-per-slot figures
(deployment, the model's own memory) tested over the pairs, outcomes and mAP by the gate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Iterator

from odperf.commands.ab.pooling import merge
from odperf.report import gate as gt
from odperf.report import significance as sig
from odperf.results import TIMING, RunRecord, SavedRun, load_run

Key = tuple[str, str, int]  # (device profile, model, batch size), as the gate keys its rows


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
    """A slot's median time per image per timed case, from pytest-benchmark's stats."""
    run = load_run(path)
    return {key: float(run.stats[rec.key]["median"]) for key, rec in _timed_records(path, run)
            if (run.stats.get(rec.key) or {}).get("median") is not None}


def _timed_records(path: Path, run: SavedRun | None = None) -> Iterator[tuple[Key, RunRecord]]:
    for rec in (run or load_run(path)).records:
        if rec.outcome == "ok" and rec.kind == TIMING:
            yield (rec.device_profile, rec.model, int(rec.batch_size)), rec


def deploy_totals(path: Path) -> dict[Key, float]:
    return {key: float(rec.deploy_s["total"]) for key, rec in _timed_records(path)
            if rec.deploy_s.get("total") is not None}


def model_memories(path: Path) -> dict[Key, float]:
    return {key: float(rec.model_memory_mb) for key, rec in _timed_records(path)
            if rec.model_memory_mb is not None}


