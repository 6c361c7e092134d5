"""ADOPT against an independent NumPy transcription of the authors' code
(torch-adopt 0.1.0, `_single_tensor_adopt`): v from g_0^2 on the first
step with no update, the normalised gradient clipped to step**0.25, the
momentum of normalised gradients, v updated after the step, and both forms
of weight decay."""

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers.adopt import ADOPT


def adopt_reference(
    theta, gradients, lr, beta_1=0.9, beta_2=0.9999, eps=1e-6, clip_exponent=0.25,
    weight_decay=0.0, decouple=False,
):
    """Float64 ADOPT. `gradients(theta, t)` gives the gradient of call t =
    1, 2, ... (the reference's step counter is t - 1); returns theta after
    each call and, per call, whether the clip bound any coordinate."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    thetas, clipped = [], []
    for t in range(1, len(lr) + 1):
        step = t - 1
        g = gradients(theta, t)
        if weight_decay != 0 and not decouple:
            g = g + weight_decay * theta
        if step == 0:
            v = v + g * g
            thetas.append(theta.copy())
            clipped.append(False)
            continue
        if weight_decay != 0 and decouple:
            theta = theta - lr[t - 1] * weight_decay * theta
        normed = g / np.maximum(np.sqrt(v), eps)
        bound = np.inf if clip_exponent is None else step**clip_exponent
        clipped.append(bool(np.any(np.abs(normed) > bound)))
        normed = np.clip(normed, -bound, bound)
        m = m + (1 - beta_1) * (normed - m)
        theta = theta - lr[t - 1] * m
        v = beta_2 * v + (1 - beta_2) * g * g
        thetas.append(theta.copy())
    return np.array(thetas), np.array(clipped)


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


CURVATURE = np.array([1.0, 0.5, 2.0, 0.2, 1.5, 0.8])
TARGET = np.array([0.5, -0.8, 1.0, -1.5, 0.7, 2.0])
THETA = np.array([0.5, -0.8, 1.5, -2.0, -0.5, 3.0])
PHASE = np.array([0.0, 0.0, 0.4, 1.1, 2.0, 2.7])


def noisy_quadratic(x, t):
    # The first two coordinates start at the optimum with zero noise on the
    # first call: g_0 = 0 there, as for a layer initialised to zero, so v_0
    # is 0 and the normalised gradient is clipped for many steps.
    noise = 0.3 * np.sin(0.9 * (t - 1) + PHASE)
    return CURVATURE * (x - TARGET) + noise


def relative_error(actual, expected):
    """Per step, |actual - expected| / |expected| over the whole variable."""
    return np.linalg.norm(actual - expected, axis=1) / np.linalg.norm(expected, axis=1)


STEPS = 240


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"clip_exponent": 0.5, "beta_2": 0.9},
        {"weight_decay": 0.05},
        {"weight_decay": 0.05, "decouple": True, "beta_1": 0.5},
    ],
    ids=["defaults", "clip-0.5-beta2-0.9", "coupled-decay", "decoupled-decay"],
)
def test_matches_numpy_reference_while_the_clip_bounds_early_steps(options):
    optimizer = ADOPT(learning_rate=0.01, **options)
    actual, _ = run(optimizer, THETA, noisy_quadratic, STEPS)
    expected, clipped = adopt_reference(THETA, noisy_quadratic, [0.01] * STEPS, **options)
    # The clip acted on each of the first steps that move the variable.
    assert clipped[1:6].all()
    # ... and it mattered: without it the trajectory is another one.
    unclipped, _ = adopt_reference(
        THETA, noisy_quadratic, [0.01] * STEPS, **{**options, "clip_exponent": None}
    )
    assert relative_error(unclipped, expected).max() > 0.05
    assert relative_error(actual, expected).max() < 1e-5


def test_unclipped_matches_the_reference_after_a_huge_first_step():
    # clip_exponent=None is the first version: g_1 / max(sqrt(0), eps) is
    # g_1 * 1e6 and the second call moves the zero-gradient coordinates far.
    optimizer = ADOPT(learning_rate=0.01, clip_exponent=None)
    actual, _ = run(optimizer, THETA, noisy_quadratic, STEPS)
    expected, _ = adopt_reference(THETA, noisy_quadratic, [0.01] * STEPS, clip_exponent=None)
    assert np.abs(expected[1, :2] - THETA[:2]).min() > 100
    assert relative_error(actual, expected).max() < 1e-5


def test_first_step_sets_v_to_g_squared_and_moves_nothing():
    optimizer = ADOPT(learning_rate=0.1, weight_decay=0.5, decouple=True)
    theta = np.array([1.0, -2.0, 3.0], "float32")
    variable = keras.Variable(theta)
    step = compiled_apply(optimizer, [variable])
    step([np.array([0.5, -3.0, 1e-3], "float32")])
    np.testing.assert_array_equal(np.array(variable), theta)
    np.testing.assert_array_equal(np.array(optimizer._momentums[0]), np.zeros(3))
    np.testing.assert_allclose(np.array(optimizer._velocities[0]), [0.25, 9.0, 1e-6], rtol=1e-6)


def test_clip_bound_is_the_previous_step_count_to_the_quarter():
    # g_0 = 1e-4, then g = 1: g / sqrt(v) is near 100 for many steps and
    # is clipped. With beta_1 = 0 the momentum is the clipped value, so the
    # k-th move (k = 1, 2, ...) is lr * k**0.25: 1, 2**0.25, 3**0.25, ...
    optimizer = ADOPT(learning_rate=0.01, beta_1=0.0)
    variable = keras.Variable(np.zeros(1, "float32"))
    step = compiled_apply(optimizer, [variable])
    step([np.full(1, 1e-4, "float32")])
    values = [0.0]
    for _ in range(6):
        step([np.ones(1, "float32")])
        values.append(float(np.array(variable)[0]))
    moves = -np.diff(values)
    np.testing.assert_allclose(moves, 0.01 * np.arange(1, 7) ** 0.25, rtol=1e-5)


def test_matches_reference_with_a_schedule_and_lr_scale():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=20, decay_rate=0.8)
    optimizer = ADOPT(learning_rate=schedule, weight_decay=0.1, decouple=True)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.02 * 0.8 ** (t / 20) for t in range(STEPS)]
    actual, _ = run(optimizer, THETA, noisy_quadratic, STEPS)
    expected, _ = adopt_reference(
        THETA, noisy_quadratic, rates, weight_decay=0.1, decouple=True
    )
    assert relative_error(actual, expected).max() < 1e-5


@pytest.mark.parametrize("decouple", [False, True])
def test_excluded_variables_are_not_decayed(decouple):
    optimizer = ADOPT(learning_rate=0.01, weight_decay=0.5, decouple=decouple)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    kernel = keras.Variable(np.ones(2, "float32"), name="kernel")
    bias = keras.Variable(np.ones(2, "float32"), name="bias")
    step = compiled_apply(optimizer, [kernel, bias])
    for _ in range(5):
        step([np.ones(2, "float32"), np.ones(2, "float32")])
    undecayed, _ = adopt_reference(np.ones(2), lambda x, t: np.ones(2), [0.01] * 5)
    decayed, _ = adopt_reference(
        np.ones(2), lambda x, t: np.ones(2), [0.01] * 5, weight_decay=0.5, decouple=decouple
    )
    np.testing.assert_allclose(np.array(bias), undecayed[-1], rtol=1e-6)
    np.testing.assert_allclose(np.array(kernel), decayed[-1], rtol=1e-6)


def test_bfloat16_variable_moves_with_float32_coefficients():
    # In bfloat16 0.9999 is 1.0, and 1 - beta_2 formed there would be 0; v
    # is moved by (1 - beta_2)(g^2 - v) with 1 - beta_2 formed in float32.
    # From v_0 = 1e-4, two steps of g = 4 raise v by about 3.2e-3.
    optimizer = ADOPT(learning_rate=0.1)
    variable = keras.Variable(np.ones(4), dtype="bfloat16")
    optimizer.apply([keras.ops.full((4,), 0.01, dtype="bfloat16")], [variable])
    for _ in range(2):
        optimizer.apply([keras.ops.full((4,), 4.0, dtype="bfloat16")], [variable])
    velocity = keras.ops.convert_to_numpy(keras.ops.cast(optimizer._velocities[0], "float32"))
    np.testing.assert_allclose(velocity, 1e-4 + 2 * 1e-4 * 16, rtol=0.02)
    value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
    assert np.all(value < 1.0)


def test_compiled_updates_equal_eager_updates():
    def trajectory(compiled):
        optimizer = ADOPT(learning_rate=0.01, weight_decay=0.05)
        return run(optimizer, THETA, noisy_quadratic, 12, compiled=compiled)[0]

    np.testing.assert_allclose(trajectory(True), trajectory(False), rtol=1e-6, atol=1e-7)


def test_config_round_trip_keeps_every_argument():
    optimizer = ADOPT(
        learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-5, clip_exponent=None,
        weight_decay=0.1, decouple=True,
    )
    restored = ADOPT.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.clip_exponent is None and restored.decouple is True
    assert restored.weight_decay == 0.1


def test_integer_arguments_are_accepted():
    optimizer = ADOPT(learning_rate=1, beta_1=0, epsilon=0, clip_exponent=1, weight_decay=0)
    assert optimizer.clip_exponent == 1.0 and isinstance(optimizer.clip_exponent, float)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
        ("beta_2", -0.1, r"`beta_2` must be in \[0, 1\). Received: beta_2=-0.1"),
        ("epsilon", -1e-6, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1e-06"),
        ("clip_exponent", -0.25,
         r"`clip_exponent` must be in \[0, inf\). Received: clip_exponent=-0.25"),
        ("clip_exponent", "0.25",
         r"`clip_exponent` must be a number in \[0, inf\). Received: clip_exponent='0.25'"),
        ("weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("decouple", 1, r"`decouple` must be True or False. Received: decouple=1"),
        ("learning_rate", -1.0, r"`learning_rate` must be in \[0, inf\). Received: learning_rate=-1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ADOPT(**{argument: value})
