"""Lookahead: the numbers of the paper's algorithm around SGD, Adam, RAdam and
a SwitchingOptimizer; saving in the middle of a synchronisation period; the
learning rate reaching the inner optimizer; bad arguments."""

import os

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    apply_once,
    apply_trajectory,
    assert_weights_close,
    build_optimizer,
    optimizer_state,
    regression_data,
    small_model,
    weights_of,
)
from keras_optlab import optimizers
from keras_optlab.callbacks import ReduceLROnPlateau
from keras_optlab.optimizers import Lookahead, RAdam, SwitchingOptimizer

STEPS = 100  # with sync periods 3, 6, 7: many synchronisations, 100 not a multiple


def gradient_fn(theta):
    # An ill-conditioned quadratic plus a sine, minimum near 2: the gradient
    # changes direction and size along the path, so every step's numbers
    # matter, and the weights stay away from 0, where a relative tolerance
    # would mean nothing.
    scales = np.linspace(0.5, 4.0, theta.size)
    return scales * (theta - 2.0) + 0.3 * np.sin(3.0 * theta)


START = np.linspace(0.3, 4.0, 12)


# --- NumPy references --------------------------------------------------------


def sgd_reference(learning_rate, momentum=0.0):
    """Keras' SGD: v <- mu v - lr g; theta <- theta + v."""

    def make():
        state = {"velocity": 0.0}

        def step(theta, g, t, rate_scale):
            rate = learning_rate(t) if callable(learning_rate) else learning_rate
            state["velocity"] = momentum * state["velocity"] - rate * rate_scale * g
            return theta + state["velocity"]

        return step

    return make


