"""DAdaptAdam against an independent NumPy (float64) transcription of
`DAdaptAdam.step` in the authors' `dadaptation` 3.2, on a problem where d
grows from 1e-6 by six orders of magnitude, with each option on a shorter
run."""

import math

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers.dadapt_adam import DAdaptAdam


def dadapt_adam_reference(
    start, gradients, rates, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
    decouple=False, bias_correction=False, d0=1e-6, growth_rate=math.inf,
):
    """Float64 D-Adaptation Adam over a list of arrays. `gradients(xs, t)`
    gives the gradients at step t; `rates[t]` is the learning rate of step
    t. Returns, after each call, the arrays and (d, numerator, steps taken)."""
    sqrt_beta_2 = math.sqrt(beta_2)
    xs = [np.array(x, np.float64) for x in start]
    ms, vs, ss = ([np.zeros_like(x) for x in xs] for _ in range(3))
    d, numerator, k = d0, 0.0, 0
    trajectory, scalars = [], []
    for t, rate in enumerate(rates):
        gs = [np.array(g, np.float64) for g in gradients(xs, t)]
        if weight_decay and not decouple:
            gs = [g + weight_decay * x for g, x in zip(gs, xs)]
        rho = math.sqrt(1 - beta_2 ** (k + 1)) / (1 - beta_1 ** (k + 1)) if bias_correction else 1.0
        dlr = d * rate * rho
        increment, denominator = 0.0, 0.0
        if rate > 0:
            for i, g in enumerate(gs):
                # s and v of the step before.
                increment += dlr * np.sum(g * ss[i] / (np.sqrt(vs[i]) + epsilon))
                ms[i] = beta_1 * ms[i] + dlr * (1 - beta_1) * g
                vs[i] = beta_2 * vs[i] + (1 - beta_2) * g * g
                ss[i] = sqrt_beta_2 * ss[i] + dlr * (1 - sqrt_beta_2) * g
                denominator += np.sum(np.abs(ss[i]))
        if denominator > 0:  # the reference returns here otherwise
            numerator = sqrt_beta_2 * numerator + (1 - sqrt_beta_2) * increment
            d_hat = numerator / ((1 - sqrt_beta_2) * denominator)
            d = max(d, min(d_hat, d * growth_rate))
            for i, x in enumerate(xs):
                x -= weight_decay * dlr * x if decouple else 0.0
                x -= ms[i] / (np.sqrt(vs[i]) + epsilon)
            k += 1
        trajectory.append(np.concatenate([x.ravel() for x in xs]))
        scalars.append((d, numerator, k))
    return np.array(trajectory), np.array(scalars)


# A quadratic over two variables (a matrix and a vector), minimum at TARGETS
# about 3 away from the start: d must grow from d0 = 1e-6 to about 5.
RNG = np.random.default_rng(0)
CURVATURES = [RNG.uniform(0.2, 2.0, size=(3, 4)), RNG.uniform(0.2, 2.0, size=(4,))]
TARGETS = [3.0 * RNG.normal(size=(3, 4)), 3.0 * RNG.normal(size=(4,))]
START = [0.1 * RNG.normal(size=(3, 4)), 0.1 * RNG.normal(size=(4,))]


def quadratic_gradients(xs, t):
    return [a * (x - target) for a, x, target in zip(CURVATURES, xs, TARGETS)]


def run(optimizer, rates_or_steps, gradients=quadratic_gradients):
    """The optimizer's compiled steps from START: the concatenated variables
    and (d, numerator, steps taken) after each step."""
    steps = rates_or_steps if isinstance(rates_or_steps, int) else len(rates_or_steps)
    variables = [keras.Variable(x.astype("float32")) for x in START]
    step = compiled_apply(optimizer, variables)
    trajectory, scalars = [], []
    for t in range(steps):
        values = [np.array(v).astype(np.float64) for v in variables]
        step([g.astype("float32") for g in gradients(values, t)])
        trajectory.append(np.concatenate([np.array(v).ravel() for v in variables]))
        scalars.append([float(np.array(v)) for v in (
            optimizer.d, optimizer.d_numerator, optimizer.steps_taken
        )])
    return np.array(trajectory, np.float64), np.array(scalars)


def reference_start():
    # The reference starts from the float32 values the variables hold.
    return [x.astype("float32") for x in START]


