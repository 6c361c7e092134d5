"""Yogi against an independent NumPy transcription of the paper's equations
(Zaheer et al. 2018, Algorithm 2), with TensorFlow Addons' bias correction
and proximal L1/L2 step as options."""

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers import Yogi


def yogi_reference(
    theta, gradients, lr, beta_1=0.9, beta_2=0.999, eps=1e-3, v_init=1e-6,
    activation="sign", l1=0.0, l2=0.0, bias_correction=True, weight_decay=0.0,
):
    """Float64 Yogi. `gradients(theta, t)` gives g_t; returns the values of
    theta and of v after each step."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.full_like(theta, v_init)
    thetas, vs = [], []
    for t in range(1, len(lr) + 1):
        g = gradients(theta, t)
        theta = theta - lr[t - 1] * weight_decay * theta
        m = beta_1 * m + (1 - beta_1) * g
        if activation == "sign":
            v = v - (1 - beta_2) * np.sign(v - g * g) * g * g
        else:
            v = v + (1 - beta_2) * np.tanh(10 * (g * g - v)) * g * g
        rate = lr[t - 1]
        if bias_correction:
            rate = rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        a = rate / (np.sqrt(v) + eps)
        theta = theta - a * m
        if l1 > 0:
            theta = np.sign(theta) * np.maximum(np.abs(theta) - l1 * a, 0.0)
        if l2 > 0:
            theta = theta / (1 + l2 * a)
        thetas.append(theta.copy())
        vs.append(v.copy())
    return np.array(thetas), np.array(vs)


def run(optimizer, theta, gradients, steps, compiled=True):
    """The optimizer's trajectory on one float32 variable, each step compiled
    as fit compiles it (or eager `apply`); `gradients(x, t)` is evaluated at
    the variable's current value."""
    variable = keras.Variable(theta.astype("float32"))
    if compiled:
        step = compiled_apply(optimizer, [variable])
    else:
        step = lambda grads: optimizer.apply([keras.ops.convert_to_tensor(grads[0])], [variable])  # noqa: E731
    trajectory = []
    for t in range(1, steps + 1):
        step([gradients(np.array(variable).astype(np.float64), t).astype("float32")])
        trajectory.append(np.array(variable).astype(np.float64))
    return np.array(trajectory), variable


CURVATURE = np.array([1.0, 0.5, 2.0, 0.1, 4.0])


def rising_then_falling(x, t):
    # A quadratic's gradient, scaled up 30-fold over the first 60 steps and
    # then down 600-fold: g^2 first outruns v, then falls below it.
    scale = 0.1 * 30 ** (t / 60) if t <= 60 else 3.0 * 0.9 ** (t - 60)
    return scale * (CURVATURE * x + 0.3)


THETA = np.array([1.5, -2.0, 0.5, 3.0, -0.7])


def _changes_of_v(vs):
    return np.diff(np.concatenate([np.full((1, vs.shape[1]), 1e-6), vs]), axis=0)


@pytest.mark.parametrize("activation", ["sign", "tanh"])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_matches_numpy_reference_as_v_rises_and_falls(activation, bias_correction):
    steps = 150
    optimizer = Yogi(learning_rate=0.01, activation=activation, bias_correction=bias_correction)
    actual, variable = run(optimizer, THETA, rising_then_falling, steps)
    expected, vs = yogi_reference(
        THETA, rising_then_falling, [0.01] * steps, activation=activation,
        bias_correction=bias_correction,
    )
    # The inputs really drive v both ways, in every coordinate.
    changes = _changes_of_v(vs)
    assert (changes > 0).any(axis=0).all() and (changes < 0).any(axis=0).all()
    # atol: a few float32 ulps at the trajectory's scale (|theta| up to 3),
    # for the values that cross zero on the way.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    velocity = optimizer._velocities[optimizer._get_variable_index(variable)]
    np.testing.assert_allclose(np.array(velocity), vs[-1], rtol=1e-5)


def test_v_changes_by_a_fixed_fraction_of_g_squared_whatever_the_gap():
    # The additive rule: from v = 1, g^2 = 0.01 and g^2 = 0.81 both lower v
    # by exactly (1 - beta_2) g^2, although their gaps to v differ 40-fold.
    for g in (0.1, 0.9):
        optimizer = Yogi(initial_accumulator_value=1.0, beta_2=0.9)
        variable = keras.Variable(np.zeros(1, "float32"))
        optimizer.apply([keras.ops.full((1,), g)], [variable])
        velocity = float(np.array(optimizer._velocities[0])[0])
        assert velocity == pytest.approx(1.0 - 0.1 * g * g, rel=1e-6)


