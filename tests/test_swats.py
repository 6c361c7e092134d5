"""SWATS against an independent NumPy transcription of Algorithm 1 of
Keskar & Socher (2017), on problems where the switch really happens."""

import os

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    apply_once,
    assert_weights_close,
    build_optimizer,
    compiled_apply,
    optimizer_state,
    regression_data,
    restore_training_state,
    small_model,
    training_state,
    weights_of,
)
from keras_optlab.callbacks import SwitchOptimizer
from keras_optlab.optimizers import SWATS

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_swats")


def swats_reference(theta, gradient_fn, steps, lr, groups, beta_1=0.9,
                    beta_2=0.999, eps=1e-9, tol=1e-9, relative=False,
                    patience=1, warmup=1):
    """Algorithm 1, each group of coordinates with its own criterion (one
    group spanning everything is the paper's global criterion). `lr` is a
    number or a function of k; after a switch SGD steps with
    Lambda * lr(k) / lr(k_switch), this library's reading of the paper's
    "decay Lambda with the learning rate".

    The paper's criterion is |Lambda_k - gamma_k| < tol on one step k > 1
    (`relative=False, patience=1, warmup=1`); otherwise the tolerance is
    tol * |gamma_k|, and it must hold on `patience` consecutive steps
    k > warmup.

    Returns the trajectory, the step k (1-based) at which each group
    switched (None if never), and each group's Lambda."""
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    a = np.zeros_like(theta)
    v = np.zeros_like(theta)
    lam = [0.0] * len(groups)
    rate = [0.0] * len(groups)
    switched_at = [None] * len(groups)
    rate_at_switch = [None] * len(groups)
    run = [0] * len(groups)
    learning_rate = lr if callable(lr) else (lambda k: lr)
    trajectory = []
    for k in range(1, steps + 1):
        eta = learning_rate(k)
        g = gradient_fn(theta)
        new = theta.copy()
        for i, part in enumerate(groups):
            if switched_at[i] is not None:
                v[part] = beta_1 * v[part] + g[part]
                new[part] = theta[part] - (1 - beta_1) * rate[i] * eta / rate_at_switch[i] * v[part]
                continue
            m[part] = beta_1 * m[part] + (1 - beta_1) * g[part]
            a[part] = beta_2 * a[part] + (1 - beta_2) * g[part] ** 2
            p = -eta * np.sqrt(1 - beta_2**k) / (1 - beta_1**k) * m[part] / (np.sqrt(a[part]) + eps)
            new[part] = theta[part] + p
            if p @ g[part] != 0:
                gamma = (p @ p) / (-(p @ g[part]))
                lam[i] = beta_2 * lam[i] + (1 - beta_2) * gamma
                corrected = lam[i] / (1 - beta_2**k)
                bound = tol * abs(gamma) if relative else tol
                run[i] = run[i] + 1 if (k > warmup and abs(corrected - gamma) < bound) else 0
                if run[i] >= patience:
                    switched_at[i] = k
                    rate[i] = corrected
                    rate_at_switch[i] = eta
                    v[part] = 0.0
        theta = new
        trajectory.append(theta.copy())
    return np.array(trajectory), switched_at, rate


THETA = np.array([1.5, -2.0, 0.5, 3.0, -0.7, 0.9])
SCALES = np.array([1.0, 0.5, 2.0, 0.1, 4.0, 0.3])
# Coordinates of order 1 to 3 resolve to about 2e-7 in float32; momentum
# SGD swings them through zero, where only an absolute tolerance is fair.
ATOL = 1e-6
ALL = [slice(0, 6)]
HALVES = [slice(0, 3), slice(3, 6)]


def gradient_fn(x):
    return SCALES * x + 0.3


# The paper's criterion: an absolute tolerance on a single step k > 1.
PAPER = {"relative_tolerance": False, "switch_patience": 1, "switch_warmup": 1}


def run_apply(optimizer, theta, steps, parts):
    """Trains one keras.Variable per part of `theta`, with the step compiled
    as `fit` compiles it (`compiled_apply`)."""
    variables = [keras.Variable(theta[part].astype("float32")) for part in parts]
    step = compiled_apply(optimizer, variables)
    trajectory = []
    for _ in range(steps):
        current = np.concatenate([np.array(v) for v in variables]).astype(np.float64)
        g = gradient_fn(current).astype("float32")
        step([g[part] for part in parts])
        trajectory.append(np.concatenate([np.array(v) for v in variables]).astype(np.float64))
    return np.array(trajectory)