def assert_matches(actual, expected, rtol=1e-4):
    trajectory, scalars = actual
    expected_trajectory, expected_scalars = expected
    # Plus 1e-5 of the trajectory's scale (|x| up to ~10) for the
    # coordinates that cross zero on the way.
    scale = np.abs(expected_trajectory).max()
    np.testing.assert_allclose(trajectory, expected_trajectory, rtol=rtol, atol=1e-5 * scale)
    np.testing.assert_allclose(scalars[:, 0], expected_scalars[:, 0], rtol=rtol)
    np.testing.assert_array_equal(scalars[:, 2], expected_scalars[:, 2])


def test_matches_the_reference_over_200_steps_as_d_grows_a_million_fold():
    steps = 200
    actual = run(DAdaptAdam(), steps)
    expected = dadapt_adam_reference(reference_start(), quadratic_gradients, [1.0] * steps)
    d = expected[1][:, 0]
    # The distinctive feature happened: d grew from 1e-6 by over six
    # orders of magnitude, step by step over ten steps, not at once.
    assert d[-1] > 1e6 * 1e-6
    assert np.sum(d[1:] > d[:-1] * (1 + 1e-6)) >= 10
    assert_matches(actual, expected)
    # float32 against float64 after 200 steps: d to 1e-5, and the numerator
    # r while d grows (later it is a sum that cancels to a few percent of
    # its terms, and d no longer reads it).
    np.testing.assert_allclose(actual[1][:, 0], d, rtol=1e-5)
    np.testing.assert_allclose(actual[1][:20, 1], expected[1][:20, 1], rtol=1e-4)


# Each option with the learning rate it needs to show it.
OPTION_CASES = {
    "bias_correction": (dict(bias_correction=True), 1.0),
    "coupled_weight_decay": (dict(weight_decay=0.5), 1.0),
    # Scaled by d (about 5 here): a larger decay diverges.
    "decoupled_weight_decay": (dict(weight_decay=0.05, decouple=True), 1.0),
    # r reads v_k, not v_{k+1}: visible with a large epsilon and a short
    # memory of v.
    "epsilon_betas_d0_learning_rate": (
        dict(epsilon=0.1, beta_1=0.0, beta_2=0.9, d0=1e-4), 0.5
    ),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_each_option_matches_the_reference(case):
    steps = 40
    options, rate = OPTION_CASES[case]
    actual = run(DAdaptAdam(learning_rate=rate, **options), steps)
    rates = [rate] * steps
    expected = dadapt_adam_reference(reference_start(), quadratic_gradients, rates, **options)
    assert_matches(actual, expected)
    # The option changed the run.
    default, _ = dadapt_adam_reference(reference_start(), quadratic_gradients, [1.0] * steps)
    assert np.abs(expected[0] - default).max() > 1e-2 * np.abs(default).max()


def test_growth_rate_caps_each_step_from_the_first():
    steps = 40
    actual = run(DAdaptAdam(growth_rate=1.5), steps)
    expected = dadapt_adam_reference(
        reference_start(), quadratic_gradients, [1.0] * steps, growth_rate=1.5
    )
    assert_matches(actual, expected)
    # Unlike Prodigy's, the cap holds from d0 on, and it really binds.
    d = np.concatenate([[np.float32(1e-6)], actual[1][:, 0]])
    ratios = d[1:] / d[:-1]
    assert np.all(ratios <= 1.5 * (1 + 1e-6))
    assert np.sum(np.isclose(ratios, 1.5, rtol=1e-5)) >= 10


def test_steps_at_learning_rate_zero_are_not_taken_and_lr_scale_multiplies_d():
    # Three steps at rate 0 (a warmup from 0) leave everything as it was,
    # and are not counted by the bias correction, as in the reference;
    # then the rate is 0.8 times lr_scale 0.5.
    steps = 40
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.0, 0.8])
    optimizer = DAdaptAdam(learning_rate=schedule, bias_correction=True)
    optimizer.lr_scale.assign(0.5)
    rates = [0.0] * 3 + [0.4] * (steps - 3)
    actual = run(optimizer, steps)
    expected = dadapt_adam_reference(
        reference_start(), quadratic_gradients, rates, bias_correction=True
    )
    start = np.concatenate([x.ravel() for x in reference_start()])
    np.testing.assert_array_equal(actual[0][:3], np.stack([start] * 3))
    d0 = float(np.float32(1e-6))
    np.testing.assert_array_equal(actual[1][:3], [[d0, 0.0, 0.0]] * 3)
    assert actual[1][-1, 2] == steps - 3
    assert d0 * 100 < actual[1][-1, 0]
    assert_matches(actual, expected)


