"""Prodigy against an independent NumPy (float64) transcription of the
authors' `prodigyopt` 1.1 `Prodigy.step`, on a problem where d grows from
1e-6 by five to six orders of magnitude, with each option on a shorter run."""

import math

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers.prodigy import Prodigy


def prodigy_reference(
    start, gradients, rates, beta_1=0.9, beta_2=0.999, beta_3=None, epsilon=1e-8,
    weight_decay=0.0, decouple=True, bias_correction=False, safeguard_warmup=False,
    d0=1e-6, d_coef=1.0, growth_rate=math.inf,
):
    """Float64 Prodigy over a list of arrays. `gradients(xs, t)` gives the
    gradients at step t; `rates[t]` is the learning rate of step t. Returns,
    after each call, the arrays and (d, d_max, numerator, steps taken)."""
    beta_3 = math.sqrt(beta_2) if beta_3 is None else beta_3
    xs = [np.array(x, np.float64) for x in start]
    x0s = [x.copy() for x in xs]
    ms, vs, ss = ([np.zeros_like(x) for x in xs] for _ in range(3))
    d, d_max, numerator, k = d0, d0, 0.0, 0
    trajectory, scalars = [], []
    for t, rate in enumerate(rates):
        gs = [np.array(g, np.float64) for g in gradients(xs, t)]
        if weight_decay and not decouple:
            gs = [g + weight_decay * x for g, x in zip(gs, xs)]
        rho = math.sqrt(1 - beta_2 ** (k + 1)) / (1 - beta_1 ** (k + 1)) if bias_correction else 1.0
        dlr = d * rate * rho
        increment, denominator = 0.0, 0.0
        if rate > 0:
            for i, (x, g) in enumerate(zip(xs, gs)):
                increment += (d / d0) * dlr * np.sum(g * (x0s[i] - x))
                ms[i] = beta_1 * ms[i] + d * (1 - beta_1) * g
                vs[i] = beta_2 * vs[i] + d * d * (1 - beta_2) * g * g
                scale = d if safeguard_warmup else dlr
                ss[i] = beta_3 * ss[i] + (d / d0) * scale * g
                denominator += np.sum(np.abs(ss[i]))
        if denominator > 0:  # the reference returns here otherwise
            numerator = beta_3 * numerator + increment
            d_hat = d_coef * numerator / denominator
            if d == d0:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * growth_rate)
            for i, x in enumerate(xs):
                x -= weight_decay * dlr * x if decouple else 0.0
                x -= dlr * ms[i] / (np.sqrt(vs[i]) + d * epsilon)
            k += 1
        trajectory.append(np.concatenate([x.ravel() for x in xs]))
        scalars.append((d, d_max, numerator, k))
    return np.array(trajectory), np.array(scalars)


# A quadratic over two variables (a matrix and a vector), minimum at TARGETS
# about 3 away from the start: d must grow from d0 = 1e-6 to about 1.
RNG = np.random.default_rng(0)
CURVATURES = [RNG.uniform(0.2, 2.0, size=(3, 4)), RNG.uniform(0.2, 2.0, size=(4,))]
TARGETS = [3.0 * RNG.normal(size=(3, 4)), 3.0 * RNG.normal(size=(4,))]
# Small but not zero, so that the stored start x0 matters. The first moves
# are about 3e-6; float32 keeps x0 - x to about 1e-6 of that here. (From
# values of order 1e-2 it would keep 3 digits, and the float32 run would
# depart from the float64 one by 1e-4 through d, as the reference itself
# does on float32 parameters.)
START = [1e-4 * RNG.normal(size=(3, 4)), 1e-4 * RNG.normal(size=(4,))]


def quadratic_gradients(xs, t):
    return [a * (x - target) for a, x, target in zip(CURVATURES, xs, TARGETS)]


def run(optimizer, rates_or_steps, gradients=quadratic_gradients):
    """The optimizer's compiled steps from START: the concatenated variables
    and (d, d_max, numerator, steps taken) after each step."""
    steps = rates_or_steps if isinstance(rates_or_steps, int) else len(rates_or_steps)
    variables = [keras.Variable(x.astype("float32")) for x in START]
    step = compiled_apply(optimizer, variables)
    trajectory, scalars = [], []
    for t in range(steps):
        values = [np.array(v).astype(np.float64) for v in variables]
        step([g.astype("float32") for g in gradients(values, t)])
        trajectory.append(np.concatenate([np.array(v).ravel() for v in variables]))
        scalars.append([float(np.array(v)) for v in (
            optimizer.d, optimizer.d_max, optimizer.d_numerator, optimizer.steps_taken
        )])
    return np.array(trajectory, np.float64), np.array(scalars)


