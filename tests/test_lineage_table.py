"""The coefficient table of docs/switching.md ("One update for the whole
lineage"), written out in NumPy, reproduces Keras' own SGD, momentum,
Nesterov, RMSprop and Adam: the table a reader checks by hand is the one the
fused update is built on."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import apply_trajectory

ETA, MU, RHO, BETA_1, BETA_2, EPSILON = 0.01, 0.9, 0.9, 0.9, 0.999, 1e-7


def _row(method: str, t: int) -> dict[str, float]:
    """The documented row at step t (1-based); a kept slot's b and c,
    None for a slot the method does not keep."""
    if method == "sgd":
        return dict(b1=None, c1=None, b2=None, c2=None, k1=0.0, k2=ETA, a=0.0, e=1.0, f=0.0)
    if method == "momentum":
        return dict(b1=MU, c1=1.0, b2=None, c2=None, k1=ETA, k2=0.0, a=0.0, e=1.0, f=0.0)
    if method == "nesterov":
        return dict(b1=MU, c1=1.0, b2=None, c2=None, k1=ETA * MU, k2=ETA, a=0.0, e=1.0, f=0.0)
    if method == "rmsprop":
        return dict(b1=None, c1=None, b2=RHO, c2=1 - RHO, k1=0.0, k2=ETA, a=1.0, e=EPSILON, f=0.0)
    alpha = ETA * np.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
    return dict(b1=BETA_1, c1=1 - BETA_1, b2=BETA_2, c2=1 - BETA_2, k1=alpha, k2=0.0, a=1.0, e=0.0, f=EPSILON)


def _table_trajectory(method, theta, gradient_fn, steps):
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t in range(1, steps + 1):
        g = gradient_fn(theta)
        row = _row(method, t)
        if row["b1"] is not None:
            m = row["b1"] * m + row["c1"] * g
        if row["b2"] is not None:
            v = row["b2"] * v + row["c2"] * g * g
        theta = theta - (row["k1"] * m + row["k2"] * g) / (np.sqrt(row["a"] * v + row["e"]) + row["f"])
        out.append(theta)
    return np.array(out)


KERAS = {
    "sgd": lambda: keras.optimizers.SGD(ETA),
    "momentum": lambda: keras.optimizers.SGD(ETA, momentum=MU),
    "nesterov": lambda: keras.optimizers.SGD(ETA, momentum=MU, nesterov=True),
    "rmsprop": lambda: keras.optimizers.RMSprop(ETA, rho=RHO, epsilon=EPSILON),
    "adam": lambda: keras.optimizers.Adam(ETA, beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON),
}


@pytest.mark.parametrize("method", list(KERAS))
def test_documented_row_reproduces_keras(method):
    # A quadratic with very different curvatures plus a sine, so that the
    # scaled methods and the momentum ones take visibly different paths.
    scales = np.array([4.0, 1.0, 0.25, 0.05])

    def gradient(theta):
        return scales * theta + 0.3 * np.cos(3 * theta)

    theta0 = np.array([1.0, -2.0, 0.5, 3.0])
    expected = _table_trajectory(method, theta0, gradient, 60)
    actual = apply_trajectory(KERAS[method](), theta0, gradient, 60)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # The methods differ on this problem, so a wrong row could not pass.
    other = "adam" if method != "adam" else "momentum"
    assert np.max(np.abs(_table_trajectory(other, theta0, gradient, 60) - expected)) > 1e-2


def test_an_idle_row_neither_reads_nor_writes_v():
    """After a switch to SGD with momentum (a row with `v_idle`), v is left
    exactly as it was and is not read: a NaN left in it does not reach the
    weights, where a multiplication by a zero coefficient would spread it."""
    from keras import ops

    from keras_optlab.optimizers import _lineage

    theta = np.array([1.0, -2.0, 0.5], "float32")
    m = np.array([0.1, 0.2, -0.3], "float32")
    v = np.array([np.nan, 4.0, 1e30], "float32")
    g = np.array([0.3, -0.1, 0.2], "float32")
    momentum = _lineage.Row(b1=MU, c1=-ETA, k1=-1.0, v_idle=True)
    adam = _lineage.Row(c1=1 - BETA_1, d1=1.0, c2=1 - BETA_2, d2=1.0, a=1.0, f=EPSILON, k1=ETA)
    for in_sgd, expect_v in ((True, v), (False, None)):
        row = _lineage.select(ops.convert_to_tensor(in_sgd), momentum, adam)
        new_theta, new_m, new_v = (
            np.array(ops.convert_to_numpy(x))
            for x in _lineage.update(row, *(ops.convert_to_tensor(a) for a in (theta, m, v, g)))
        )
        if expect_v is not None:
            velocity = MU * m - ETA * g
            np.testing.assert_array_equal(new_v, v)
            np.testing.assert_allclose(new_m, velocity, rtol=1e-6)
            np.testing.assert_allclose(new_theta, theta + velocity, rtol=1e-6)
        else:
            # Adam's row reads v: the NaN reaches the first weight.
            assert np.isnan(new_theta[0]) and np.all(np.isfinite(new_theta[1:]))
