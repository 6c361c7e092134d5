"""COCOB-Backprop against an independent NumPy transcription of the paper's
Algorithm 2 (Orabona & Tommasi 2017), on gradients whose sign holds long
enough for the bets to grow and then flips, and on coordinates whose first
gradients are zero."""

import keras
import numpy as np
import pytest

from conftest import apply_trajectory, compiled_apply
from keras_optlab.optimizers import COCOB


def cocob_reference(w_1, gradients, alpha, rates):
    """Algorithm 2 with g = -gradient; the weights follow the bet x as
    w_{t+1} = w_t + rate_t (x_{t+1} - x_t) (w_1 + x_{t+1} for rate 1).
    Returns the weights after each step and the rewards."""
    w_1 = np.array(w_1, np.float64)
    L = np.zeros_like(w_1)
    G = np.zeros_like(w_1)
    theta = np.zeros_like(w_1)
    reward = np.zeros_like(w_1)
    x = np.zeros_like(w_1)
    w = w_1.copy()
    trajectory, rewards = [], []
    for t in range(len(rates)):
        g = -gradients(w, t)
        L = np.maximum(L, np.abs(g))
        G = G + np.abs(g)
        reward = np.maximum(reward + x * g, 0.0)
        theta = theta + g
        with np.errstate(invalid="ignore", divide="ignore"):
            new_x = theta / (L * np.maximum(G + L, alpha * L)) * (L + reward)
        # Coordinates that have only seen zero gradients keep w_1.
        new_x = np.where(L > 0, new_x, 0.0)
        w = w + rates[t] * (new_x - x)
        x = new_x
        trajectory.append(w.copy())
        rewards.append(reward.copy())
    return np.array(trajectory), np.array(rewards)


def sign_schedule(t):
    """+1 for 30 steps, -1 for 30, then +1 every third step."""
    if t < 30:
        return 1.0
    if t < 60:
        return -1.0
    return 1.0 if t % 3 == 0 else -1.0


# Coordinates of different scales; the last two see zero gradients for the
# first 5 and 20 steps.
SCALES = np.array([0.1, 2.0, 1e-3, 0.5, 0.05])
START_NONZERO = np.array([0, 0, 0, 5, 20])


def fixed_gradients(w, t):
    wobble = 1.0 + 0.3 * np.sin(0.7 * t + np.arange(len(SCALES)))
    g = SCALES * wobble * sign_schedule(t)
    return np.where(t >= START_NONZERO, g, 0.0)


W_1 = np.array([0.5, -1.0, 2.0, 0.0, 0.3])


def run_fixed(optimizer, steps, compiled=True):
    """The weights after each step of `fixed_gradients` from `W_1`, each
    step compiled as fit compiles it (or eager `apply`)."""
    variable = keras.Variable(W_1.astype("float32"))
    if compiled:
        step = compiled_apply(optimizer, [variable])
    else:
        step = lambda grads: optimizer.apply([keras.ops.convert_to_tensor(grads[0])], [variable])  # noqa: E731
    trajectory = []
    for t in range(steps):
        step([fixed_gradients(None, t).astype("float32")])
        trajectory.append(np.array(variable).astype(np.float64))
    return np.array(trajectory)


# Smaller alphas let the wealth grow to thousands of times the gradient
# within these 30 steps; the bet then multiplies that wealth by a sum of
# gradients that crosses zero, and float32 keeps fewer than 5 digits of it.
@pytest.mark.parametrize("alpha", [100.0, 50.0])
def test_matches_numpy_reference_where_bets_grow_and_the_sum_flips_sign(alpha):
    steps = 130
    actual = run_fixed(COCOB(alpha=alpha), steps)
    expected, rewards = cocob_reference(W_1, fixed_gradients, alpha, [1.0] * steps)
    # The bets grew: rewards reached many times the largest gradient.
    assert np.all(rewards.max(axis=0) > 5 * SCALES)
    # The sum of negative gradients changed sign during the run.
    sums = -np.cumsum([fixed_gradients(None, t) for t in range(steps)], axis=0)
    assert np.all(sums[29] < 0) and np.all(sums[-1] > 0)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_matches_numpy_reference_on_a_quadratic():
    # Gradient fed back from the weights: f(w) = 0.5 sum(s (w - 1)^2).
    steps = 150
    scales = np.array([1.0, 0.2, 5.0, 0.01])
    gradient_fn = lambda w, t: scales * (w - 1.0)  # noqa: E731
    w_1 = np.array([-2.0, 3.0, 0.0, 5.0])
    actual = apply_trajectory(COCOB(), w_1, lambda w: gradient_fn(w, 0), steps)
    expected, _ = cocob_reference(w_1, gradient_fn, 100.0, [1.0] * steps)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # It gets to the minimum without a learning rate.
    assert np.all(np.abs(expected[-1, :3] - 1.0) < 0.5 * np.abs(w_1[:3] - 1.0))


