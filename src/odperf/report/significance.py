"""Is a time change real? Statistics over every round of two runs, for the gate.

A shared machine moves whole runs by more than any threshold worth gating on, and one slow round moves a
mean. So a time change counts only when it is both larger than the threshold and significant:
- the ratio of medians (current / baseline) exceeds ``1 + threshold``, and
- a one-sided Mann-Whitney U test says the current rounds are slower (p < ``alpha``), and
- the bootstrap confidence interval of the ratio of medians lies wholly above 1.
Where the rounds are too few for the test ever to reach ``alpha`` (2 against 2 rounds: p >= 1/6), the
verdict is ``undecided`` and says so; the gate treats an undecided ratio above the threshold as a failure.
The bootstrap is seeded: one pair of runs always gets one verdict.

Rounds of one run are not independent of each other (a run shares its machine's state), so pooling the
rounds of runs made side by side overstates significance. Where the runs come in interleaved pairs
(``odperf ab``), ``compare_pairs`` tests one ratio per pair instead: the geometric mean ratio must exceed
``1 + threshold``, a one-sided t-test on the log ratios must give p < ``alpha`` and the bootstrap interval
over pairs must lie wholly above 1.
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
    rounds: tuple[int, int]  # (baseline, current); for pairs (pairs, pairs)
    verdict: str
    test: str = "rounds"  # "rounds": Mann-Whitney over pooled rounds; "pairs": t-test over pair ratios

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION

    def text(self) -> str:
        b, c = self.rounds
        if self.test == "pairs":
            return (f"geometric mean ratio {self.ratio:.3f} over {b} pairs [{CONFIDENCE:.0%} CI {self.low:.3f}-"
                    f"{self.high:.3f}], paired t-test p={self.p_slower:.3g}: {self.verdict}")
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


MIN_PAIRS = 3  # below this a test over pairs says nothing


def _logs(ratios: Sequence[float]) -> np.ndarray:
    logs = np.log(np.asarray(ratios, dtype=np.float64))
    if logs.size == 0 or not np.all(np.isfinite(logs)):
        raise ValueError(f"pair ratios must be positive, got {list(ratios)}")
    return logs


def geometric_mean(ratios: Sequence[float]) -> float:
    """The mean ratio of pairs: ratios multiply, so their mean is taken in logs (1.25 and 0.8 average to 1)."""
    return float(np.exp(_logs(ratios).mean()))


def compare_pairs(ratios: Sequence[float], threshold: float, alpha: float = DEFAULT_ALPHA) -> TimeChange:
    """The verdict on one candidate/baseline ratio per interleaved pair of runs (of medians, or of a figure
    measured once per run such as deployment time or memory)."""
    from scipy.stats import ttest_1samp

    logs = _logs(ratios)
    ratio = float(np.exp(logs.mean()))  # geometric_mean, on the logs already taken
    if logs.size < MIN_PAIRS:
        return TimeChange(ratio, ratio, ratio, 1.0, (int(logs.size), int(logs.size)), UNDECIDED, test="pairs")
    rng = np.random.default_rng(SEED)
    means = rng.choice(logs, size=(BOOTSTRAP_SAMPLES, logs.size)).mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = (float(np.exp(v)) for v in np.percentile(means, [tail, 100 - tail]))
    if np.ptp(logs) == 0:  # identical ratios: no spread to test; the ratio alone decides
        p_slower = 0.0 if ratio > 1 else 1.0
        p_faster = 0.0 if ratio < 1 else 1.0
    else:
        p_slower = float(ttest_1samp(logs, 0.0, alternative="greater").pvalue)
        p_faster = float(ttest_1samp(logs, 0.0, alternative="less").pvalue)
    if ratio > 1 + threshold and p_slower < alpha and low > 1.0:
        verdict = REGRESSION
    elif ratio > 1 + threshold:
        verdict = NOT_SIGNIFICANT
    elif ratio < 1.0 and high < 1.0 and p_faster < alpha:
        verdict = FASTER
    else:
        verdict = WITHIN
    return TimeChange(ratio, low, high, p_slower, (int(logs.size), int(logs.size)), verdict, test="pairs")