def test_steps_with_every_gradient_zero_so_far_are_not_taken():
    # The reference returns when the sum of |s| is 0: d, r and the step
    # count stay (so the bias correction starts at the first real step).
    steps = 30

    def gradients(xs, t):
        return [g * (t >= 4) for g in quadratic_gradients(xs, t)]

    actual = run(DAdaptAdam(bias_correction=True), steps, gradients)
    expected = dadapt_adam_reference(
        reference_start(), gradients, [1.0] * steps, bias_correction=True
    )
    d0 = float(np.float32(1e-6))
    np.testing.assert_array_equal(actual[1][:4], [[d0, 0.0, 0.0]] * 4)
    start = np.concatenate([x.ravel() for x in reference_start()])
    np.testing.assert_array_equal(actual[0][:4], np.stack([start] * 4))
    assert actual[1][-1, 2] == steps - 4
    assert_matches(actual, expected)


def test_first_step_keeps_d0_and_moves_each_coordinate_by_about_3_d0():
    # r_1 = 0 since s_0 = 0, so d stays d0; the step is
    # d0 (1 - b1) g / (sqrt(1 - b2) |g| + eps).
    optimizer = DAdaptAdam()
    variable = keras.Variable(np.array([0.5, -2.0, 0.0], "float32"))
    gradient = np.array([1.0, -0.01, 4.0], "float32")
    compiled_apply(optimizer, [variable])([gradient])
    step = 1e-6 * 0.1 * gradient / (np.sqrt(0.001) * np.abs(gradient) + 1e-8)
    np.testing.assert_allclose(np.array(variable), [0.5, -2.0, 0.0] - step, rtol=1e-6, atol=1e-12)
    assert float(np.array(optimizer.d)) == np.float32(1e-6)
    assert float(np.array(optimizer.d_numerator)) == 0.0
    assert int(np.array(optimizer.steps_taken)) == 1


def test_low_precision_variables_keep_float32_state_and_stay_finite():
    # The first moves (3e-6) are below the resolution of float16 and
    # bfloat16 here, and s starts near 5e-10 |g|: the state must be float32.
    # d does not depend on the moves, so it grows all the same, as the
    # reference's d does for these constant gradients (x41 in three steps).
    optimizer = DAdaptAdam()
    variables = [
        keras.Variable(np.linspace(-1.0, 1.0, 6), dtype=dtype) for dtype in ("float16", "bfloat16")
    ]
    gradients = [keras.ops.convert_to_numpy(keras.ops.cast(v, "float32")) for v in variables]
    step = compiled_apply(optimizer, variables)
    for _ in range(3):
        step([keras.ops.convert_to_tensor(v) for v in variables])
    for index, variable in enumerate(variables):
        for slots in (optimizer._momentums, optimizer._velocities, optimizer._gradient_sums):
            slot = slots[index]
            assert keras.backend.standardize_dtype(slot.dtype) == "float32"
            assert np.all(np.isfinite(np.array(slot))) and np.all(np.array(slot)[[0, 5]] != 0)
        value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
        np.testing.assert_array_equal(value, gradients[index])
    _, expected = dadapt_adam_reference(gradients, lambda xs, t: gradients, [1.0] * 3)
    assert expected[-1, 0] > 40 * 1e-6
    np.testing.assert_allclose(float(np.array(optimizer.d)), expected[-1, 0], rtol=1e-5)


def test_config_round_trip_keeps_every_argument():
    optimizer = DAdaptAdam(
        learning_rate=0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.01,
        decouple=True, bias_correction=True, d0=1e-5, growth_rate=1.02,
    )
    restored = DAdaptAdam.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.decouple is True and restored.growth_rate == 1.02
    defaults = DAdaptAdam.from_config(DAdaptAdam().get_config())
    assert defaults.growth_rate == math.inf and defaults.decouple is False


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("learning_rate", -1.0, r"`learning_rate` must be in \[0, inf\). Received: learning_rate=-1.0"),
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
        ("beta_2", -0.5, r"`beta_2` must be in \[0, 1\). Received: beta_2=-0.5"),
        ("epsilon", 0, r"`epsilon` must be in \(0, inf\). Received: epsilon=0"),
        ("weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("decouple", 1, r"`decouple` must be True or False. Received: decouple=1"),
        ("bias_correction", "yes", r"`bias_correction` must be True or False"),
        ("d0", 0.0, r"`d0` must be in \(0, inf\). Received: d0=0.0"),
        ("growth_rate", 0.5, r"`growth_rate` must be in \[1, inf\]. Received: growth_rate=0.5"),
        ("growth_rate", float("nan"), r"`growth_rate` must be in \[1, inf\]. Received: growth_rate=nan"),
        ("growth_rate", "fast", r"`growth_rate` must be a number in \[1, inf\]"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DAdaptAdam(**{argument: value})
