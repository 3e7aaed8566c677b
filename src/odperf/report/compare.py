"""Runs from different hardware side by side, matched by (model, batch size) of their timing records.

Ratios are B/A: a time ratio below 1 means B is faster. The overall speedup of B over A is the geometric
mean of A/B time over the rows both ran ok, the usual summary of ratios (it does not let one large model
dominate, and A->B->C speedups multiply). Models whose OOM batches differ are listed apart, since a bigger
card often turns an OOM into a result, which no ratio can show.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from statistics import geometric_mean
from typing import Sequence

from tabulate import tabulate

from odperf.report.rows import Row, rows_of
from odperf.results import SavedRun

TIME_METRICS = ("mean", "median")


@dataclass(frozen=True)
class PairRow:
    model: str
    batch_size: int
    a: Row | None
    b: Row | None
    time_a: float | None
    time_b: float | None

    @property
    def both_ok(self) -> bool:
        return bool(self.a and self.b and self.a.ok and self.b.ok and self.time_a and self.time_b)

    @property
    def time_ratio(self) -> float | None:
        return self.time_b / self.time_a if self.both_ok else None

    @property
    def memory_ratio(self) -> float | None:
        ma, mb = (self.a.peak_mb if self.a else None), (self.b.peak_mb if self.b else None)
        return mb / ma if ma and mb else None

    @property
    def faster(self) -> str | None:
        """'A', 'B' or '=' for rows both ran ok; None otherwise."""
        if not self.both_ok:
            return None
        return "=" if self.time_a == self.time_b else ("B" if self.time_b < self.time_a else "A")


@dataclass(frozen=True)
class OomChange:
    model: str
    oom_a: tuple[int, ...]
    oom_b: tuple[int, ...]


@dataclass
class Comparison:
    a: SavedRun
    b: SavedRun
    metric: str
    rows: list[PairRow]

    @property
    def speedup(self) -> float | None:
        """Geometric-mean speedup of B over A (A time / B time) over rows both ran ok."""
        ratios = [r.time_a / r.time_b for r in self.rows if r.both_ok]
        return geometric_mean(ratios) if ratios else None

    @property
    def rows_both_ok(self) -> int:
        return sum(r.both_ok for r in self.rows)

    @property
    def oom_changes(self) -> list[OomChange]:
        out = []
        for model in sorted({r.model for r in self.rows}):
            mine = [r for r in self.rows if r.model == model]
            if not (any(r.a for r in mine) and any(r.b for r in mine)):
                continue  # a model only one run measured has no OOM status to compare
            oa = tuple(r.batch_size for r in mine if r.a and r.a.outcome == "oom")
            ob = tuple(r.batch_size for r in mine if r.b and r.b.outcome == "oom")
            if oa != ob:
                out.append(OomChange(model, oa, ob))
        return out

    def summary(self) -> str:
        a, b = self.a.label, self.b.label
        if self.speedup is None:
            return f"{b} vs {a}: no (model, batch) ran ok on both; nothing to compare"
        s = self.speedup
        word = f"{s:.3g}x faster" if s >= 1 else f"{1 / s:.3g}x slower"
        return (f"{b} is {word} than {a} (geometric mean of {self.metric} time per image over "
                f"{self.rows_both_ok} (model, batch) pairs both ran ok)")


def compare_runs(a: SavedRun, b: SavedRun, metric: str = "mean") -> Comparison:
    if metric not in TIME_METRICS:
        raise ValueError(f"metric must be one of {TIME_METRICS}")
    ra, rb = _by_model_batch(a), _by_model_batch(b)
    pick = (lambda r: r.mean_s) if metric == "mean" else (lambda r: r.median_s if r.median_s is not None else r.mean_s)
    rows = [
        PairRow(model, batch, ra.get((model, batch)), rb.get((model, batch)),
                pick(ra[(model, batch)]) if (model, batch) in ra else None,
                pick(rb[(model, batch)]) if (model, batch) in rb else None)
        for model, batch in sorted(set(ra) | set(rb))
    ]
    return Comparison(a, b, metric, rows)


def _by_model_batch(run: SavedRun) -> dict[tuple[str, int], Row]:
    """Rows of the run's own profile by (model, batch); rows of another profile the run also measured (the
    cpu of a GPU machine) as ``model (profile)``, so two devices of one run never overwrite each other."""
    return {(r.model if r.profile == run.profile else f"{r.model} ({r.profile})", r.batch_size): r
            for r in rows_of(run)}


HEADERS = ["model", "batch", "outcome A", "outcome B", "s/img A", "s/img B", "time B/A", "peak MB A",
           "peak MB B", "memory B/A", "faster"]


def table_rows(c: Comparison) -> list[list]:
    return [
        [r.model, r.batch_size, _outcome(r.a), _outcome(r.b),
         r.time_a, r.time_b, r.time_ratio, r.a.peak_mb if r.a else None, r.b.peak_mb if r.b else None,
         r.memory_ratio, r.faster]
        for r in c.rows
    ]


def render(c: Comparison, markdown: bool = False) -> str:
    body = tabulate(table_rows(c), headers=HEADERS, tablefmt="github" if markdown else "simple",
                    floatfmt=["", "", "", "", ".4g", ".4g", ".3g", ".0f", ".0f", ".3g", ""], missingval="-")
    lines = [f"A = {c.a.label} ({c.a.path}), B = {c.b.label} ({c.b.path})", body, c.summary()]
    for ch in c.oom_changes:
        lines.append(f"OOM changed: {ch.model}: A oom at batch {_batches(ch.oom_a)}, "
                     f"B oom at batch {_batches(ch.oom_b)}")
    lines += caveats(c)
    if markdown:
        return (f"## {c.b.label} vs {c.a.label}\n\n{lines[0]}\n\n{body}\n\n{lines[2]}\n\n"
                + "".join(f"- {ln}\n" for ln in lines[3:]))
    return "\n".join(lines)


def write_csv(comparisons: Sequence[Comparison], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run A", "run B", *HEADERS])
        for c in comparisons:
            for row in table_rows(c):
                w.writerow([c.a.label, c.b.label, *("" if v is None else v for v in row)])
    return p


def caveats(c: Comparison) -> list[str]:
    """A line per compared row whose figure was not taken as an idle machine at full clocks takes it: the
    rest of the machine busy while it was timed (``load``), or the GPU's clocks held below their maximum
    (a clock-event reason other than idle: a power or thermal cap, a slowdown). Such a ratio mixes the
    hardware with what happened to it."""
    out = []
    for r in c.rows:
        if not r.both_ok:
            continue
        said = [f"{side}: {why}" for side, row in (("A", r.a), ("B", r.b)) for why in _not_idle(row)]
        if said:
            out.append(f"CAVEAT: {r.model} batch {r.batch_size}: " + "; ".join(said))
    return out


def _not_idle(row: Row | None) -> list[str]:
    from odperf.measure.load import describe
    from odperf.report.gpu import held_reasons, reasons_text

    if row is None:
        return []
    out = [describe(row.load)] if row.load and row.load.get("loaded") else []
    held = held_reasons(row.gpu_state)
    if held:
        out.append(f"clocks held ({reasons_text(held)} of the GPU's samples)")
    return out


def _outcome(row: Row | None) -> str:
    if row is None:
        return "absent"
    return row.outcome or "not timed"


def _batches(bs: tuple[int, ...]) -> str:
    return ", ".join(map(str, bs)) if bs else "none"
