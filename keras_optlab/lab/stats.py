"""Statistics over seeds: confidence intervals and the pairwise test.

- **Confidence interval of a mean** over n seeds: Student's t,
  `mean ± t(1 − α/2, n − 1) · s / √n` with `s` the sample standard deviation
  (n − 1 in the denominator). It needs n ≥ 2; with one seed there is no
  interval (NaN).
- **Can two candidates be told apart?** Welch's t-test (unequal variances)
  on their per-seed values, two-sided, at level α = 0.05:
  `t = (m₁ − m₂) / √(s₁²/n₁ + s₂²/n₂)` with Welch–Satterthwaite degrees of
  freedom `ν = (s₁²/n₁ + s₂²/n₂)² / ((s₁²/n₁)²/(n₁−1) + (s₂²/n₂)²/(n₂−1))`.
  It does not use the pairing of seeds (the same seed gives both candidates
  the same initial weights and batches), so it errs on the side of "cannot
  tell apart". When both samples have no spread at all the test is
  undefined: equal means are "cannot tell apart" (p = 1), different ones are
  told apart (p = 0).

scipy (installed with scikit-learn, a dependency of the lab) supplies the
t distribution.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
ALPHA = 0.05


def t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """The `probability` quantile of Student's t with the given degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(probability, degrees_of_freedom))


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean of n values with a confidence interval.

    Attributes:
        mean: The sample mean.
        half_width: Half the interval's width (NaN for fewer than 2 values).
        n: Number of values.
        std: Sample standard deviation (n − 1 denominator; NaN for n < 2).
    """

    mean: float
    half_width: float
    n: int
    std: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def to_dict(self) -> dict[str, float]:
        return {
            "mean": self.mean, "ci_low": self.low, "ci_high": self.high,
            "ci_half_width": self.half_width, "std": self.std, "n": self.n,
        }


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` with a Student-t confidence interval (see the module)."""
    array = np.asarray(list(values), dtype=float)
    n = int(array.size)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan)
    mean = float(array.mean())
    if n < 2:
        return Interval(mean, math.nan, n, math.nan)
    std = float(array.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, half, n, std)


@dataclasses.dataclass(frozen=True)
class WelchResult:
    """Welch's t-test of two samples.

    Attributes:
        difference: mean(a) − mean(b).
        t: The statistic (±inf when both samples have no spread).
        degrees_of_freedom: Welch–Satterthwaite ν (NaN when undefined).
        p_value: Two-sided p-value.
        distinguishable: `p_value < alpha`.
    """

    difference: float
    t: float
    degrees_of_freedom: float
    p_value: float
    distinguishable: bool

    def to_dict(self) -> dict[str, float | bool]:
        return dataclasses.asdict(self)


def welch_test(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> WelchResult:
    """Welch's two-sided t-test; both samples need at least 2 values."""
    from scipy import stats

    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's t-test needs at least 2 values per sample.")
    difference = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    standard_error = math.sqrt(vx + vy)
    if standard_error == 0.0:
        p = 1.0 if difference == 0.0 else 0.0
        t = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return WelchResult(difference, t, math.nan, p, p < alpha)
    t = difference / standard_error
    nu = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    p = float(2.0 * stats.t.sf(abs(t), nu))
    return WelchResult(difference, float(t), float(nu), p, p < alpha)
