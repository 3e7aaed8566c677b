"""Is a time change real? Statistics over every round of two runs, for the gate.

A shared machine moves whole runs by more than any threshold worth gating on, and one slow round moves a
mean. So a time change counts only when it is both larger than the threshold and significant:
- the ratio of medians (current / baseline) exceeds ``1 + threshold``, and
- a one-sided Mann-Whitney U test says the current rounds are slower (p < ``alpha``), and
- the bootstrap confidence interval of the ratio of medians lies wholly above 1.
Where the rounds are too few for the test ever to reach ``alpha`` (2 against 2 rounds: p >= 1/6), the
verdict is ``undecided`` and says so; the gate treats an undecided ratio above the threshold as a failure.
The bootstrap is seeded: one pair of runs always gets one verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Sequence

import numpy as np

DEFAULT_ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
SEED = 16

# verdicts
REGRESSION = "regression"
NOT_SIGNIFICANT = "above the threshold, not significant"
WITHIN = "within the threshold"
FASTER = "faster"
UNDECIDED = "undecided: too few rounds for the test to ever be significant"


@dataclass(frozen=True)
class TimeChange:
    """The comparison of one measurement's rounds: ratio of medians, its interval, the test, the verdict."""

    ratio: float
    low: float  # bootstrap confidence interval of the ratio
    high: float
    p_slower: float  # one-sided Mann-Whitney U: current rounds slower than the baseline's
    rounds: tuple[int, int]  # (baseline, current)
    verdict: str

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION

    def text(self) -> str:
        b, c = self.rounds
        return (f"ratio {self.ratio:.3f} [{CONFIDENCE:.0%} CI {self.low:.3f}-{self.high:.3f}], "
                f"Mann-Whitney p={self.p_slower:.3g}, rounds {b}/{c}: {self.verdict}")


def min_p(n1: int, n2: int) -> float:
    """The smallest one-sided p a rank test of n1 against n2 rounds can give (all of one side above)."""
    return 1.0 / comb(n1 + n2, n1)


def compare_rounds(baseline: Sequence[float], current: Sequence[float], threshold: float,
                   alpha: float = DEFAULT_ALPHA) -> TimeChange:
    """The verdict on ``current`` rounds against ``baseline`` rounds (seconds, one per round)."""
    from scipy.stats import mannwhitneyu

    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("compare_rounds needs at least one round on each side")
    ratio = float(np.median(c) / np.median(b))
    low, high = bootstrap_ratio(b, c)
    p = float(mannwhitneyu(c, b, alternative="greater").pvalue) if b.size > 1 or c.size > 1 else 1.0
    if min_p(b.size, c.size) >= alpha:
        verdict = UNDECIDED
    elif ratio > 1 + threshold and p < alpha and low > 1.0:
        verdict = REGRESSION
    elif ratio > 1 + threshold:
        verdict = NOT_SIGNIFICANT
    elif ratio < 1.0 and high < 1.0 and float(mannwhitneyu(c, b, alternative="less").pvalue) < alpha:
        verdict = FASTER
    else:
        verdict = WITHIN
    return TimeChange(ratio, low, high, p, (int(b.size), int(c.size)), verdict)


def bootstrap_ratio(b: np.ndarray, c: np.ndarray, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of median(c) / median(b), each side resampled on its own."""
    rng = np.random.default_rng(SEED)
    mb = np.median(rng.choice(b, size=(samples, b.size)), axis=1)
    mc = np.median(rng.choice(c, size=(samples, c.size)), axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(mc / mb, [tail, 100 - tail])
    return float(lo), float(hi)