@pytest.mark.parametrize("beta_1", [0.0, 0.9])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (0.1, 0.2), (0.0, 0.2), (0.1, 0.0)])
def test_tensorflow_addons_setting_with_proximal_regularization(beta_1, l1, l2):
    # TensorFlow Addons' test setting: v starts at 1, constant gradients
    # 0.1 and 0.01; run 100 steps instead of its 3.
    steps = 100
    theta = np.array([1.0, 2.0, 3.0, 4.0])
    constant = np.array([0.1, 0.1, 0.01, 0.01])

    def gradients(x, t):
        return constant

    optimizer = Yogi(
        beta_1=beta_1, initial_accumulator_value=1.0,
        l1_regularization_strength=l1, l2_regularization_strength=l2,
    )
    actual, _ = run(optimizer, theta, gradients, steps)
    expected, _ = yogi_reference(
        theta, gradients, [0.01] * steps, beta_1=beta_1, v_init=1.0, l1=l1, l2=l2
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_l1_sets_small_coordinates_to_exactly_zero():
    # First step, zero gradient: the per-coordinate rate is
    # 0.01 sqrt(0.001) / 0.1 / (sqrt(1e-6) + 1e-3) = 1.58, so the L1 step
    # shrinks every coordinate by 0.1 * 1.58 = 0.158 toward 0 and stops there.
    optimizer = Yogi(learning_rate=0.01, l1_regularization_strength=0.1)
    variable = keras.Variable(np.array([1e-3, -0.15, 5.0], "float32"))
    optimizer.apply([keras.ops.zeros((3,))], [variable])
    shrink = 0.1 * 0.01 * np.sqrt(1 - 0.999) / 0.1 / (1e-3 + 1e-3)
    np.testing.assert_allclose(np.array(variable), [0.0, 0.0, 5.0 - shrink], rtol=1e-6)


def test_matches_reference_with_a_schedule_lr_scale_and_weight_decay():
    steps = 100
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=10, decay_rate=0.8)
    optimizer = Yogi(learning_rate=schedule, weight_decay=0.1)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.05 * 0.8 ** (t / 10) for t in range(steps)]
    actual, _ = run(optimizer, THETA, rising_then_falling, steps)
    expected, _ = yogi_reference(THETA, rising_then_falling, rates, weight_decay=0.1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_bfloat16_variable_moves_with_float32_coefficients():
    # In bfloat16, 1 - 0.999 computed in the variable's dtype is 0 and v
    # would never change; the coefficients are float32.
    optimizer = Yogi(learning_rate=0.1)
    variable = keras.Variable(np.ones(4), dtype="bfloat16")
    for _ in range(3):
        optimizer.apply([keras.ops.ones((4,), dtype="bfloat16")], [variable])
    velocity = keras.ops.convert_to_numpy(keras.ops.cast(optimizer._velocities[0], "float32"))
    assert np.all(velocity > 1e-3)
    value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
    assert np.all(value < 1.0)


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, with the proximal step, while v rises.
    def trajectory(compiled):
        optimizer = Yogi(learning_rate=0.01, l1_regularization_strength=0.01, l2_regularization_strength=0.01)
        return run(optimizer, THETA, rising_then_falling, 24, compiled=compiled)[0]

    np.testing.assert_allclose(trajectory(True), trajectory(False), rtol=1e-5, atol=1e-6)


def test_config_round_trip_keeps_every_argument():
    optimizer = Yogi(
        learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4,
        initial_accumulator_value=0.5, activation="tanh",
        l1_regularization_strength=0.1, l2_regularization_strength=0.2,
        bias_correction=False,
    )
    restored = Yogi.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.activation == "tanh" and restored.bias_correction is False


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("initial_accumulator_value", -1.0,
         r"`initial_accumulator_value` must be in \[0, inf\). Received: initial_accumulator_value=-1.0"),
        ("activation", "relu",
         r"`activation` must be one of 'sign', 'tanh'. Received: activation='relu'"),
        ("l1_regularization_strength", -0.1,
         r"`l1_regularization_strength` must be in \[0, inf\). Received: l1_regularization_strength=-0.1"),
        ("l2_regularization_strength", float("inf"),
         r"`l2_regularization_strength` must be in \[0, inf\). Received: l2_regularization_strength=inf"),
        ("bias_correction", 1,
         r"`bias_correction` must be True or False. Received: bias_correction=1"),
        ("epsilon", -1e-3, r"`epsilon` must be in \[0, inf\). Received: epsilon=-0.001"),
        ("beta_2", 1.0, r"`beta_2` must be in \[0, 1\). Received: beta_2=1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Yogi(**{argument: value})