def reference_start():
    # The reference starts from the float32 values the variables hold.
    return [x.astype("float32") for x in START]


def assert_matches(actual, expected, rtol=1e-4):
    trajectory, scalars = actual
    expected_trajectory, expected_scalars = expected
    # Plus 1e-5 of the trajectory's scale (|x| up to ~9) for the
    # coordinates that cross zero on the way; the float32 runs stay within
    # 3e-6 of it.
    scale = np.abs(expected_trajectory).max()
    np.testing.assert_allclose(trajectory, expected_trajectory, rtol=rtol, atol=1e-5 * scale)
    np.testing.assert_allclose(scalars[:, :2], expected_scalars[:, :2], rtol=rtol)
    np.testing.assert_array_equal(scalars[:, 3], expected_scalars[:, 3])


def test_matches_the_reference_over_200_steps_as_d_grows_a_million_fold():
    steps = 200
    actual = run(Prodigy(), steps)
    expected = prodigy_reference(reference_start(), quadratic_gradients, [1.0] * steps)
    d = expected[1][:, 0]
    # The distinctive feature happened: d grew from 1e-6 by over five
    # orders of magnitude, step by step over a dozen steps, not at once.
    assert d[-1] > 1e5 * 1e-6
    assert np.sum(d[1:] > d[:-1] * (1 + 1e-6)) >= 12
    assert_matches(actual, expected)
    # float32 against float64 after 200 steps: d to 1e-5, and the numerator.
    np.testing.assert_allclose(actual[1][:, 0], d, rtol=1e-5)
    np.testing.assert_allclose(actual[1][:, 2], expected[1][:, 2], rtol=1e-4)


# Each option with the learning rate it needs to show: at a rate of 1 and
# without bias correction, safeguard_warmup's d equals the rate times d.
OPTION_CASES = {
    "safeguard_warmup": (dict(safeguard_warmup=True), 0.5),
    "bias_correction": (dict(bias_correction=True), 1.0),
    "decoupled_weight_decay": (dict(weight_decay=0.5), 1.0),
    "coupled_weight_decay": (dict(weight_decay=0.5, decouple=False), 1.0),
    # d_{k+1} (not d_k) in d * epsilon: visible only with a large epsilon.
    "epsilon_beta_3_d_coef_no_momentum": (
        dict(epsilon=0.1, beta_3=0.9, d_coef=2.0, beta_1=0.0), 1.0
    ),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_each_option_matches_the_reference(case):
    steps = 40
    options, rate = OPTION_CASES[case]
    actual = run(Prodigy(learning_rate=rate, **options), steps)
    rates = [rate] * steps
    expected = prodigy_reference(reference_start(), quadratic_gradients, rates, **options)
    assert_matches(actual, expected)
    # The option changed the run.
    default, _ = prodigy_reference(reference_start(), quadratic_gradients, rates)
    assert np.abs(expected[0] - default).max() > 1e-2 * np.abs(default).max()


def test_growth_rate_caps_each_step_except_while_d_is_d0():
    steps = 40
    actual = run(Prodigy(growth_rate=1.5), steps)
    expected = prodigy_reference(reference_start(), quadratic_gradients, [1.0] * steps, growth_rate=1.5)
    assert_matches(actual, expected)
    d = np.concatenate([[1e-6], actual[1][:, 0]])
    ratios = d[1:] / d[:-1]
    # The first rise leaves d0 uncapped (the reference's `d == d0` case);
    # every later one is at most 1.5, and the cap really binds.
    first_rise = np.argmax(ratios > 1.0)
    assert ratios[first_rise] > 1.5
    assert np.all(ratios[first_rise + 1:] <= 1.5 * (1 + 1e-6))
    assert np.sum(np.isclose(ratios[first_rise + 1:], 1.5, rtol=1e-5)) >= 5


def test_steps_at_learning_rate_zero_are_not_taken_and_lr_scale_multiplies_d():
    # Three steps at rate 0 (a warmup from 0) leave everything as it was,
    # and are not counted by the bias correction, as in the reference;
    # then the rate is 0.8 times lr_scale 0.5.
    steps = 40
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.0, 0.8])
    optimizer = Prodigy(learning_rate=schedule, bias_correction=True)
    optimizer.lr_scale.assign(0.5)
    rates = [0.0] * 3 + [0.4] * (steps - 3)
    actual = run(optimizer, steps)
    expected = prodigy_reference(reference_start(), quadratic_gradients, rates, bias_correction=True)
    start = np.concatenate([x.ravel() for x in reference_start()])
    np.testing.assert_array_equal(actual[0][:3], np.stack([start] * 3))
    d0 = float(np.float32(1e-6))
    np.testing.assert_array_equal(actual[1][:3], [[d0, d0, 0.0, 0.0]] * 3)
    assert actual[1][-1, 3] == steps - 3
    assert_matches(actual, expected)