@pytest.mark.parametrize("parts", [ALL, HALVES], ids=["one_variable", "two_variables"])
def test_global_criterion_matches_reference_and_switches_where_it_does(parts):
    steps = 150
    optimizer = SWATS(learning_rate=0.01, beta_2=0.9, switch_tolerance=1e-5, **PAPER)
    actual = run_apply(optimizer, THETA, steps, parts)
    expected, switched_at, rate = swats_reference(
        THETA, gradient_fn, steps, 0.01, ALL, beta_2=0.9, tol=1e-5
    )
    assert switched_at == [74]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.phase)) == 1
    # Decided at step 74 (iterations 73): the first SGD step is iterations 74.
    assert int(np.array(optimizer.switch_iteration)) == 74
    np.testing.assert_allclose(float(np.array(optimizer.sgd_learning_rate)), rate[0], rtol=1e-5)


def test_criterion_waits_for_the_second_step():
    # At k = 1 the bias-corrected average equals gamma exactly; the paper's
    # k > 1 keeps it from switching then. Near-constant gradients make the
    # criterion hold at k = 2.
    steps = 60
    optimizer = SWATS(learning_rate=0.01, switch_tolerance=1e-4, **PAPER)
    actual = run_apply(optimizer, THETA, steps, ALL)
    expected, switched_at, _ = swats_reference(THETA, gradient_fn, steps, 0.01, ALL, tol=1e-4)
    assert switched_at == [2]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.switch_iteration)) == 2


def test_per_variable_criterion_switches_each_variable_on_its_own():
    steps = 120
    optimizer = SWATS(learning_rate=0.05, beta_2=0.9, switch_tolerance=1e-4, criterion="per_variable", **PAPER)
    actual = run_apply(optimizer, THETA, steps, HALVES)
    expected, switched_at, _ = swats_reference(
        THETA, gradient_fn, steps, 0.05, HALVES, beta_2=0.9, tol=1e-4
    )
    assert switched_at == [None, 28]
    # The global criterion does not fire on this problem.
    _, global_switch, _ = swats_reference(THETA, gradient_fn, steps, 0.05, ALL, beta_2=0.9, tol=1e-4)
    assert global_switch == [None]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    # `phase` is 1 only once every variable has switched.
    assert int(np.array(optimizer.phase)) == 0


@pytest.mark.parametrize("patience", [10, 1], ids=["default_patience", "patience_1"])
def test_default_relative_criterion_must_hold_on_consecutive_steps(patience):
    steps = 150
    optimizer = SWATS(learning_rate=0.03, beta_2=0.95, switch_patience=patience)
    assert (optimizer.switch_tolerance, optimizer.relative_tolerance) == (0.02, True)
    assert optimizer.switch_warmup == 10
    actual = run_apply(optimizer, THETA, steps, ALL)
    expected, switched_at, rate = swats_reference(
        THETA, gradient_fn, steps, 0.03, ALL, beta_2=0.95, tol=0.02, relative=True,
        patience=patience, warmup=10,
    )
    _, without_patience, _ = swats_reference(
        THETA, gradient_fn, steps, 0.03, ALL, beta_2=0.95, tol=0.02, relative=True,
        patience=1, warmup=10,
    )
    # The run of agreeing steps delays the switch on this problem.
    assert switched_at[0] is not None and without_patience[0] is not None
    if patience > 1:
        assert switched_at[0] > without_patience[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.switch_iteration)) == switched_at[0]
    np.testing.assert_allclose(float(np.array(optimizer.sgd_learning_rate)), rate[0], rtol=1e-5)


def test_default_per_variable_criterion_matches_reference():
    steps = 150
    optimizer = SWATS(learning_rate=0.03, beta_2=0.95, criterion="per_variable")
    actual = run_apply(optimizer, THETA, steps, HALVES)
    expected, switched_at, _ = swats_reference(
        THETA, gradient_fn, steps, 0.03, HALVES, beta_2=0.95, tol=0.02, relative=True,
        patience=10, warmup=10,
    )
    # The second half switches on its own; the first never agrees.
    assert switched_at[0] is None and switched_at[1] is not None
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)
    assert int(np.array(optimizer.phase)) == 0


