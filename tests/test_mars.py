"""MARS-AdamW against an independent NumPy transcription of the authors'
code (AGI-Arena/MARS, `MARS/optimizers/mars.py`, mars_type="mars-adamw",
is_approx=True): the corrected gradient c_t = g_t + gamma beta_1/(1 -
beta_1) (g_t - g_{t-1}) with g_0 = 0, clipped to norm 1 per tensor, AdamW
moments on it with epsilon after the bias correction, and AdamW with its
own betas, rate factor and weight decay for variables that are not
matrices."""

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers.mars import MARS


def mars_reference(
    thetas, gradients, lr, beta_1=0.95, beta_2=0.99, epsilon=1e-8, weight_decay=0.0,
    gamma=0.025, amsgrad=False, optimize_1d=False, learning_rate_1d_factor=1.0,
    beta_1_1d=0.9, beta_2_1d=0.95, weight_decay_1d=0.1,
):
    """Float64 MARS-AdamW on a list of variables. `gradients(thetas, t)`
    gives the list of gradients at step t = 1, 2, ...; returns, per
    variable, its values after each step, and per step whether the norm
    clip bound each MARS-path variable."""
    thetas = [np.array(x, np.float64) for x in thetas]
    m = [np.zeros_like(x) for x in thetas]
    v = [np.zeros_like(x) for x in thetas]
    v_max = [np.zeros_like(x) for x in thetas]
    last = [np.zeros_like(x) for x in thetas]
    history = [[] for _ in thetas]
    clipped = []
    for t in range(1, len(lr) + 1):
        grads = gradients(thetas, t)
        clipped.append([])
        for i, (x, g) in enumerate(zip(thetas, grads)):
            if optimize_1d or x.ndim == 2:
                b1, b2, rate, decay = beta_1, beta_2, lr[t - 1], weight_decay
                c = g + gamma * beta_1 / (1 - beta_1) * (g - last[i])
                norm = np.linalg.norm(c)
                clipped[-1].append(norm > 1)
                if norm > 1:
                    c = c / norm
                last[i] = g
            else:
                b1, b2 = beta_1_1d, beta_2_1d
                rate, decay = lr[t - 1] * learning_rate_1d_factor, weight_decay_1d
                c = g
            m[i] = b1 * m[i] + (1 - b1) * c
            v[i] = b2 * v[i] + (1 - b2) * c * c
            v_max[i] = np.maximum(v_max[i], v[i])
            second = v_max[i] if amsgrad else v[i]
            denominator = (np.sqrt(second) / np.sqrt(1 - b2**t) + epsilon) * (1 - b1**t)
            thetas[i] = x - rate * (decay * x + m[i] / denominator)
            history[i].append(thetas[i].copy())
    return [np.array(h) for h in history], np.array(clipped)


def run(optimizer, thetas, gradients, steps):
    """The optimizer's trajectories on float32 variables, each step compiled
    as fit compiles it; `gradients(xs, t)` is evaluated at the variables'
    current values."""
    variables = [keras.Variable(np.asarray(x, "float32")) for x in thetas]
    step = compiled_apply(optimizer, variables)
    history = [[] for _ in variables]
    for t in range(1, steps + 1):
        values = [np.array(v).astype(np.float64) for v in variables]
        step([g.astype("float32") for g in gradients(values, t)])
        for h, v in zip(history, variables):
            h.append(np.array(v).astype(np.float64))
    return [np.array(h) for h in history], variables


RNG = np.random.default_rng(3)
KERNEL_TARGET = RNG.uniform(-1.0, 1.0, size=(4, 3)) + np.sign(RNG.normal(size=(4, 3)))
KERNEL = KERNEL_TARGET + RNG.uniform(-1.5, 1.5, size=(4, 3))
CURVATURE = RNG.uniform(0.3, 1.5, size=(4, 3))
BIAS = np.array([1.0, -1.0, 2.0])
BIAS_TARGET = np.array([0.6, -1.4, 1.5])
STEPS = 240
NOISE = RNG.normal(size=(STEPS + 1, 4 * 3 + 3))