def test_first_step_keeps_d0_and_moves_each_coordinate_by_about_3_d0():
    # r_1 = 0 since x_0 = x, so d stays d0; the step is
    # d0 * d0 (1 - b1) g / (d0 sqrt(1 - b2) |g| + d0 eps).
    optimizer = Prodigy()
    variable = keras.Variable(np.array([0.5, -2.0, 0.0], "float32"))
    gradient = np.array([1.0, -0.01, 4.0], "float32")
    compiled_apply(optimizer, [variable])([gradient])
    step = 1e-6 * 0.1 * gradient / (np.sqrt(0.001) * np.abs(gradient) + 1e-8)
    np.testing.assert_allclose(np.array(variable), [0.5, -2.0, 0.0] - step, rtol=1e-6, atol=1e-12)
    assert float(np.array(optimizer.d)) == np.float32(1e-6)
    assert int(np.array(optimizer.steps_taken)) == 1
    np.testing.assert_array_equal(np.array(optimizer._starts[0]), [0.5, -2.0, 0.0])


def test_low_precision_variables_keep_float32_state_and_stay_finite():
    # The first moves (3e-6) are below the resolution of float16 and
    # bfloat16 near 1, so x0 - x stays 0 and d stays d0 (documented):
    # nothing may become non-finite, and the state stays float32.
    optimizer = Prodigy()
    variables = [
        keras.Variable(np.linspace(-1.0, 1.0, 6), dtype=dtype) for dtype in ("float16", "bfloat16")
    ]
    step = compiled_apply(optimizer, variables)
    for _ in range(3):
        step([keras.ops.convert_to_tensor(v) for v in variables])
    for index, variable in enumerate(variables):
        velocity = optimizer._velocities[index]
        assert keras.backend.standardize_dtype(velocity.dtype) == "float32"
        assert np.all(np.isfinite(np.array(velocity))) and np.all(np.array(velocity)[[0, 5]] > 0)
        value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
        assert np.all(np.isfinite(value))
    assert float(np.array(optimizer.d)) == np.float32(1e-6)


def test_config_round_trip_keeps_every_argument():
    optimizer = Prodigy(
        learning_rate=0.5, beta_1=0.8, beta_2=0.99, beta_3=0.95, epsilon=1e-6,
        weight_decay=0.01, decouple=False, bias_correction=True, safeguard_warmup=True,
        d0=1e-5, d_coef=2, growth_rate=1.02,
    )
    restored = Prodigy.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.d_coef == 2.0 and restored.safeguard_warmup is True
    defaults = Prodigy.from_config(Prodigy().get_config())
    assert defaults.growth_rate == math.inf and defaults.beta_3 is None


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("beta_3", 1.5, r"`beta_3` must be in \[0, 1\]. Received: beta_3=1.5"),
        ("epsilon", 0, r"`epsilon` must be in \(0, inf\). Received: epsilon=0"),
        ("weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("decouple", 1, r"`decouple` must be True or False. Received: decouple=1"),
        ("bias_correction", "yes", r"`bias_correction` must be True or False"),
        ("safeguard_warmup", None, r"`safeguard_warmup` must be True or False"),
        ("d0", 0.0, r"`d0` must be in \(0, inf\). Received: d0=0.0"),
        ("d_coef", -1, r"`d_coef` must be in \(0, inf\). Received: d_coef=-1"),
        ("growth_rate", 0.5, r"`growth_rate` must be in \[1, inf\]. Received: growth_rate=0.5"),
        ("growth_rate", float("nan"), r"`growth_rate` must be in \[1, inf\]. Received: growth_rate=nan"),
        ("growth_rate", "fast", r"`growth_rate` must be a number in \[1, inf\]"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Prodigy(**{argument: value})
