"""ProximalAdagrad against an independent NumPy transcription of forward-
backward splitting with Adagrad's rates (Duchi & Singer 2009), and against
the numbers TensorFlow Addons' tests published."""

import keras
import numpy as np
import pytest

from conftest import apply_trajectory
from keras_optlab.optimizers import ProximalAdagrad


def proximal_adagrad_reference(theta, gradients, lr, initial, l1, l2):
    theta = theta.astype(np.float64).copy()
    accumulator = np.full_like(theta, initial)
    trajectory = []
    for rate in lr:
        g = gradients(theta)
        accumulator = accumulator + g * g
        step = rate / np.sqrt(accumulator)
        forward = theta - step * g
        theta = np.sign(forward) * np.maximum(np.abs(forward) - step * l1, 0.0)
        theta = theta / (1.0 + step * l2)
        trajectory.append(theta.copy())
    return np.array(trajectory)


# f(x) = 0.5 |x - target|^2. With l1 = 0.5, a coordinate whose |target| is
# below 0.5 has its minimum of f + l1 |x| at exactly 0; the others at
# target - 0.5 sign(target).
TARGET = np.array([0.2, -0.1, 2.0, -3.0, 0.3, 1.5])
SPARSE = np.abs(TARGET) < 0.5


def pull_to_target(x):
    return x - TARGET


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_l1_drives_weights_to_exact_zeros_and_keeps_them_there(l2):
    steps = 150
    theta = np.array([1.0, -1.0, 0.5, 0.5, -0.8, 1.0])
    optimizer = ProximalAdagrad(
        learning_rate=0.5, initial_accumulator_value=0.1,
        l1_regularization_strength=0.5, l2_regularization_strength=l2,
    )
    actual = apply_trajectory(optimizer, theta, pull_to_target, steps)
    expected = proximal_adagrad_reference(theta, pull_to_target, [0.5] * steps, 0.1, 0.5, l2)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)
    # Exact zeros, not small numbers, from some step on, to the end.
    for index in np.flatnonzero(SPARSE):
        zero_steps = np.flatnonzero(actual[:, index] != 0.0)
        first_zero = zero_steps[-1] + 1 if zero_steps.size else 0
        assert first_zero < steps // 2, (index, first_zero)
        assert np.all(actual[first_zero:, index] == 0.0)
    assert np.all(actual[-1, ~SPARSE] != 0.0)


def test_without_penalties_it_is_adagrad_without_epsilon():
    steps = 120
    theta = np.array([1.0, -2.0, 0.3])
    gradient_fn = lambda x: np.array([1.0, 0.2, 5.0]) * x + 0.1  # noqa: E731
    actual = apply_trajectory(ProximalAdagrad(learning_rate=0.2), theta, gradient_fn, steps)
    expected = proximal_adagrad_reference(theta, gradient_fn, [0.2] * steps, 0.1, 0.0, 0.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_l2_shrinks_by_one_plus_rate_times_l2():
    # A zero gradient leaves G at its initial value: each step divides the
    # variable by 1 + lr l2 / sqrt(G0), and nothing else moves it.
    optimizer = ProximalAdagrad(
        learning_rate=0.1, initial_accumulator_value=0.25, l2_regularization_strength=2.0
    )
    theta = np.array([1.0, -4.0, 0.5])
    actual = apply_trajectory(optimizer, theta, np.zeros_like, 100)
    factor = 1.0 / (1.0 + 0.1 * 2.0 / np.sqrt(0.25))
    expected = theta * factor ** np.arange(1, 101)[:, None]
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_matches_reference_with_a_schedule_and_lr_scale():
    steps = 100
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=20, decay_rate=0.5)
    optimizer = ProximalAdagrad(
        learning_rate=schedule, l1_regularization_strength=0.5, l2_regularization_strength=0.05
    )
    optimizer.lr_scale.assign(0.5)
    theta = np.array([1.0, -1.0, 0.5, 0.5, -0.8, 1.0])
    rates = [0.5 * 0.5 ** (t / 20) for t in range(steps)]
    actual = apply_trajectory(optimizer, theta, pull_to_target, steps)
    expected = proximal_adagrad_reference(theta, pull_to_target, rates, 0.1, 0.5, 0.05)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_weight_decay_is_decoupled():
    optimizer = ProximalAdagrad(learning_rate=0.1, weight_decay=0.5)
    variable = keras.Variable(np.full((2,), 2.0, "float32"))
    optimizer.apply([keras.ops.zeros((2,))], [variable])
    # Zero gradient and no penalty: only the decay moves the variable.
    np.testing.assert_allclose(np.array(variable), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)


# TensorFlow Addons' tests: var_0 = [1, 2], var_1 = [4, 3], constant
# gradients [0.1, 0.2] and [0.01, 0.02], learning rate 3, 10 steps.
@pytest.mark.parametrize(
    "l1, l2, expected_0, expected_1",
    [
        (0.0, 0.0, [-6.722771, -9.230448], [3.0539124, 1.1230775]),
        (0.001, 0.0, [-6.663634, -9.190331], [2.9593036, 1.0292315]),
        (0.001, 2.0, [-0.0495, -0.0995], [-0.0045, -0.0095]),
    ],
)
def test_matches_tensorflow_addons_published_values(l1, l2, expected_0, expected_1):
    optimizer = ProximalAdagrad(
        learning_rate=3.0, initial_accumulator_value=0.1,
        l1_regularization_strength=l1, l2_regularization_strength=l2,
    )
    var_0 = keras.Variable(np.array([1.0, 2.0], "float32"))
    var_1 = keras.Variable(np.array([4.0, 3.0], "float32"))
    grads = [keras.ops.convert_to_tensor(np.array(g, "float32")) for g in ([0.1, 0.2], [0.01, 0.02])]
    for _ in range(10):
        optimizer.apply(grads, [var_0, var_1])
    np.testing.assert_allclose(np.array(var_0), expected_0, rtol=1e-6)
    np.testing.assert_allclose(np.array(var_1), expected_1, rtol=1e-6)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        (
            "initial_accumulator_value", 0.0,
            r"`initial_accumulator_value` must be in \(0, inf\). "
            r"Received: initial_accumulator_value=0.0",
        ),
        (
            "l1_regularization_strength", -0.1,
            r"`l1_regularization_strength` must be in \[0, inf\). "
            r"Received: l1_regularization_strength=-0.1",
        ),
        (
            "l2_regularization_strength", "big",
            r"`l2_regularization_strength` must be a number in \[0, inf\). "
            r"Received: l2_regularization_strength='big'",
        ),
        ("learning_rate", -1.0, r"`learning_rate` must be in \[0, inf\). Received: learning_rate=-1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ProximalAdagrad(**{argument: value})