def noisy_quadratic(values, t):
    # A quadratic around targets away from 0, plus noise that differs at
    # every step, so that g_t - g_{t-1} is large: the kernel's gradient
    # norm starts near 3 (c_t is clipped) and falls to the noise's, about
    # 0.3, once the kernel is near its target (c_t is not clipped).
    kernel, bias = values
    noise = 0.08 * NOISE[t]
    return [
        CURVATURE * (kernel - KERNEL_TARGET) + noise[:12].reshape(4, 3),
        bias - BIAS_TARGET + noise[12:],
    ]


def relative_error(actual, expected):
    """Per step, |actual - expected| / |expected| over the whole variable."""
    axes = tuple(range(1, actual.ndim))
    return np.sqrt(((actual - expected) ** 2).sum(axes) / (expected**2).sum(axes))


TOLERANCE = 1e-5


def assert_matches(actual, expected):
    for a, e in zip(actual, expected):
        assert relative_error(a, e).max() < TOLERANCE


LR = [0.01] * STEPS


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"amsgrad": True, "epsilon": 1e-3},
        {"optimize_1d": True, "gamma": 0.1},
        {"weight_decay": 0.1, "weight_decay_1d": 0.3, "learning_rate_1d_factor": 0.5,
         "beta_1_1d": 0.8, "beta_2_1d": 0.99, "beta_1": 0.9, "beta_2": 0.999},
    ],
    ids=["defaults", "amsgrad-eps", "optimize-1d-gamma", "decays-1d-settings"],
)
def test_matches_numpy_reference_while_the_correction_and_the_clip_act(options):
    optimizer = MARS(learning_rate=0.01, **options)
    actual, _ = run(optimizer, [KERNEL, BIAS], noisy_quadratic, STEPS)
    expected, clipped = mars_reference([KERNEL, BIAS], noisy_quadratic, LR, **options)
    # The kernel's c_t was clipped on the first steps, and not on others.
    assert clipped[:10, 0].all() and not clipped[:, 0].all()
    # The correction term matters: without it (gamma = 0) the kernel's
    # steps differ from these by 250 times the tolerance or more.
    uncorrected, _ = mars_reference(
        [KERNEL, BIAS], noisy_quadratic, LR, **{**options, "gamma": 0.0}
    )
    assert relative_error(uncorrected[0], expected[0]).max() > 250 * TOLERANCE
    assert_matches(actual, expected)


def test_first_step_corrects_against_a_zero_previous_gradient():
    # c_1 = (1 + 0.025 * 0.95 / 0.05) g_1 = 1.475 g_1 (norm below 1 here),
    # m_1 = 0.05 c_1, and g_1 is kept for the next step.
    optimizer = MARS(learning_rate=0.01)
    kernel = keras.Variable(np.ones((2, 2), "float32"))
    step = compiled_apply(optimizer, [kernel])
    gradient = np.array([[0.1, -0.2], [0.05, 0.3]], "float32")
    step([gradient])
    np.testing.assert_allclose(np.array(optimizer._momentums[0]), 0.05 * 1.475 * gradient, rtol=1e-6)
    np.testing.assert_array_equal(np.array(optimizer._previous_gradients[0]), gradient)


def test_clip_is_per_tensor():
    # Two kernels with the same gradient direction and norms 10 and 0.5:
    # the first c_t is scaled to norm 1, the second is left alone, whatever
    # the global norm. First step: m_1 = 0.05 clip(1.475 g).
    optimizer = MARS(learning_rate=0.01)
    big = keras.Variable(np.zeros((2, 2), "float32"))
    small = keras.Variable(np.zeros((2, 2), "float32"))
    direction = np.array([[0.6, 0.0], [0.0, -0.8]], "float32")
    compiled_apply(optimizer, [big, small])([10.0 * direction, 0.5 * direction])
    np.testing.assert_allclose(np.array(optimizer._momentums[0]), 0.05 * direction, rtol=1e-6)
    np.testing.assert_allclose(
        np.array(optimizer._momentums[1]), 0.05 * 1.475 * 0.5 * direction, rtol=1e-6
    )


def test_only_rank_two_variables_take_the_mars_path():
    # A convolution kernel (rank 4), a bias and a scalar take the AdamW
    # path (no previous-gradient slot); a matrix takes the MARS path.
    optimizer = MARS()
    shapes = [(3, 3, 2, 4), (4,), (), (5, 4)]
    variables = [keras.Variable(np.zeros(s, "float32")) for s in shapes]
    optimizer.build(variables)
    assert [p is not None for p in optimizer._previous_gradients] == [False, False, False, True]
    # With optimize_1d every variable keeps one.
    everything = MARS(optimize_1d=True)
    everything.build([keras.Variable(np.zeros(s, "float32")) for s in shapes])
    assert all(p is not None for p in everything._previous_gradients)
    assert len(everything.variables) == len(optimizer.variables) + 3


