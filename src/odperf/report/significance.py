"""Is a change real? A test over interleaved pairs of runs, for the gate of ``odperf ab``.

A shared machine moves whole runs by more than any threshold worth gating on, and the rounds of one run
are not independent of each other (a run shares its machine's state), so pooling the rounds of two runs
overstates significance. Where the runs come in interleaved pairs (``odperf ab``), ``compare_pairs`` tests
one ratio per pair: the geometric mean ratio must exceed ``1 + threshold``, a one-sided t-test on the log
ratios must give p < ``alpha`` and the bootstrap interval over pairs (seeded: one set of pairs, one
verdict) must lie wholly above 1. Two saved runs, one per side, are tested against the known noise between
processes instead (``odperf.report.gate_noise``).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """The comparison over pairs: geometric mean ratio, its interval, the test, the verdict."""

    ratio: float
    low: float  # bootstrap confidence interval of the ratio
    high: float
    p_slower: float  # one-sided paired t-test: the current side slower
    rounds: tuple[int, int]  # (pairs, pairs)
    verdict: str
    test: str = "pairs"

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION

    def text(self) -> str:
        return (f"geometric mean ratio {self.ratio:.3f} over {self.rounds[0]} pairs [{CONFIDENCE:.0%} CI "
                f"{self.low:.3f}-{self.high:.3f}], paired t-test p={self.p_slower:.3g}: {self.verdict}")


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
