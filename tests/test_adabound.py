"""AdaBound and AMSBound against an independent NumPy transcription of the
update (Luo et al. 2019, with the authors' code's bias correction), on
problems where both bounds really clip."""

import keras
import numpy as np
import pytest

from conftest import apply_trajectory, assert_weights_close, compiled_apply, optimizer_state
from keras_optlab import optimizers
from keras_optlab.optimizers import AdaBound


def adabound_reference(theta, gradient_fn, rates, initial_rate, final_lr, gamma,
                       beta_1=0.9, beta_2=0.999, eps=1e-8, amsbound=False):
    """Returns the trajectory and how many elements hit each bound."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    trajectory, hit_lower, hit_upper = [], 0, 0
    for t in range(1, len(rates) + 1):
        eta = rates[t - 1]
        g = gradient_fn(theta)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        v_max = np.maximum(v_max, v)
        denominator = np.sqrt(v_max if amsbound else v) + eps
        step_size = eta * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) / denominator
        if final_lr is not None:
            final = final_lr * eta / initial_rate
            lower = final * (1 - 1 / (gamma * t + 1))
            upper = final * (1 + 1 / (gamma * t))
            hit_lower += int(np.sum(step_size < lower))
            hit_upper += int(np.sum(step_size > upper))
            step_size = np.clip(step_size, lower, upper)
        theta = theta - step_size * m
        trajectory.append(theta.copy())
    return np.array(trajectory), hit_lower, hit_upper


# Gradients from 20 (large: Adam's step falls below the lower bound) to
# 0.002 (small: it exceeds the upper bound).
SCALES = np.array([20.0, 5.0, 1.0, 0.2, 0.02, 0.002])
THETA = np.array([1.0, -1.0, 2.0, -2.0, 3.0, 1.5])
ATOL = 1e-6  # coordinates of order 1 resolve to about 1e-7 in float32


def gradient_fn(x):
    return SCALES * x


@pytest.mark.parametrize("amsbound", [False, True])
def test_matches_reference_with_both_bounds_clipping(amsbound):
    steps = 150
    optimizer = AdaBound(
        learning_rate=0.01, final_lr=0.05, gamma=0.05, beta_2=0.9, amsbound=amsbound
    )
    actual = apply_trajectory(optimizer, THETA, gradient_fn, steps)
    expected, hit_lower, hit_upper = adabound_reference(
        THETA, gradient_fn, [0.01] * steps, 0.01, 0.05, 0.05, beta_2=0.9, amsbound=amsbound
    )
    assert hit_lower > 0 and hit_upper > 0
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)


def test_amsbound_differs_from_adabound_when_gradients_shrink():
    # As the iterate approaches 0 the gradients shrink and, with a short
    # beta_2, so does v; its running maximum keeps AMSBound's steps smaller.
    plain, _, _ = adabound_reference(THETA, gradient_fn, [0.01] * 100, 0.01, 0.05, 0.05, beta_2=0.9)
    ams, _, _ = adabound_reference(
        THETA, gradient_fn, [0.01] * 100, 0.01, 0.05, 0.05, beta_2=0.9, amsbound=True
    )
    actual = apply_trajectory(
        AdaBound(learning_rate=0.01, final_lr=0.05, gamma=0.05, beta_2=0.9, amsbound=True),
        THETA, gradient_fn, 100,
    )
    assert np.max(np.abs(ams - plain)) > 1e-3
    np.testing.assert_allclose(actual, ams, rtol=1e-5, atol=ATOL)


def test_bounds_follow_a_schedule_and_lr_scale():
    steps = 120
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=20, decay_rate=0.5)
    optimizer = AdaBound(learning_rate=schedule, final_lr=0.05, gamma=0.05)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.02 * 0.5 ** (i / 20) for i in range(steps)]
    actual = apply_trajectory(optimizer, THETA, gradient_fn, steps)
    # eta_0 is the schedule's value at step 0, without lr_scale.
    expected, hit_lower, hit_upper = adabound_reference(
        THETA, gradient_fn, rates, 0.02, 0.05, 0.05
    )
    assert hit_lower > 0 and hit_upper > 0
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)


def test_without_bounds_it_is_adam():
    steps = 100
    ours = apply_trajectory(
        AdaBound(learning_rate=0.01, final_lr=None, epsilon=1e-7), THETA, gradient_fn, steps
    )
    expected, _, _ = adabound_reference(
        THETA, gradient_fn, [0.01] * steps, 0.01, None, None, eps=1e-7
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=ATOL)
    # Keras' Adam: the same formula, with 1 - beta**t formed in float32
    # (up to ~3e-5 relative off); hence the looser tolerance.
    keras_adam = apply_trajectory(
        keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-7), THETA, gradient_fn, steps
    )
    np.testing.assert_allclose(ours, keras_adam, rtol=1e-3, atol=1e-5)


def test_huge_bounds_equal_no_bounds():
    steps = 60
    bounded = apply_trajectory(
        AdaBound(learning_rate=0.01, final_lr=0.01, gamma=1e-12), THETA, gradient_fn, steps
    )
    unbounded = apply_trajectory(
        AdaBound(learning_rate=0.01, final_lr=None), THETA, gradient_fn, steps
    )
    np.testing.assert_allclose(bounded, unbounded, rtol=1e-6, atol=1e-7)


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, with both bounds clipping from the first steps.
    def make():
        return AdaBound(learning_rate=0.01, final_lr=0.05, gamma=0.05, amsbound=True)

    steps = 24
    compiled = apply_trajectory(make(), THETA, gradient_fn, steps)
    optimizer = make()
    variable = keras.Variable(THETA.astype("float32"))
    eager = []
    for _ in range(steps):
        g = gradient_fn(np.array(variable).astype(np.float64)).astype("float32")
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        eager.append(np.array(variable).astype(np.float64))
    _, hit_lower, hit_upper = adabound_reference(
        THETA, gradient_fn, [0.01] * steps, 0.01, 0.05, 0.05, amsbound=True
    )
    assert hit_lower > 0 and hit_upper > 0
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_non_finite_step_under_loss_scaling_leaves_state_untouched():
    inner = optimizers.get("amsbound", learning_rate=0.01)
    optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=2.0)
    variable = keras.Variable(THETA.astype("float32"))
    # Compiled, as fit runs it (eagerly, JAX cannot run its conditional).
    step = compiled_apply(optimizer, [variable])
    for _ in range(3):
        step([gradient_fn(np.array(variable).astype(np.float64)).astype("float32") * 2.0])
    weights, state = np.array(variable), optimizer_state(inner)
    step([np.array([np.nan, 0.0, 0.0, 0.0, np.inf, 0.0], "float32")])
    np.testing.assert_array_equal(np.array(variable), weights)
    assert_weights_close(optimizer_state(inner), state, rtol=0, atol=0)


def test_registry_names():
    assert optimizers.get("amsbound").amsbound is True
    assert optimizers.get("adabound").amsbound is False
    assert optimizers.get("amsbound").name == "amsbound"


@pytest.mark.parametrize(
    "argument, value, error, message",
    [
        ("final_lr", -0.1, ValueError, r"Argument `final_lr` must be in \[0, inf\). Received: final_lr=-0.1"),
        ("gamma", 0.0, ValueError, r"Argument `gamma` must be in \(0, inf\). Received: gamma=0.0"),
        ("gamma", "fast", TypeError, r"Argument `gamma` must be a number"),
        ("amsbound", "yes", TypeError, r"Argument `amsbound` must be True or False. Received: amsbound='yes'"),
        ("beta_1", 1.0, ValueError, r"Argument `beta_1` must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(argument, value, error, message):
    with pytest.raises(error, match=message):
        AdaBound(**{argument: value})
