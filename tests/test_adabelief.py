"""AdaBelief against an independent NumPy transcription of the paper's
equations (Zhuang et al. 2020, Algorithm 2), with RAdam's rectification
(Liu et al. 2020) and AMSGrad's maximum as options; and TensorFlow Addons'
published numbers."""

import keras
import numpy as np
import pytest

from conftest import build_optimizer, compiled_apply, small_model, weights_of
from keras_optlab import optimizers
from keras_optlab.optimizers import AdaBelief
from keras_optlab.schedules import Warmup


def adabelief_reference(
    theta, gradients, lr, beta_1=0.9, beta_2=0.999, eps=1e-14, amsgrad=False,
    rectify=False, threshold=5.0, sgd_below=True, weight_decay=0.0, belief=True,
):
    """Float64 AdaBelief. `gradients(theta, t)` gives g_t. With
    `belief=False`, Adam's g^2 replaces (g - m)^2 (to show the inputs tell
    them apart). Returns the trajectory, s after each step, and whether each
    step was rectified."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    s = np.zeros_like(theta)
    s_max = np.zeros_like(theta)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    thetas, ss, rectified = [], [], []
    for t in range(1, len(lr) + 1):
        g = gradients(theta, t)
        theta = theta - lr[t - 1] * weight_decay * theta
        m = beta_1 * m + (1 - beta_1) * g
        surprise = (g - m) ** 2 if belief else g**2
        s = beta_2 * s + (1 - beta_2) * surprise + eps
        s_max = np.maximum(s_max, s)
        m_hat = m / (1 - beta_1**t)
        s_hat = (s_max if amsgrad else s) / (1 - beta_2**t)
        adaptive = m_hat / (np.sqrt(s_hat) + eps)
        if not rectify:
            theta = theta - lr[t - 1] * adaptive
            rectified.append(False)
        else:
            rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
            if rho_t >= threshold:
                r_t = np.sqrt(
                    (rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                )
                theta = theta - lr[t - 1] * r_t * adaptive
                rectified.append(True)
            else:
                if sgd_below:
                    theta = theta - lr[t - 1] * m_hat
                rectified.append(False)
        thetas.append(theta.copy())
        ss.append(s.copy())
    return np.array(thetas), np.array(ss), np.array(rectified)


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
THETA = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
# A fixed, reproducible noise: the gradient wanders around its mean, so
# g - m is far from g and the belief differs from Adam's second moment.
NOISE = np.random.default_rng(7).normal(size=(400, 5)) * np.array([0.05, 0.5, 0.2, 1.0, 0.02])


def noisy_quadratic(x, t):
    return CURVATURE * x + 0.3 + NOISE[t - 1]


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize(
    "beta_2, threshold, sgd_below",
    [(0.999, 5.0, True), (0.99, 4.0, True), (0.95, 6.0, False)],
)
def test_rectified_matches_reference_on_both_sides_of_threshold(
    beta_2, threshold, sgd_below, amsgrad
):
    steps = 120
    optimizer = AdaBelief(
        learning_rate=0.01, beta_2=beta_2, rectify=True, threshold=threshold,
        degenerated_to_sgd=sgd_below, amsgrad=amsgrad,
    )
    actual, _ = run(optimizer, THETA, noisy_quadratic, steps)
    expected, _, rectified = adabelief_reference(
        THETA, noisy_quadratic, [0.01] * steps, beta_2=beta_2, rectify=True,
        threshold=threshold, sgd_below=sgd_below, amsgrad=amsgrad,
    )
    # The run really covers both regimes.
    assert rectified.any() and not rectified.all()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_matches_reference_and_the_belief_term_matters(amsgrad):
    steps = 150
    optimizer = AdaBelief(learning_rate=0.01, amsgrad=amsgrad)
    actual, variable = run(optimizer, THETA, noisy_quadratic, steps)
    expected, ss, _ = adabelief_reference(
        THETA, noisy_quadratic, [0.01] * steps, amsgrad=amsgrad
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)
    belief = optimizer._beliefs[optimizer._get_variable_index(variable)]
    np.testing.assert_allclose(np.array(belief), ss[-1], rtol=1e-5)
    # With g^2 in place of (g - m)^2 the same inputs give another trajectory.
    adam_like, _, _ = adabelief_reference(
        THETA, noisy_quadratic, [0.01] * steps, amsgrad=amsgrad, belief=False
    )
    assert np.max(np.abs(adam_like - expected)) > 1e-2


def test_epsilon_below_float32_resolution_changes_nothing_at_typical_s():
    # With s well above 2^24 * 1e-14 = 1.7e-7, both additions of epsilon
    # round away in float32: the run is bit for bit the epsilon = 0 run. In
    # float64 they change the trajectory by far less than the 1e-5 tolerance
    # of the reference test, so nothing is lost. Eager steps: each operation
    # rounds as written. Compiled, epsilon = 0 lets XLA drop the additions
    # and rewrite m / sqrt(s) as m * rsqrt(s), rounded differently (1 ulp
    # apart on TensorFlow and JAX), which says nothing about epsilon.
    steps = 150
    with_epsilon, _ = run(AdaBelief(learning_rate=0.01), THETA, noisy_quadratic, steps, compiled=False)
    without, _ = run(AdaBelief(learning_rate=0.01, epsilon=0.0), THETA, noisy_quadratic, steps, compiled=False)
    np.testing.assert_array_equal(with_epsilon, without)
    _, ss, _ = adabelief_reference(THETA, noisy_quadratic, [0.01] * steps)
    assert ss.min() > 1.7e-7


STEADY = np.array([1.0, -0.5, 0.01])


def _steady(x, t):
    return STEADY


def test_steady_gradient_is_held_by_the_epsilon_floor_in_float32():
    # A constant gradient: in the equations g - m_t = beta_1^t g vanishes
    # and s decays to the floor eps / (1 - beta_2) = 1e-13. In float32, m
    # stops a few ulps short of g (the increment (1 - beta_1)(g - m) rounds
    # away), so s keeps an extra (g - m)^2 < (2^-23 |g| / (1 - beta_1))^2;
    # for |g| = 0.01 that is 1e-16 of 1e-13 and the floor is what remains.
    steps = 400
    optimizer = AdaBelief(learning_rate=1e-3, beta_2=0.9)
    actual, _ = run(optimizer, np.zeros(3), _steady, steps)
    expected, ss, _ = adabelief_reference(np.zeros(3), _steady, [1e-3] * steps, beta_2=0.9)
    floor = 1e-14 / (1 - 0.9)
    np.testing.assert_allclose(ss[-1], floor, rtol=1e-3)
    belief = np.array(optimizer._beliefs[0]).astype(np.float64)
    assert np.all(belief >= floor * (1 - 1e-6))
    assert np.all(belief - floor <= (2.0**-23 * np.abs(STEADY) / (1 - 0.9)) ** 2)
    np.testing.assert_allclose(belief[2], floor, rtol=1e-3)
    assert np.all(np.isfinite(actual))
    # The small coordinate follows the float64 reference; the others take
    # steps within a factor sqrt(1 + 1.4e-12 / 1e-13) < 4 of it.
    np.testing.assert_allclose(actual[:, 2], expected[:, 2], rtol=1e-3)
    ratio = np.diff(actual[-2:], axis=0) / np.diff(expected[-2:], axis=0)
    assert np.all((ratio > 0.25) & (ratio <= 1.0 + 1e-6))


def test_epsilon_inside_s_is_what_bounds_the_step():
    # Without the floor (epsilon = 0) s of the steady gradient 0.01 keeps
    # falling until only float32's residual (g - m)^2 holds it, and the step
    # grows far beyond the floored one (about 85 times here).
    def last_step(epsilon):
        optimizer = AdaBelief(learning_rate=1e-3, beta_2=0.9, epsilon=epsilon)
        trajectory, _ = run(optimizer, np.zeros(3), _steady, 400)
        return abs(trajectory[-1, 2] - trajectory[-2, 2])

    assert last_step(0.0) > 30 * last_step(1e-14)


# TensorFlow Addons' tests (tensorflow_addons/optimizers/tests/
# adabelief_test.py) start from [1, 2] and [3, 4] with constant gradients;
# their "sparse" gradients touch one coordinate each, which for AdaBelief is
# the dense update with a zero gradient elsewhere. They compare at atol 2e-4.
DENSE = ([[0.1, 0.2], [0.03, 0.04]], 100)
SPARSE = ([[0.1, 0.0], [0.0, 0.04]], 200)


def _tfa_sample(optimizer, gradients, iterations):
    variables = [keras.Variable(np.array([1.0, 2.0], "float32")),
                 keras.Variable(np.array([3.0, 4.0], "float32"))]
    grads = [np.array(g, "float32") for g in gradients]
    step = compiled_apply(optimizer, variables)
    for _ in range(iterations):
        step(grads)
    return [np.array(v) for v in variables]


class _CountedFromOne(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule read one step later: TensorFlow Addons' built-in warmup
    counted steps from 1."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, step):
        return self.schedule(keras.ops.cast(step, "float32") + 1.0)


@pytest.mark.parametrize(
    "arguments, sample, expected",
    [
        ({}, DENSE, [[0.66723955, 1.6672393], [2.6672382, 3.6672382]]),
        ({"amsgrad": True}, DENSE, [[0.67249274, 1.6724932], [2.6724923, 3.6724923]]),
        ({"weight_decay": 0.01}, DENSE, [[0.66637343, 1.6653734], [2.6643748, 3.6633751]]),
        ({}, SPARSE, [[0.0538936, 2.0], [3.0, 3.0538926]]),
        ({"amsgrad": True}, SPARSE, [[0.09575394, 2.0], [3.0, 3.0957537]]),
        ({"rectify": True}, SPARSE, [[0.7836679, 2.0], [3.0, 3.7839665]]),
        (
            {"learning_rate": _CountedFromOne(
                Warmup(keras.optimizers.schedules.PolynomialDecay(1e-3, 90, 1e-5), 10)
            )},
            DENSE,
            [[0.85635465, 1.8563547], [2.8563545, 3.8563545]],
        ),
    ],
    ids=["dense", "dense-amsgrad", "dense-weight-decay", "sparse", "sparse-amsgrad",
         "sparse-rectify", "dense-warmup"],
)
def test_tensorflow_addons_published_values(arguments, sample, expected):
    arguments = {"learning_rate": 1e-3, **arguments}
    actual = _tfa_sample(AdaBelief(**arguments), *sample)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, atol=1e-5)


def test_first_steps_below_threshold_are_momentum_steps():
    # With beta_2 = 0.999, rho_t < 5 for t <= 5 and >= 5 from t = 6.
    optimizer = AdaBelief(learning_rate=0.1, rectify=True)
    variable = keras.Variable(np.zeros(1, "float32"))
    apply = compiled_apply(optimizer, [variable])
    for step in range(1, 7):
        before = float(np.array(variable)[0])
        apply([np.ones(1, "float32")])
        moved = before - float(np.array(variable)[0])
        if step <= 5:
            # Constant gradient 1: bias-corrected momentum is exactly 1.
            assert moved == pytest.approx(0.1, rel=1e-6)
        else:
            assert moved != pytest.approx(0.1, rel=1e-3)


def test_matches_reference_with_a_schedule_lr_scale_and_weight_decay():
    steps = 100
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=10, decay_rate=0.8)
    optimizer = AdaBelief(learning_rate=schedule, rectify=True, weight_decay=0.1)
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.05 * 0.8 ** (t / 10) for t in range(steps)]
    actual, _ = run(optimizer, THETA, noisy_quadratic, steps)
    expected, _, _ = adabelief_reference(
        THETA, noisy_quadratic, rates, rectify=True, weight_decay=0.1
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_registry_names_choose_rectification():
    assert optimizers.get("adabelief").rectify is False
    assert optimizers.get("rectified_adabelief").rectify is True


def test_amsgrad_state_is_saved_and_restored(tmp_path):
    model = small_model()
    model.compile(optimizer=AdaBelief(amsgrad=True, rectify=True), loss="mse")
    build_optimizer(model)
    # State to save: a few compiled steps on the model's variables, no fit.
    step = compiled_apply(model.optimizer, model.trainable_variables)
    for t in range(1, 5):
        step([np.full(w.shape, 0.2 / t, "float32") for w in weights_of(model)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.optimizer.amsgrad and restored.optimizer.rectify
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, on both sides of the threshold (rectified from step 6).
    def trajectory(compiled):
        optimizer = AdaBelief(learning_rate=0.01, rectify=True, amsgrad=True)
        return run(optimizer, THETA, noisy_quadratic, 24, compiled=compiled)[0]

    np.testing.assert_allclose(trajectory(True), trajectory(False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("threshold", 3.5, r"`threshold` must be in \[4, inf\). Received: threshold=3.5"),
        ("rectify", "yes", r"`rectify` must be True or False. Received: rectify='yes'"),
        ("amsgrad", 0, r"`amsgrad` must be True or False. Received: amsgrad=0"),
        ("degenerated_to_sgd", None,
         r"`degenerated_to_sgd` must be True or False. Received: degenerated_to_sgd=None"),
        ("epsilon", -1e-14, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1e-14"),
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        AdaBelief(**{argument: value})