def test_zero_gradients_leave_the_weights_and_state_finite():
    optimizer = COCOB()
    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    for _ in range(3):
        optimizer.apply([keras.ops.zeros((2,))], [variable])
    np.testing.assert_array_equal(np.array(variable), [1.0, -2.0])
    for slot in optimizer.variables:
        assert np.all(np.isfinite(np.array(slot)))
    optimizer.apply([keras.ops.convert_to_tensor([1.0, 0.0])], [variable])
    # First nonzero gradient: a bet of -g / (alpha |g|) = -0.01.
    np.testing.assert_allclose(np.array(variable), [0.99, -2.0], rtol=1e-6)


def test_matches_reference_with_a_schedule_and_lr_scale():
    steps = 120
    schedule = keras.optimizers.schedules.ExponentialDecay(2.0, decay_steps=20, decay_rate=0.5)
    optimizer = COCOB(learning_rate=schedule)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 2.0 * 0.5 ** (t / 20) for t in range(steps)]
    actual = run_fixed(optimizer, steps)
    expected, _ = cocob_reference(W_1, fixed_gradients, 100.0, rates)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_learning_rate_zero_freezes_the_weights_but_not_the_bets():
    optimizer = COCOB(learning_rate=0.0)
    variable = keras.Variable(np.array([1.0, 2.0], "float32"))
    for _ in range(5):
        optimizer.apply([keras.ops.convert_to_tensor([0.1, -0.2])], [variable])
    np.testing.assert_array_equal(np.array(variable), [1.0, 2.0])
    bets = np.array(optimizer._bets[0])
    assert bets[0] < 0 < bets[1]


# TensorFlow Addons' tests (tensorflow_addons/optimizers/tests/cocob_test.py):
# var_0 = [1, 2], var_1 = [3, 4], constant gradients [0.1, 0.2] and
# [0.03, 0.04]; the bets grow geometrically. Their values come from float32.
@pytest.mark.parametrize(
    "alpha, steps, expected",
    [
        (100, 100, [[-4.183396e16, -4.183396e16], [-4.1833639e16, -4.1833858e16]]),
        (20, 100, [[-8.60311e26, -8.60311e26], [-8.603111e26, -8.603099e26]]),
        (55.7, 78, [[-6.7280056e15, -6.7280056e15], [-6.7279933e15, -6.7280217e15]]),
    ],
)
def test_matches_tensorflow_addons_published_values(alpha, steps, expected):
    optimizer = COCOB(alpha)
    variables = [keras.Variable([1.0, 2.0]), keras.Variable([3.0, 4.0])]
    grads = [np.array([0.1, 0.2], "float32"), np.array([0.03, 0.04], "float32")]
    step = compiled_apply(optimizer, variables)
    for _ in range(steps):
        step(grads)
    for variable, values in zip(variables, expected):
        np.testing.assert_allclose(np.array(variable), values, rtol=1e-5)


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, through the zero gradients of the first steps and the sign
    # flip at step 30.
    compiled = run_fixed(COCOB(), 40)
    eager = run_fixed(COCOB(), 40, compiled=False)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("alpha", 0.5, r"Argument `alpha` must be in \[1, inf\). Received: alpha=0.5"),
        ("alpha", "big", r"Argument `alpha` must be a number in \[1, inf\). Received: alpha='big'"),
        ("learning_rate", -1.0, r"Argument `learning_rate` must be in \[0, inf\). Received: learning_rate=-1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        COCOB(**{argument: value})
