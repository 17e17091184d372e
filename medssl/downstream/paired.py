"""Paired comparison of two models scored on the same subsets: the mean difference and its
confidence interval (Student's t over the paired differences, scipy's ``ttest_rel``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import ttest_rel

MIN_PAIRS = 2  # a t interval needs a spread, so at least two pairs


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of ``values - baseline`` over ``n`` pairs, and its interval [``low``, ``high``]
    (NaN with fewer than two pairs)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def enough_pairs(self) -> bool:
        return self.n >= MIN_PAIRS

    @property
    def above(self) -> bool:
        """The whole interval is above zero."""
        return self.low > 0

    @property
    def below(self) -> bool:
        return self.high < 0

    @property
    def verdict(self) -> str:
        """'better', 'worse', 'no difference' (the interval holds zero) or 'too few pairs'."""
        if not self.enough_pairs:
            return "too few pairs"
        return "better" if self.above else "worse" if self.below else "no difference"

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:+.3f} (n={self.n})"
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_difference(values, baseline, confidence: float = 0.95) -> PairedDifference:
    """``values[i]`` and ``baseline[i]`` are scores on the same subset / seed ``i`` (no NaN:
    leave incomplete pairs out first)."""
    values, baseline = np.asarray(values, float), np.asarray(baseline, float)
    if values.shape != baseline.shape:
        raise ValueError(f"paired scores need the same shape: {values.shape} vs {baseline.shape}")
    if np.isnan(values).any() or np.isnan(baseline).any():
        raise ValueError("paired scores hold NaN: leave the incomplete pairs out first")
    diff = values - baseline
    n, mean = len(diff), float(diff.mean()) if len(diff) else float("nan")
    if n < MIN_PAIRS:
        return PairedDifference(mean, float("nan"), float("nan"), n, confidence)
    if np.allclose(diff, mean, rtol=1e-9, atol=1e-12):  # every pair differs by the same amount
        return PairedDifference(mean, mean, mean, n, confidence)
    low, high = ttest_rel(values, baseline).confidence_interval(confidence_level=confidence)
    return PairedDifference(mean, float(low), float(high), n, confidence)