def test_matches_reference_with_a_schedule_and_lr_scale():
    steps = 200
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=20, decay_rate=0.8)
    optimizer = MARS(learning_rate=schedule, weight_decay=0.05)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.02 * 0.8 ** (t / 20) for t in range(steps)]
    actual, _ = run(optimizer, [KERNEL, BIAS], noisy_quadratic, steps)
    expected, _ = mars_reference([KERNEL, BIAS], noisy_quadratic, rates, weight_decay=0.05)
    assert_matches(actual, expected)


def test_excluded_variables_are_not_decayed_on_either_path():
    optimizer = MARS(learning_rate=0.01, weight_decay=0.5, weight_decay_1d=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kept"])
    variables = [
        keras.Variable(np.ones((2, 2), "float32"), name="kept_kernel"),
        keras.Variable(np.ones(2, "float32"), name="kept_bias"),
    ]
    step = compiled_apply(optimizer, variables)
    for _ in range(5):
        step([np.full((2, 2), 0.1, "float32"), np.full(2, 0.1, "float32")])
    expected, _ = mars_reference(
        [np.ones((2, 2)), np.ones(2)],
        lambda xs, t: [np.full((2, 2), 0.1), np.full(2, 0.1)],
        [0.01] * 5, weight_decay=0.0, weight_decay_1d=0.0,
    )
    for variable, values in zip(variables, expected):
        np.testing.assert_allclose(np.array(variable), values[-1], rtol=1e-6)


def test_bfloat16_variable_moves_with_float32_coefficients():
    optimizer = MARS(learning_rate=0.1)
    variable = keras.Variable(np.ones((2, 2)), dtype="bfloat16")
    for _ in range(3):
        optimizer.apply([keras.ops.full((2, 2), 0.1, dtype="bfloat16")], [variable])
    value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
    assert np.all(value < 0.8) and np.all(np.isfinite(value))


def test_config_round_trip_keeps_every_argument():
    optimizer = MARS(
        learning_rate=0.02, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01,
        gamma=0.05, amsgrad=True, optimize_1d=True, learning_rate_1d_factor=0.5,
        beta_1_1d=0.8, beta_2_1d=0.9, weight_decay_1d=0.0,
    )
    restored = MARS.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.amsgrad is True and restored.optimize_1d is True
    assert restored.learning_rate_1d_factor == 0.5 and restored.weight_decay == 0.01


def test_integer_arguments_are_accepted():
    optimizer = MARS(learning_rate=1, beta_1=0, gamma=0, weight_decay=0, learning_rate_1d_factor=2,
                     weight_decay_1d=0)
    assert optimizer.learning_rate_1d_factor == 2.0 and optimizer.gamma == 0.0


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
        ("beta_2", 1.5, r"`beta_2` must be in \[0, 1\). Received: beta_2=1.5"),
        ("epsilon", -1e-8, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1e-08"),
        ("weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("gamma", -0.025, r"`gamma` must be in \[0, inf\). Received: gamma=-0.025"),
        ("gamma", None, r"`gamma` must be a number in \[0, inf\). Received: gamma=None"),
        ("amsgrad", "yes", r"`amsgrad` must be True or False. Received: amsgrad='yes'"),
        ("optimize_1d", 0, r"`optimize_1d` must be True or False. Received: optimize_1d=0"),
        ("learning_rate_1d_factor", float("nan"),
         r"`learning_rate_1d_factor` must be in \[0, inf\). Received: learning_rate_1d_factor=nan"),
        ("beta_1_1d", 1.0, r"`beta_1_1d` must be in \[0, 1\). Received: beta_1_1d=1.0"),
        ("beta_2_1d", -0.5, r"`beta_2_1d` must be in \[0, 1\). Received: beta_2_1d=-0.5"),
        ("weight_decay_1d", -1, r"`weight_decay_1d` must be in \[0, inf\). Received: weight_decay_1d=-1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        MARS(**{argument: value})