def digits_mlp_problem(seed):
    """Digits with a fixed NumPy shuffle, and the initial weights of a
    64-128-10 ReLU/softmax MLP drawn by NumPy (the same on every backend)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))[:1344]
    x = (digits.data[order] / 16.0).astype("float32")
    y = digits.target[order]
    limits = [np.sqrt(6 / (64 + 128)), np.sqrt(6 / (128 + 10))]
    weights = [
        rng.uniform(-limits[0], limits[0], (64, 128)).astype("float32"),
        np.zeros(128, "float32"),
        rng.uniform(-limits[1], limits[1], (128, 10)).astype("float32"),
        np.zeros(10, "float32"),
    ]
    return weights, x, y


def cross_entropy_and_gradients(weights, x, y):
    """The MLP's mean softmax cross-entropy on `(x, y)` and its gradients
    with respect to `weights`, by hand in NumPy."""
    kernel_1, bias_1, kernel_2, bias_2 = weights
    pre_activation = x @ kernel_1 + bias_1
    hidden = np.maximum(pre_activation, 0.0)
    logits = hidden @ kernel_2 + bias_2
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = -float(np.mean(log_probabilities[rows, y]))
    d_logits = np.exp(log_probabilities)
    d_logits[rows, y] -= 1.0
    d_logits /= len(y)
    d_hidden = (d_logits @ kernel_2.T) * (pre_activation > 0)
    gradients = [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]
    return loss, [g.astype("float32") for g in gradients]


@pytest.fixture(scope="module")
def digits_swats():
    """The MLP's weights as Keras variables and SWATS with its defaults at
    learning rate 1e-3, its step compiled once for the tests below, and the
    values of its variables before any step (each run starts from them)."""
    weights, _, _ = digits_mlp_problem(seed=0)
    variables = [keras.Variable(w) for w in weights]
    optimizer = SWATS(learning_rate=1e-3)
    step = compiled_apply(optimizer, variables)
    return variables, optimizer, step, optimizer_state(optimizer)


def train_on_digits(digits_swats, seed, batch_size, steps):
    """From a fresh start (the seed's weights, SWATS' initial state),
    `steps` compiled SWATS steps on consecutive batches; returns the loss
    before each step."""
    import threadpoolctl  # installed with scikit-learn

    variables, optimizer, step, fresh = digits_swats
    weights, x, y = digits_mlp_problem(seed)
    for variable, value in zip(variables + optimizer.variables, weights + fresh):
        variable.assign(value)
    losses = []
    # NumPy's BLAS threads would fight the backend's for the two cores.
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for k in range(steps):
            start = (k * batch_size) % len(x)
            batch = slice(start, start + batch_size)
            loss, gradients = cross_entropy_and_gradients(
                [np.array(v) for v in variables], x[batch], y[batch]
            )
            losses.append(loss)
            step(gradients)
    return losses


def test_defaults_switch_where_full_batch_adam_settles(digits_swats):
    # Full batch: the gradient is smooth, and the loss is down tenfold in
    # about 130 steps.
    _, optimizer, _, _ = digits_swats
    losses = train_on_digits(digits_swats, seed=0, batch_size=1344, steps=200)
    switch = int(np.array(optimizer.switch_iteration))
    assert 10 < switch < 200
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defaults_do_not_switch_in_the_first_epoch_of_minibatch_noise(digits_swats, seed):
    _, optimizer, _, _ = digits_swats
    train_on_digits(digits_swats, seed, batch_size=32, steps=42)  # one epoch
    assert int(np.array(optimizer.iterations)) == 42
    assert int(np.array(optimizer.phase)) == 0
    assert int(np.array(optimizer.switch_iteration)) == -1


def test_sgd_rate_follows_a_learning_rate_schedule_after_the_switch():
    # The SGD phase steps with Lambda * eta_k / eta_s: a decaying schedule
    # keeps decaying after the switch.
    steps = 80
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.8)
    optimizer = SWATS(learning_rate=schedule, switch_tolerance=1e-4, **PAPER)
    actual = run_apply(optimizer, THETA, steps, ALL)
    expected, switched_at, _ = swats_reference(
        THETA, gradient_fn, steps, lambda k: 0.01 * 0.8 ** ((k - 1) / 10), ALL, tol=1e-4
    )
    assert switched_at == [2]
    assert int(np.array(optimizer.phase)) == 1
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=ATOL)


def test_zero_retraces_when_swats_switches_mid_fit():
    traces = {"count": 0}

    class CountingModel(keras.Sequential):
        """Python in train_step runs when TF or JAX traces it (every step
        on PyTorch)."""

        def train_step(self, *args, **kwargs):
            traces["count"] += 1
            return super().train_step(*args, **kwargs)

    keras.utils.set_random_seed(0)
    model = CountingModel(
        [keras.Input((8,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)]
    )
    # A loose tolerance makes SWATS switch at step 2.
    model.compile(optimizer=SWATS(learning_rate=0.01, switch_tolerance=1.0, **PAPER),
                  loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    model.optimizer.build(model.trainable_variables)
    start = training_state(model)
    x, y = regression_data(n=64)

    def traces_of_fit(state):
        restore_training_state(model, state)
        traces["count"] = 0
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return traces["count"]

    assert traces_of_fit(start) >= 1  # the first fit traces the step
    # Again on the compiled model: a fit in which SWATS switches traces
    # nothing (PyTorch runs train_step at each of its 8 steps).
    assert traces_of_fit(start) == (8 if BACKEND == "torch" else 0)
    assert int(np.array(model.optimizer.switch_iteration)) == 2
    assert int(np.array(model.optimizer.phase)) == 1


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


@pytest.mark.parametrize("criterion", ["global", "per_variable"])
def test_saved_before_and_after_the_switch_resume_like_uninterrupted(criterion, tmp_path):
    # A model with two variables (an eager SWATS step costs about 0.1 s a
    # variable on JAX), compiled so that it saves its optimizer, and stepped
    # by the optimizer itself: no fit is needed.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    # A loose tolerance makes the switch happen at step 2.
    model.compile(optimizer=SWATS(learning_rate=0.01, switch_tolerance=1.0, criterion=criterion, **PAPER),
                  loss="mse")
    build_optimizer(model)
    # Saved after the first Adam step, after the step that decides the
    # switch (phase 1, the first SGD step not taken yet) and in SGD; each
    # restored model takes the next step (the one that decides, the first
    # SGD step, an SGD step with momentum).
    after = {}  # steps taken -> weights and optimizer state
    for steps_taken in range(1, 6):
        step_on(model)
        if steps_taken in (1, 2, 4):
            model.save(os.path.join(tmp_path, f"swats_{steps_taken}.keras"))
        after[steps_taken] = (weights_of(model), optimizer_state(model.optimizer))
    assert int(np.array(model.optimizer.switch_iteration)) == 2

    for steps_taken in (1, 2, 4):
        restored = keras.models.load_model(os.path.join(tmp_path, f"swats_{steps_taken}.keras"))
        assert isinstance(restored.optimizer, SWATS)
        # The criterion's settings came back (a switch_tolerance lost to
        # its default would decide these few steps the same way).
        for name in ["switch_tolerance", "relative_tolerance", "switch_patience", "switch_warmup", "criterion"]:
            assert getattr(restored.optimizer, name) == getattr(model.optimizer, name), name
        if criterion == "global":
            assert int(np.array(restored.optimizer.phase)) == (0 if steps_taken == 1 else 1)
        weights, state = after[steps_taken]
        assert_weights_close(weights_of(restored), weights, rtol=0, atol=0)
        assert_weights_close(optimizer_state(restored.optimizer), state, rtol=0, atol=0)
        step_on(restored)
        weights, state = after[steps_taken + 1]
        assert_weights_close(weights_of(restored), weights, rtol=0, atol=0)
        assert_weights_close(optimizer_state(restored.optimizer), state, rtol=0, atol=0)


def test_non_finite_step_under_loss_scaling_leaves_state_untouched_in_either_phase():
    inner = SWATS(learning_rate=0.01, switch_tolerance=1e-4, **PAPER)
    optimizer = keras.optimizers.LossScaleOptimizer(inner, initial_scale=4.0)
    variable = keras.Variable(THETA.astype("float32"))
    # Compiled once (with its conditional, as `fit` runs it); each case
    # starts from the initial weights and state.
    step = compiled_apply(optimizer, [variable])
    fresh = optimizer_state(optimizer)
    for steps_before, phase in [(1, 0), (4, 1)]:  # Adam, then SGD
        variable.assign(THETA.astype("float32"))
        for state_variable, value in zip(optimizer.variables, fresh):
            state_variable.assign(value)
        for _ in range(steps_before):
            step([gradient_fn(np.array(variable).astype(np.float64)).astype("float32") * 4.0])
        assert int(np.array(inner.phase)) == phase
        weights, state = np.array(variable), optimizer_state(inner)
        step([np.array([1.0, np.nan, 0.0, 0.0, np.inf, 0.0], "float32")])
        np.testing.assert_array_equal(np.array(variable), weights)
        assert_weights_close(optimizer_state(inner), state, rtol=0, atol=0)


def test_callback_can_force_the_switch_with_the_current_estimate():
    x, y = regression_data(n=64)
    model = small_model()
    model.compile(optimizer=SWATS(learning_rate=0.01, switch_tolerance=0.0, **PAPER),
                  loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    switch = SwitchOptimizer(at_epoch=0)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[switch])
    optimizer = model.optimizer
    assert switch.switch_epoch == 1
    assert int(np.array(optimizer.phase)) == 1
    assert int(np.array(optimizer.switch_iteration)) == 4
    assert float(np.array(optimizer.sgd_learning_rate)) > 0


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("switch_tolerance", -1e-9, r"Argument `switch_tolerance` must be in \[0, inf\). Received: switch_tolerance=-1e-09"),
        ("criterion", "layerwise", r"Argument `criterion` must be one of 'global', 'per_variable'"),
        ("switch_patience", 0, r"Argument `switch_patience` must be in \[1, inf\). Received: switch_patience=0"),
        ("switch_warmup", 2.5, r"Argument `switch_warmup` must be an integer"),
        ("relative_tolerance", "yes", r"Argument `relative_tolerance` must be"),
        ("beta_2", 1.0, r"Argument `beta_2` must be in \[0, 1\). Received: beta_2=1.0"),
        ("epsilon", -1.0, r"Argument `epsilon` must be in \[0, inf\)"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SWATS(**{argument: value})
