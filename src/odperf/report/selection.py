"""Choosing among measured models: best batch size, deadlines, instances per device, time/accuracy front.

This is the paper's reasoning made mechanical: Fig. 8 takes each model at the batch size that gives its
fastest time per image and reports that batch's memory; Fig. 10 asks, for a run-time requirement, which is
the most accurate model that still meets it. Deadlines are per camera image and compared with the mean
time per image, as the paper does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from odperf.report.rows import Row, group_rank, model_maps

# The per-image run-time requirements the paper discusses (Fig. 10): 1, 4 and 32 seconds.
PAPER_DEADLINES_S = (1.0, 4.0, 32.0)


@dataclass(frozen=True)
class Best:
    """A model at its fastest batch size on one device profile."""

    row: Row
    capacity_mb: float | None
    scored: Row | None = None  # the row whose mAP is the model's (``rows.model_maps``): often another batch

    @property
    def map(self) -> float | None:
        """The model's measured mAP on this profile, whichever batch size or run kind measured it."""
        return self.scored.map if self.scored else self.row.map

    @property
    def footprint_mb(self) -> float | None:
        """What one copy needs of the device's memory: the whole peak, or on an emulated CPU device, whose
        cap is set above the runtime, the model's own memory (the cap's own terms)."""
        return self.row.model_mb if self.row.cap_above_runtime else self.row.peak_mb

    @property
    def instances(self) -> int | None:
        """How many copies of the model fit in the device's memory at this batch size."""
        if not self.capacity_mb or not self.footprint_mb:
            return None
        return int(math.floor(self.capacity_mb / self.footprint_mb))


@dataclass(frozen=True)
class DeadlineChoice:
    """For one profile and deadline: the models that meet it and the most accurate of them."""

    profile: str
    deadline_s: float
    meeting: tuple[Best, ...]
    most_accurate: Best | None


def best_batches(rows: Iterable[Row], capacity_mb: dict[str, float | None] | None = None) -> list[Best]:
    """Per (profile, model) the ok row with the lowest mean time per image; ties go to the smaller batch.
    Its mAP is the model's, measured at whichever batch size scored it."""
    rows = list(rows)
    chosen: dict[tuple[str, str], Row] = {}
    for row in rows:
        if not row.ok:
            continue
        key = (row.profile, row.model)
        cur = chosen.get(key)
        if cur is None or (row.mean_s, row.batch_size) < (cur.mean_s, cur.batch_size):
            chosen[key] = row
    caps = capacity_mb or {}
    maps = model_maps(rows)
    return [Best(row, caps.get(row.profile), row if row.map is not None else maps.get(key))
            for key, row in sorted(chosen.items())]


def accuracy_key(best: Best) -> tuple[float, int]:
    """Sort key, most accurate first: measured mAP when known, else the mAP group."""
    m = best.map
    return (-(m if m is not None else -1.0), group_rank(best.row.map_group))


def has_accuracy(best: Best) -> bool:
    return best.map is not None or group_rank(best.row.map_group) < group_rank(None)


def deadline_choices(bests: Sequence[Best], deadlines_s: Iterable[float],
                     profiles: Iterable[str] = ()) -> list[DeadlineChoice]:
    """For each profile (those of ``bests`` plus ``profiles``, where nothing may have run ok) and deadline,
    the models whose best mean time per image meets it."""
    out = []
    profiles = sorted({b.row.profile for b in bests} | set(profiles))
    for profile in profiles:
        mine = [b for b in bests if b.row.profile == profile]
        for deadline in sorted(set(float(d) for d in deadlines_s)):
            meeting = tuple(sorted((b for b in mine if b.row.mean_s <= deadline), key=lambda b: b.row.mean_s))
            ranked = sorted((b for b in meeting if has_accuracy(b)), key=accuracy_key)
            out.append(DeadlineChoice(profile, deadline, meeting, ranked[0] if ranked else None))
    return out


def pareto_front(bests: Sequence[Best]) -> list[Best]:
    """Per profile, the models no other model beats on both time and mAP, fastest first.

    Models without a measured mAP cannot be placed on the front and are left out.
    """
    out = []
    for profile in sorted({b.row.profile for b in bests}):
        mine = sorted(
            (b for b in bests if b.row.profile == profile and b.map is not None),
            key=lambda b: (b.row.mean_s, -b.map),
        )
        best_map = -math.inf
        for b in mine:  # fastest first: a point is on the front if it beats every faster one on mAP
            if b.map > best_map:
                out.append(b)
                best_map = b.map
    return out
