"""SwitchingOptimizer and the SwitchOptimizer callback: the switch is a graph
operation (no retrace), the numbers are Adam's then SGD's, and the phase
survives saving."""

import os

import keras
import numpy as np
import pytest

from conftest import (
    JIT_COMPILE,
    apply_once,
    apply_trajectory,
    assert_weights_close,
    build_optimizer,
    compiled_apply,
    optimizer_state,
    regression_data,
    small_model,
    weights_of,
)
from keras_optlab import optimizers
from keras_optlab.callbacks import LearningRateLogger, SwitchOptimizer
from keras_optlab.optimizers import SwitchingOptimizer

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_switching")


def adam_then_momentum(switch_step=None, exact_adam=False, **kwargs):
    # Keras' Adam forms 1 - beta**t in float32 and is off by up to ~3e-5
    # relative (see keras_optlab/optimizers/_numerics.py): too far for a
    # 1e-5 reference. The numeric tests use keras_optlab's float32-exact
    # Adam (AdaBound without bounds, the same formula).
    if exact_adam:
        first = optimizers.AdaBound(learning_rate=0.05, final_lr=None, epsilon=1e-7)
    else:
        first = keras.optimizers.Adam(learning_rate=0.05)
    return SwitchingOptimizer(
        first,
        keras.optimizers.SGD(learning_rate=0.02, momentum=0.9),
        switch_step=switch_step,
        **kwargs,
    )


# --- NumPy reference ------------------------------------------------------


