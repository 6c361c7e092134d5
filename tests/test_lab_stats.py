"""Confidence intervals and Welch's test, checked against numbers computed
here without scipy: a printed t table and a NumPy integral of the t density."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keras_optlab.lab import stats

# Two-sided 95 % critical values of Student's t (the 0.975 quantile), as
# printed in statistical tables, by degrees of freedom.
T_TABLE_975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 9: 2.2621572}


def t_density(x, nu):
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return np.exp(log_c - (nu + 1) / 2 * np.log1p(x * x / nu))


def two_sided_p(t, nu):
    """1 − 2∫₀^|t| f(x) dx by Simpson's rule on a fine grid."""
    x = np.linspace(0.0, abs(t), 200_001)
    f = t_density(x, nu)
    h = x[1] - x[0]
    integral = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 1.0 - 2.0 * integral


@pytest.mark.parametrize("df", sorted(T_TABLE_975))
def test_t_quantile_matches_the_printed_table(df):
    assert stats.t_quantile(0.975, df) == pytest.approx(T_TABLE_975[df], abs=1e-6)


@pytest.mark.parametrize("values", [[0.95, 0.97, 0.96], [0.9, 0.91, 0.95, 0.97, 0.93], [1.0, 3.0]])
def test_mean_interval_is_t_times_standard_error(values):
    interval = stats.mean_interval(values)
    x = np.asarray(values)
    n = x.size
    s = np.sqrt(((x - x.mean()) ** 2).sum() / (n - 1))
    half = T_TABLE_975[n - 1] * s / np.sqrt(n)
    assert interval.mean == pytest.approx(x.mean())
    assert interval.half_width == pytest.approx(half, rel=1e-6)
    assert interval.low == pytest.approx(x.mean() - half, rel=1e-6)
    assert interval.n == n


def test_one_value_has_no_interval():
    interval = stats.mean_interval([0.9])
    assert interval.mean == 0.9 and math.isnan(interval.half_width)


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.95, 0.96, 0.97], [0.90, 0.93, 0.91]),
        ([0.95, 0.96, 0.97, 0.96], [0.94, 0.97, 0.90]),
        ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.1]),
    ],
)
def test_welch_matches_an_independent_computation(a, b):
    x, y = np.asarray(a), np.asarray(b)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    t = (x.mean() - y.mean()) / np.sqrt(va + vb)
    nu = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    result = stats.welch_test(a, b)
    assert result.t == pytest.approx(t, rel=1e-9)
    assert result.degrees_of_freedom == pytest.approx(nu, rel=1e-9)
    assert result.p_value == pytest.approx(two_sided_p(t, nu), abs=1e-7)
    assert result.distinguishable == (two_sided_p(t, nu) < 0.05)


def test_welch_tells_clear_differences_apart_and_not_noise():
    assert stats.welch_test([0.95, 0.96, 0.97], [0.80, 0.81, 0.79]).distinguishable
    assert not stats.welch_test([0.95, 0.96, 0.97], [0.96, 0.95, 0.975]).distinguishable


def test_welch_without_spread_compares_the_means():
    assert stats.welch_test([0.9, 0.9], [0.9, 0.9]).p_value == 1.0
    assert stats.welch_test([0.9, 0.9], [0.8, 0.8]).distinguishable


def test_welch_needs_two_values_per_side():
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_test([0.9], [0.8, 0.7])