def adam_reference(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma & Ba with Keras' epsilon placement (beside sqrt(v), before the
    bias correction of v is applied)."""

    def make():
        state = {"m": 0.0, "v": 0.0}

        def step(theta, g, t, rate_scale):
            state["m"] = beta_1 * state["m"] + (1 - beta_1) * g
            state["v"] = beta_2 * state["v"] + (1 - beta_2) * g * g
            rate = learning_rate * rate_scale * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            return theta - rate * state["m"] / (np.sqrt(state["v"]) + epsilon)

        return step

    return make


def radam_reference(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, threshold=5.0):
    """Liu et al.'s RAdam, the authors' threshold and epsilon placement."""

    def make():
        state = {"m": 0.0, "v": 0.0}
        rho_inf = 2.0 / (1.0 - beta_2) - 1.0

        def step(theta, g, t, rate_scale):
            state["m"] = beta_1 * state["m"] + (1 - beta_1) * g
            state["v"] = beta_2 * state["v"] + (1 - beta_2) * g * g
            m_hat = state["m"] / (1 - beta_1**t)
            rho = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
            rate = learning_rate * rate_scale
            if rho >= threshold:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                return theta - rate * r * m_hat * np.sqrt(1 - beta_2**t) / (np.sqrt(state["v"]) + epsilon)
            return theta - rate * m_hat

        return step

    return make


def lookahead_reference(make_inner, theta, steps, sync_period, slow_step_size, rate_scale=1.0):
    """Algorithm 1 of Zhang et al.: the fast weights take `sync_period` inner
    steps; then phi <- phi + alpha (theta - phi) and theta <- phi. The inner
    optimizer's state is kept across synchronisations (as in the paper's
    experiments and TensorFlow Addons)."""
    inner = make_inner()
    theta = theta.astype(np.float64).copy()
    slow = theta.copy()
    trajectory = []
    for t in range(1, steps + 1):
        theta = inner(theta, gradient_fn(theta), t, rate_scale)
        if t % sync_period == 0:
            slow = slow + slow_step_size * (theta - slow)
            theta = slow.copy()
        trajectory.append(theta)
    return np.array(trajectory)


def worst_relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-3)))


# --- the numbers -------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("sync_period, slow_step_size", [(3, 0.5), (7, 0.8)])
def test_sgd_inner_matches_reference(momentum, sync_period, slow_step_size):
    optimizer = Lookahead(
        keras.optimizers.SGD(0.05, momentum=momentum),
        sync_period=sync_period,
        slow_step_size=slow_step_size,
    )
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(
        sgd_reference(0.05, momentum), START, STEPS, sync_period, slow_step_size
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert int(np.array(optimizer.iterations)) == STEPS


def _exact_adam(learning_rate, **kwargs):
    # keras_optlab's Adam formula with float32-exact coefficients (AdaBound
    # without bounds): Keras' Adam forms 1 - beta**t in float32, up to 3e-5
    # off, too far for a 1e-5 comparison over 100 steps.
    return optimizers.AdaBound(learning_rate, final_lr=None, **kwargs)


@pytest.mark.parametrize("sync_period, slow_step_size", [(6, 0.5), (7, 0.8)])
def test_adam_inner_matches_reference(sync_period, slow_step_size):
    optimizer = Lookahead(
        _exact_adam(0.05), sync_period=sync_period, slow_step_size=slow_step_size
    )
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(
        adam_reference(0.05), START, STEPS, sync_period, slow_step_size
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_keras_adam_inner_matches_reference_to_its_own_precision():
    # Keras' Adam itself differs from float64 Adam by a few 1e-5 (see above).
    optimizer = Lookahead(keras.optimizers.Adam(0.05), sync_period=6)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(adam_reference(0.05), START, STEPS, 6, 0.5)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_radam_inner_matches_reference_on_both_sides_of_its_threshold():
    # RAdam's momentum step for t < 6, its rectified step after: both inside
    # the first synchronisation periods.
    optimizer = Lookahead(RAdam(0.05), sync_period=4, slow_step_size=0.6)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(radam_reference(0.05), START, STEPS, 4, 0.6)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_registry_ranger_is_lookahead_around_radam():
    optimizer = optimizers.get("ranger", learning_rate=0.05)
    assert isinstance(optimizer.inner_optimizer, RAdam)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(radam_reference(0.05), START, STEPS, 6, 0.5)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_registry_lookahead_is_lookahead_around_adam():
    optimizer = optimizers.get("lookahead", learning_rate=0.05, sync_period=5, slow_step_size=0.7)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(adam_reference(0.05), START, STEPS, 5, 0.7)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_slow_step_size_one_is_the_inner_optimizer_alone():
    actual = apply_trajectory(
        Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3, slow_step_size=1.0),
        START, gradient_fn, 40,
    )
    alone = apply_trajectory(keras.optimizers.SGD(0.05, momentum=0.9), START, gradient_fn, 40)
    np.testing.assert_array_equal(actual, alone)


def test_weights_equal_slow_weights_right_after_each_synchronisation():
    optimizer = Lookahead(keras.optimizers.SGD(0.05), sync_period=3)
    variable = keras.Variable(START.astype("float32"))
    for step in range(1, 10):
        g = gradient_fn(np.array(variable).astype(np.float64)).astype("float32")
        apply_once(optimizer, [keras.ops.convert_to_tensor(g)], [variable])
        slow = np.array(optimizer._slow_weights[0])
        if step % 3 == 0:
            np.testing.assert_array_equal(np.array(variable), slow)
        else:
            assert not np.array_equal(np.array(variable), slow)


def test_schedule_and_lr_scale_reach_the_inner_optimizer():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.08, decay_steps=10, decay_rate=0.5)
    optimizer = Lookahead(keras.optimizers.SGD(schedule, momentum=0.5), sync_period=7)
    optimizer.lr_scale.assign(0.5)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    # The schedule is called with the inner step count before the step.
    expected = lookahead_reference(
        sgd_reference(lambda t: 0.08 * 0.5 ** ((t - 1) / 10), 0.5),
        START, STEPS, 7, 0.5, rate_scale=0.5,
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # Both see the applied rate: 0.5 * 0.08 * 0.5 ** (100 / 10).
    applied = 0.5 * 0.08 * 0.5**10
    assert float(optimizer.learning_rate) == pytest.approx(applied, rel=1e-6)
    assert float(optimizer.inner_optimizer.learning_rate) == pytest.approx(applied, rel=1e-6)


def test_inner_weight_decay_uses_the_scaled_rate():
    # AdamW's decoupled decay, lr * wd * theta, with lr scaled by lr_scale,
    # equals AdamW at the scaled rate.
    def run(optimizer):
        return apply_trajectory(optimizer, START, gradient_fn, 30)

    steered = Lookahead(keras.optimizers.AdamW(0.04, weight_decay=0.1), sync_period=4)
    steered.lr_scale.assign(0.5)
    reference = Lookahead(keras.optimizers.AdamW(0.02, weight_decay=0.1), sync_period=4)
    np.testing.assert_allclose(run(steered), run(reference), rtol=1e-6, atol=1e-7)


def test_setting_learning_rate_sets_the_inner_optimizers():
    inner = keras.optimizers.Adam(0.01)
    optimizer = Lookahead(inner)
    optimizer.learning_rate = 0.003
    assert float(np.array(inner._learning_rate)) == pytest.approx(0.003)
    assert float(optimizer.learning_rate) == pytest.approx(0.003)


def test_plateau_callback_lowers_lookaheads_lr_scale_under_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 4, 0.5)
    optimizer = Lookahead(keras.optimizers.Adam(schedule))
    model = small_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    x, y = regression_data(n=32)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0,
              callbacks=[ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)])
    # The first epoch sets the best loss; the two after it each halve.
    assert float(np.array(model.optimizer.lr_scale)) == 0.25


# --- wrapping a SwitchingOptimizer -------------------------------------------


def switching_reference(switch_step, adam_lr, sgd_lr, momentum):
    """Keras' Adam for `switch_step` steps, then SGD with momentum from
    fresh state."""

    def make():
        adam = adam_reference(adam_lr)()
        sgd = sgd_reference(sgd_lr, momentum)()

        def step(theta, g, t, rate_scale):
            if t <= switch_step:
                return adam(theta, g, t, rate_scale)
            return sgd(theta, g, t - switch_step, rate_scale)

        return step

    return make


def test_switching_inner_matches_reference_across_the_switch():
    switching = SwitchingOptimizer(
        _exact_adam(0.05), keras.optimizers.SGD(0.02, momentum=0.9), switch_step=40
    )
    optimizer = Lookahead(switching, sync_period=6)
    actual = apply_trajectory(optimizer, START, gradient_fn, STEPS)
    expected = lookahead_reference(
        switching_reference(40, 0.05, 0.02, 0.9), START, STEPS, 6, 0.5
    )
    assert int(np.array(switching.phase)) == 1
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


# --- saving ------------------------------------------------------------------


def step_on(model):
    """One `optimizer.apply` on the model's weights, eager (a compilation
    would cost more than the few steps taken), with a gradient of the
    weights alone (a bowl with a ripple): a resumed run follows the
    uninterrupted one only if both the weights and the state came back."""
    variables = model.trainable_variables
    gradients = [
        keras.ops.convert_to_tensor((0.5 * w - 0.2 + 0.3 * np.sin(3.0 * w)).astype("float32"))
        for w in (np.array(v) for v in variables)
    ]
    apply_once(model.optimizer, gradients, variables)


@pytest.mark.parametrize(
    "make_inner",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: RAdam(0.01),
        lambda: SwitchingOptimizer(
            keras.optimizers.Adam(0.01), keras.optimizers.SGD(0.01, momentum=0.9), switch_step=7
        ),
    ],
    ids=["adam", "radam", "switching"],
)
def test_saved_mid_period_resumes_exactly(make_inner, tmp_path):
    # Saved after 5 steps, two before the first synchronisation (and, with
    # the switch, three before the first SGD step); resumed for 3 steps.
    # A model with two variables, compiled so that it saves its optimizer,
    # and stepped by the optimizer itself: no fit is needed.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=Lookahead(make_inner(), sync_period=6), loss="mse")
    build_optimizer(model)
    for _ in range(5):
        step_on(model)
    slow = [np.array(v) for v in model.optimizer._slow_weights]
    assert not all(np.array_equal(s, w) for s, w in zip(slow, weights_of(model)))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    saved_state = optimizer_state(model.optimizer)
    for _ in range(3):
        step_on(model)

    restored = keras.models.load_model(path)
    assert isinstance(restored.optimizer, Lookahead)
    assert type(restored.optimizer.inner_optimizer).__name__ == type(
        model.optimizer.inner_optimizer
    ).__name__
    assert_weights_close(optimizer_state(restored.optimizer), saved_state, rtol=0, atol=0)
    for _ in range(3):
        step_on(restored)
    assert int(np.array(restored.optimizer.iterations)) == 8
    for a, b in zip(weights_of(restored), weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert_weights_close(
        optimizer_state(restored.optimizer), optimizer_state(model.optimizer), rtol=0, atol=0
    )


def test_variables_are_own_then_slow_weights_then_inner():
    inner = keras.optimizers.Adam(0.01)
    optimizer = Lookahead(inner)
    variables = [keras.Variable(np.zeros((2, 3), "float32")), keras.Variable(np.ones(4, "float32"))]
    optimizer.build(variables)
    names = [v.name for v in optimizer.variables]
    assert names[:2] == ["iteration", "lr_scale"]
    assert [v.shape for v in optimizer.variables[2:4]] == [(2, 3), (4,)]
    assert optimizer.variables[4:] == inner.variables
    np.testing.assert_array_equal(np.array(optimizer.variables[3]), np.ones(4))


def test_config_nests_the_inner_optimizer():
    optimizer = Lookahead(RAdam(0.02, beta_1=0.8), sync_period=4, slow_step_size=0.25)
    config = optimizer.get_config()
    assert config["sync_period"] == 4 and config["slow_step_size"] == 0.25
    assert "learning_rate" not in config
    restored = Lookahead.from_config(config)
    assert isinstance(restored.inner_optimizer, RAdam)
    assert restored.inner_optimizer.beta_1 == 0.8
    assert restored.get_config() == config


def test_non_finite_step_under_loss_scaling_leaves_slow_weights_untouched():
    optimizer = keras.optimizers.LossScaleOptimizer(Lookahead(keras.optimizers.Adam(0.01), sync_period=2))
    variable = keras.Variable(START.astype("float32"))
    finite = keras.ops.convert_to_tensor(np.ones(12, "float32"))
    apply_once(optimizer, [finite], [variable])
    lookahead = optimizer.inner_optimizer
    state = optimizer_state(lookahead)
    weights = np.array(variable)
    poisoned = keras.ops.convert_to_tensor(np.full(12, np.inf, "float32"))
    apply_once(optimizer, [poisoned], [variable])
    np.testing.assert_array_equal(np.array(variable), weights)
    for after, before in zip(optimizer_state(lookahead), state):
        np.testing.assert_array_equal(after, before)


# --- bad arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sync_period": 0}, ValueError, r"Argument `sync_period` must be in \[1, inf\). Received: sync_period=0"),
        ({"sync_period": 2.5}, TypeError, r"Argument `sync_period` must be an integer in \[1, inf\). Received: sync_period=2.5"),
        ({"sync_period": "6"}, TypeError, r"Argument `sync_period`.*Received: sync_period='6'"),
        ({"slow_step_size": 0.0}, ValueError, r"Argument `slow_step_size` must be in \(0, 1\]. Received: slow_step_size=0.0"),
        ({"slow_step_size": 1.5}, ValueError, r"Argument `slow_step_size` must be in \(0, 1\]. Received: slow_step_size=1.5"),
        ({"slow_step_size": None}, TypeError, r"Argument `slow_step_size`.*Received: slow_step_size=None"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        Lookahead(keras.optimizers.Adam(), **kwargs)


@pytest.mark.parametrize("name", ["lookahead", "ranger"])
def test_registry_bad_lookahead_arguments(name):
    with pytest.raises(ValueError, match=r"Argument `sync_period`.*Received: sync_period=-1"):
        optimizers.get(name, sync_period=-1)
    with pytest.raises(ValueError, match=r"Argument `slow_step_size`.*Received: slow_step_size=2"):
        optimizers.get(name, slow_step_size=2)


def test_optimizer_must_be_an_optimizer_instance_or_a_registry_name():
    with pytest.raises(TypeError, match=r"Argument `optimizer` must be a keras.optimizers.Optimizer instance. Received: optimizer=0.5"):
        Lookahead(0.5)
    with pytest.raises(ValueError, match="Unknown optimizer name 'adamx'"):
        Lookahead("adamx")
    assert isinstance(Lookahead("nag").inner_optimizer, keras.optimizers.SGD)
    with pytest.raises(TypeError, match="Received: optimizer=<class"):
        Lookahead(keras.optimizers.Adam)


def test_inner_loss_scale_optimizer_built_or_wrapped_twice_is_refused():
    with pytest.raises(ValueError, match="must not be a LossScaleOptimizer"):
        Lookahead(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()))
    built = keras.optimizers.Adam()
    built.build([keras.Variable(np.zeros(3, "float32"))])
    with pytest.raises(ValueError, match="not built yet"):
        Lookahead(built)
    inner = keras.optimizers.Adam()
    Lookahead(inner)
    with pytest.raises(ValueError, match="already wrapped"):
        Lookahead(inner)
    with pytest.raises(ValueError, match="must not set `use_ema`"):
        Lookahead(keras.optimizers.Adam(use_ema=True))
    with pytest.raises(TypeError, match="learning rate of `optimizer`"):
        Lookahead(keras.optimizers.Adam(), learning_rate=0.1)


def test_slow_weights_start_at_the_weights_the_compiled_fit_starts_from():
    # Keras may build the optimizer inside the first compiled step's trace.
    model = small_model()
    initial = weights_of(model)
    model.compile(optimizer=Lookahead(keras.optimizers.SGD(0.01), sync_period=1000),
                  loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    x, y = regression_data(n=32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(weights_of(model)[0], initial[0])
    for slow, weight in zip(model.optimizer._slow_weights, initial):
        np.testing.assert_array_equal(np.array(slow), weight)


@pytest.mark.parametrize("sync_period", [5, 10])
@pytest.mark.parametrize("slow_step_size", [0.3, 0.7])
def test_tensorflow_addons_exact_ratio(sync_period, slow_step_size):
    """TensorFlow Addons' published property: after exactly one sync period
    of Adam on fixed gradients, `Lookahead("adam")` sits at
    start + alpha * (Adam alone - start), to 1e-6."""
    rng = np.random.default_rng(2019)
    start = rng.random((2,)).astype("float32")
    gradient = rng.standard_normal((2,)).astype("float32")

    def run(optimizer):
        variable = keras.Variable(start)
        for _ in range(sync_period):
            apply_once(optimizer, [keras.ops.convert_to_tensor(gradient)], [variable])
        return np.array(variable, dtype=np.float64)

    fast = run(keras.optimizers.Adam())
    slow = run(Lookahead("adam", sync_period=sync_period, slow_step_size=slow_step_size))
    assert np.all(np.abs(fast - start) > 1e-4)  # Adam really moved
    np.testing.assert_allclose(slow, start + slow_step_size * (fast - start), rtol=1e-6, atol=1e-6)