def adam_then_sgd_reference(
    theta, gradient_fn, steps, switch_step, adam_lr, sgd_lr, momentum,
    beta_1=0.9, beta_2=0.999, eps=1e-7, lr_scale=1.0, estimate_decay=None,
):
    """Keras' Adam (epsilon beside sqrt(v), bias corrections in the rate)
    for `switch_step` steps, then Keras' SGD with momentum
    (v <- mu v - lr g; theta <- theta + v). With `estimate_decay`, SGD's rate
    is (1 - mu) times the bias-corrected average of |step| / (s |g|)."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    velocity = np.zeros_like(theta)
    average, estimate = 0.0, 0.0
    trajectory = []
    for t in range(steps):
        g = gradient_fn(theta)
        if t < switch_step:
            k = t + 1
            m = beta_1 * m + (1 - beta_1) * g
            v = beta_2 * v + (1 - beta_2) * g * g
            alpha = lr_scale * adam_lr * np.sqrt(1 - beta_2**k) / (1 - beta_1**k)
            step = -alpha * m / (np.sqrt(v) + eps)
            theta = theta + step
            if estimate_decay is not None:
                ratio = np.linalg.norm(step) / (lr_scale * np.linalg.norm(g))
                average = estimate_decay * average + (1 - estimate_decay) * ratio
                estimate = (1 - momentum) * average / (1 - estimate_decay**k)
        else:
            rate = estimate if estimate_decay is not None else sgd_lr
            velocity = momentum * velocity - lr_scale * rate * g
            theta = theta + velocity
        trajectory.append(theta.copy())
    return np.array(trajectory), estimate


def quadratic_gradient(scales, pull=0.3):
    return lambda x: scales * x + pull


THETA = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
# Coordinates of order 1 to 3 resolve to about 2e-7 in float32; momentum
# SGD swings them through zero, where only an absolute tolerance is fair.
ATOL = 1e-6
SCALES = np.array([1.0, 0.5, 2.0, 0.1, 4.0])


def test_matches_adam_then_momentum_reference_across_the_switch():
    steps, switch = 120, 55
    optimizer = adam_then_momentum(switch_step=switch, exact_adam=True)
    gradient_fn = quadratic_gradient(SCALES)
    actual = apply_trajectory(optimizer, THETA, gradient_fn, steps)
    expected, _ = adam_then_sgd_reference(
        THETA, gradient_fn, steps, switch, adam_lr=0.05, sgd_lr=0.02, momentum=0.9
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.phase)) == 1
    assert int(np.array(optimizer.switch_iteration)) == switch
    # Each method counted only its own steps.
    assert int(np.array(optimizer.first.iterations)) == switch
    assert int(np.array(optimizer.second.iterations)) == steps - switch


def test_estimated_second_rate_and_lr_scale_match_reference():
    steps, switch = 110, 50
    optimizer = adam_then_momentum(
        switch_step=switch, second_learning_rate="estimate", estimate_decay=0.8,
        exact_adam=True,
    )
    optimizer.lr_scale.assign(0.5)
    gradient_fn = quadratic_gradient(SCALES)
    actual = apply_trajectory(optimizer, THETA, gradient_fn, steps)
    expected, estimate = adam_then_sgd_reference(
        THETA, gradient_fn, steps, switch, adam_lr=0.05, sgd_lr=None,
        momentum=0.9, lr_scale=0.5, estimate_decay=0.8,
    )
    np.testing.assert_allclose(
        float(np.array(optimizer.estimated_learning_rate)), estimate, rtol=1e-5
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    # The rate reported is the active phase's, times lr_scale.
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 0.5 * estimate, rtol=1e-6
    )


@pytest.mark.parametrize("fused", [True, False])
def test_fixed_second_learning_rate_replaces_seconds_own_rate(fused):
    steps, switch = 100, 50
    optimizer = adam_then_momentum(
        switch_step=switch, exact_adam=True, second_learning_rate=0.007, fused=fused
    )
    optimizer.lr_scale.assign(0.5)
    gradient_fn = quadratic_gradient(SCALES)
    actual = apply_trajectory(optimizer, THETA, gradient_fn, steps)
    # SGD's own rate is 0.02; the second phase must run at 0.007 instead.
    expected, _ = adam_then_sgd_reference(
        THETA, gradient_fn, steps, switch, adam_lr=0.05, sgd_lr=0.007, momentum=0.9, lr_scale=0.5,
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 0.5 * 0.007, rtol=1e-6
    )
    restored = SwitchingOptimizer.from_config(optimizer.get_config())
    assert restored.second_learning_rate == 0.007


def test_switch_step_zero_runs_second_from_the_start():
    optimizer = adam_then_momentum(switch_step=0)
    gradient_fn = quadratic_gradient(SCALES)
    actual = apply_trajectory(optimizer, THETA, gradient_fn, 20)
    expected, _ = adam_then_sgd_reference(
        THETA, gradient_fn, 20, 0, adam_lr=0.05, sgd_lr=0.02, momentum=0.9
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.first.iterations)) == 0


def test_compiled_fit_equals_eager_fit_across_the_switch():
    x, y = regression_data(n=64)

    def train(jit):
        model = small_model()
        model.compile(optimizer=adam_then_momentum(switch_step=10), loss="mse", jit_compile=jit)
        build_optimizer(model)
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return model

    compiled, eager = train(JIT_COMPILE), train(False)
    assert int(np.array(compiled.optimizer.phase)) == 1
    assert_weights_close(weights_of(compiled), weights_of(eager), rtol=1e-4, atol=1e-5)


# --- no retrace -----------------------------------------------------------

TRACES = {"count": 0}


class CountingModel(keras.Sequential):
    """Python in train_step runs when TF or JAX traces it (every step on
    PyTorch, the same number of times in both fits compared)."""

    def train_step(self, *args, **kwargs):
        TRACES["count"] += 1
        return super().train_step(*args, **kwargs)


def counting_model():
    keras.utils.set_random_seed(0)
    return CountingModel(
        [keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )


def traces_of_fit(optimizer, callbacks):
    x, y = regression_data(n=64)
    TRACES["count"] = 0
    model = counting_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    return TRACES["count"], model


@pytest.fixture(scope="module")
def unswitched_fit():
    """The trace count and phase of a fit that never switches, shared by the
    tests below (each compares a switching fit with it)."""
    count, model = traces_of_fit(adam_then_momentum(), [])
    return count, int(np.array(model.optimizer.phase))


@pytest.mark.parametrize("how", ["callback_at_epoch", "switch_step"])
def test_switching_mid_fit_traces_as_often_as_not_switching(how, unswitched_fit):
    baseline, unswitched_phase = unswitched_fit
    assert unswitched_phase == 0
    if how == "callback_at_epoch":
        count, model = traces_of_fit(adam_then_momentum(), [SwitchOptimizer(at_epoch=1)])
    else:
        count, model = traces_of_fit(adam_then_momentum(switch_step=6), [])
    assert baseline >= 1
    assert count == baseline
    assert int(np.array(model.optimizer.phase)) == 1
    # 4 steps per epoch: the callback switches after epoch index 1.
    expected_switch = 8 if how == "callback_at_epoch" else 6
    assert int(np.array(model.optimizer.switch_iteration)) == expected_switch


# --- the callback -----------------------------------------------------------


def test_callback_switch_epoch_is_logged_and_kept():
    x, y = regression_data(n=64)
    model = small_model()
    model.compile(optimizer=adam_then_momentum(), loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    switch = SwitchOptimizer(at_epoch=1)
    history = model.fit(
        x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
        callbacks=[switch, LearningRateLogger()],
    )
    assert history.history["switch_epoch"] == [-1, 2, 2, 2]
    assert switch.switch_epoch == 2
    assert history.history["optimizer_phase"] == [0, 1, 1, 1]
    np.testing.assert_allclose(history.history["learning_rate"], [0.05, 0.02, 0.02, 0.02], rtol=1e-6)
    # The write reached the live state: the first SGD step is step 8.
    assert int(np.array(model.optimizer.switch_iteration)) == 8
    assert int(np.array(model.optimizer.second.iterations)) == 8


def test_callback_switches_on_a_plateau_after_patience():
    x, y = regression_data(n=64)
    model = small_model()
    # A first phase with rate 0 makes every epoch's loss identical: no
    # improvement after the first epoch.
    optimizer = SwitchingOptimizer(
        keras.optimizers.SGD(learning_rate=0.0), keras.optimizers.SGD(learning_rate=0.05)
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    switch = SwitchOptimizer(monitor="loss", patience=2)
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0, callbacks=[switch])
    losses = history.history["loss"]
    # Epoch 0 sets the best; epochs 1 and 2 do not improve: switch after 2.
    assert switch.switch_epoch == 3
    assert losses[0] == losses[1] == losses[2]
    assert losses[5] < losses[3]


def test_callback_finds_the_optimizer_inside_loss_scale_optimizer():
    x, y = regression_data(n=32)
    model = small_model()
    wrapped = keras.optimizers.LossScaleOptimizer(adam_then_momentum())
    model.compile(optimizer=wrapped, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    switch = SwitchOptimizer(at_epoch=0)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[switch])
    assert int(np.array(model.optimizer.inner_optimizer.phase)) == 1
    assert int(np.array(model.optimizer.inner_optimizer.second.iterations)) == 2


def test_callback_refuses_an_optimizer_that_cannot_switch():
    x, y = regression_data(n=16)
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    build_optimizer(model)
    with pytest.raises(ValueError, match="optimizer can switch"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[SwitchOptimizer(at_epoch=0)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"at_epoch": -1}, r"Argument `at_epoch` must be in \[0, inf\). Received: at_epoch=-1"),
        ({"at_epoch": 1.5}, r"Argument `at_epoch` must be an integer"),
        ({"monitor": "val_loss", "patience": 0}, r"Argument `patience` must be in \[1, inf\)"),
        ({"monitor": "val_loss", "mode": "lowest"}, r"Argument `mode` must be one of"),
        ({}, r"needs `at_epoch` or `monitor`"),
    ],
)
def test_callback_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SwitchOptimizer(**kwargs)


# --- saving ---------------------------------------------------------------


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


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "branch"])
@pytest.mark.parametrize("second_learning_rate", [None, "estimate"])
def test_saved_before_and_after_the_switch_resume_like_uninterrupted(second_learning_rate, fused, tmp_path):
    # A model with two variables, compiled so that it saves its optimizer,
    # and stepped by the optimizer itself: no fit is needed.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = adam_then_momentum(switch_step=2, second_learning_rate=second_learning_rate, fused=fused)
    model.compile(optimizer=optimizer, loss="mse")
    build_optimizer(model)
    # Saved in the first phase, right at the switch (phase 1, the second
    # method not started) and in the second phase; each restored model
    # takes the next step.
    after = {}  # steps taken -> weights and optimizer state
    for steps_taken in range(1, 5):
        step_on(model)
        if steps_taken < 4:
            model.save(os.path.join(tmp_path, f"after_{steps_taken}.keras"))
        after[steps_taken] = (weights_of(model), optimizer_state(optimizer))
    assert int(np.array(optimizer.switch_iteration)) == 2

    for steps_taken in (1, 2, 3):
        restored = keras.models.load_model(os.path.join(tmp_path, f"after_{steps_taken}.keras"))
        assert isinstance(restored.optimizer, SwitchingOptimizer)
        assert restored.optimizer.fused == fused
        assert restored.optimizer.switch_step == 2
        assert restored.optimizer.second_learning_rate == second_learning_rate
        assert int(np.array(restored.optimizer.phase)) == (0 if steps_taken < 2 else 1)
        weights, state = after[steps_taken]
        assert_weights_close(weights_of(restored), weights, rtol=0, atol=0)
        assert_weights_close(optimizer_state(restored.optimizer), state, rtol=0, atol=0)
        step_on(restored)
        weights, state = after[steps_taken + 1]
        assert_weights_close(weights_of(restored), weights, rtol=0, atol=0)
        assert_weights_close(optimizer_state(restored.optimizer), state, rtol=0, atol=0)


@pytest.mark.parametrize("estimate", [False, True])
def test_fused_variables_are_own_scalars_shared_slots_then_inner_counters(estimate):
    optimizer = adam_then_momentum(second_learning_rate="estimate" if estimate else None)
    assert optimizer.fused
    own = ["iteration", "lr_scale", "phase", "switch_iteration"]
    if estimate:
        own += [
            "estimated_learning_rate", "step_ratio_average",
            "step_square_sum", "gradient_square_sum",
        ]
    else:
        assert optimizer.estimated_learning_rate is None
    names_before = [v.name for v in optimizer.variables]
    assert names_before[: len(own)] == own
    variables = [
        keras.Variable(np.ones((3,), "float32"), name="kernel"),
        keras.Variable(np.ones((2,), "float32"), name="bias"),
    ]
    optimizer.build(variables)
    names = [v.name for v in optimizer.variables]
    # One first-moment and one second-moment slot per variable, shared by
    # Adam and SGD; each inner optimizer keeps its step count and its rate.
    assert names[len(own):] == [
        "kernel_first_moment", "bias_first_moment",
        "kernel_second_moment", "bias_second_moment",
        "iteration", "learning_rate", "iteration", "learning_rate",
    ]
    assert {id(v) for v in optimizer.first.variables + optimizer.second.variables} <= {
        id(v) for v in optimizer.variables
    }


@pytest.mark.parametrize("estimate", [False, True])
def test_branch_variables_hold_both_methods_state_in_a_fixed_order(estimate):
    optimizer = adam_then_momentum(
        fused=False, second_learning_rate="estimate" if estimate else None
    )
    variable = keras.Variable(np.ones((3,), "float32"))
    optimizer.build([variable])
    ids = {id(v) for v in optimizer.variables}
    assert {id(v) for v in optimizer.first.variables} <= ids
    assert {id(v) for v in optimizer.second.variables} <= ids
    # Own scalars (two more for the estimate); Adam: iteration,
    # learning_rate, m, v; SGD: iteration, learning_rate, momentum.
    assert len(optimizer.variables) == (6 if estimate else 4) + 4 + 3


def test_config_nests_both_optimizers():
    optimizer = adam_then_momentum(switch_step=7, second_learning_rate="estimate")
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored.first, keras.optimizers.Adam)
    assert isinstance(restored.second, keras.optimizers.SGD)
    assert restored.second.momentum == pytest.approx(0.9)
    assert restored.switch_step == 7
    assert restored.second_learning_rate == "estimate"


# --- loss scaling and non-finite gradients ----------------------------------


def test_non_finite_step_under_loss_scaling_leaves_both_phases_untouched():
    inner = adam_then_momentum(switch_step=4)
    optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=4.0)
    start = np.array([1.0, -2.0, 3.0], "float32")
    variable = keras.Variable(start)
    # Compiled once (with its conditional, as `fit` runs it); each case
    # starts from the initial weights and state.
    step = compiled_apply(optimizer, [variable])
    fresh = optimizer_state(optimizer)
    for steps_before in [2, 5]:  # before and after switch_step=4
        variable.assign(start)
        for state_variable, value in zip(optimizer.variables, fresh):
            state_variable.assign(value)
        for _ in range(steps_before):
            step([np.array(variable) * 4.0])
        weights = np.array(variable)
        state = optimizer_state(inner)
        step([np.array([1.0, np.nan, np.inf], "float32")])
        np.testing.assert_array_equal(np.array(variable), weights)
        assert_weights_close(optimizer_state(inner), state, rtol=0, atol=0)
        # The next finite step moves again, in the right phase.
        step([np.array(variable) * 2.0])
        assert not np.array_equal(np.array(variable), weights)
        assert int(np.array(inner.phase)) == (1 if steps_before + 1 >= 4 else 0)


def test_loss_scale_optimizer_wrapping_trains_and_switches_under_fit():
    x, y = regression_data(n=64)
    model = small_model()
    model.compile(
        optimizer=keras.optimizers.LossScaleOptimizer(adam_then_momentum(switch_step=8)),
        loss="mse", jit_compile=JIT_COMPILE,
    )
    build_optimizer(model)
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    inner = model.optimizer.inner_optimizer
    assert int(np.array(inner.phase)) == 1
    assert int(np.array(inner.second.iterations)) == 20 - 8
    assert history.history["loss"][-1] < history.history["loss"][0]


# --- bad input ---------------------------------------------------------------


def test_inner_optimizer_already_built_is_refused():
    adam = keras.optimizers.Adam()
    adam.build([keras.Variable(np.zeros((2,), "float32"))])
    with pytest.raises(ValueError, match=r"Argument `first` must be an optimizer that is not built yet"):
        SwitchingOptimizer(adam, keras.optimizers.SGD())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"switch_step": -1}, ValueError, r"Argument `switch_step` must be in \[0, inf\). Received: switch_step=-1"),
        ({"switch_step": 2.5}, TypeError, r"Argument `switch_step` must be an integer"),
        ({"second": "sgd"}, TypeError, r"Argument `second` must be a keras.optimizers.Optimizer instance. Received: second='sgd'"),
        ({"first": None}, TypeError, r"Argument `first` must be a keras.optimizers.Optimizer"),
        ({"second_learning_rate": "guess"}, ValueError,
         r"Argument `second_learning_rate` must be None, \"estimate\" or a float in \(0, inf\). Received: second_learning_rate='guess'"),
        ({"second_learning_rate": True}, TypeError, r"Argument `second_learning_rate` must be None, \"estimate\" or a float"),
        ({"second_learning_rate": 0.0}, ValueError, r"Argument `second_learning_rate` must be in \(0, inf\). Received: second_learning_rate=0.0"),
        ({"estimate_decay": 1.0}, ValueError, r"Argument `estimate_decay` must be in \[0, 1\)"),
        ({"second": keras.optimizers.SGD(ema_momentum=0.9, use_ema=True)}, ValueError, r"`second` must not set `use_ema`"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, message):
    arguments = {"first": keras.optimizers.Adam(), "second": keras.optimizers.SGD()}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        SwitchingOptimizer(**arguments)


def test_the_same_instance_twice_is_refused():
    adam = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="must be two optimizer instances"):
        SwitchingOptimizer(adam, adam)


def test_registry_adam_then_sgd_switches_at_switch_step():
    optimizer = optimizers.get("adam_then_sgd", learning_rate=0.05, sgd_learning_rate=0.02, switch_step=30)
    assert isinstance(optimizer, SwitchingOptimizer)
    gradient_fn = quadratic_gradient(SCALES)
    actual = apply_trajectory(optimizer, THETA, gradient_fn, 60)
    expected, _ = adam_then_sgd_reference(
        THETA, gradient_fn, 60, 30, adam_lr=0.05, sgd_lr=0.02, momentum=0.9
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)


def test_learning_rate_cannot_be_set_directly():
    with pytest.raises(TypeError, match="active phase"):
        adam_then_momentum().learning_rate = 0.1
