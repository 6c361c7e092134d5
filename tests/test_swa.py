"""SWA against a NumPy transcription of stochastic weight averaging
(Izmailov et al. 2018) around SGD with momentum written in the test; the
swap at the end of `fit`; saving in the middle of an averaging window; and
`update_batch_norm` against NumPy statistics of the layers' inputs."""

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
    optimizer_state,
    regression_data,
    restore_training_state,
    small_model,
    training_state,
    weights_of,
)
from keras_optlab.optimizers import SWA, lr_scale_of
from keras_optlab.optimizers.swa import swa_sgd, update_batch_norm

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_swa")


def swa_reference(theta, gradient_fn, rates, momentum, start, period, weight_decay=0.0):
    """Keras' SGD with momentum (v ← μv − ηg; θ ← θ + v, decoupled decay
    θ ← θ − ηλθ first), and the average of the weights after steps start,
    start + period, ... (0-based). Returns per step: the weights, the
    average (NaN before the first snapshot) and the number of snapshots."""
    theta = theta.astype(np.float64).copy()
    velocity = np.zeros_like(theta)
    snapshots = []
    weights, averages, counts = [], [], []
    for t, rate in enumerate(rates):
        g = gradient_fn(theta)
        theta = theta - rate * weight_decay * theta
        velocity = momentum * velocity - rate * g
        theta = theta + velocity
        if t >= start and (t - start) % period == 0:
            snapshots.append(theta.copy())
        weights.append(theta.copy())
        averages.append(np.mean(snapshots, axis=0) if snapshots else np.full_like(theta, np.nan))
        counts.append(len(snapshots))
    return np.array(weights), np.array(averages), np.array(counts)


def gradient_of_quadratic(x):
    # f(x) = 0.5 * sum(scales * x^2) + 0.3 * sum(x), ill-conditioned so that
    # momentum oscillates and the average differs from the last weights.
    return np.array([1.0, 0.5, 4.0, 0.1, 2.5]) * x + 0.3


def run_eager(optimizer, theta, steps):
    """Per step: the weights, the average and the count, from `apply`."""
    variable = keras.Variable(theta.astype("float32"))
    weights, averages, counts = [], [], []
    for _ in range(steps):
        g = gradient_of_quadratic(np.array(variable).astype(np.float64)).astype("float32")
        apply_once(optimizer, [keras.ops.convert_to_tensor(g)], [variable])
        weights.append(np.array(variable).astype(np.float64))
        averages.append(np.array(optimizer._averages[0]).astype(np.float64))
        counts.append(int(np.array(optimizer.num_averaged)))
    return np.array(weights), np.array(averages), np.array(counts)


def compare(actual, expected):
    weights, averages, counts = actual
    ref_weights, ref_averages, ref_counts = expected
    np.testing.assert_array_equal(counts, ref_counts)
    # atol for the few components that pass close to zero on the way.
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    averaged = ref_counts > 0
    np.testing.assert_allclose(averages[averaged], ref_averages[averaged], rtol=1e-5, atol=1e-6)


THETA = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
STEPS = 137  # 137 - 13 is no multiple of 7: the run ends inside a window.


def test_matches_numpy_reference_over_an_unfinished_window():
    optimizer = SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=13, average_period=7)
    actual = run_eager(optimizer, THETA, STEPS)
    expected = swa_reference(THETA, gradient_of_quadratic, [0.05] * STEPS, 0.9, 13, 7)
    compare(actual, expected)
    counts = actual[2]
    assert counts[-1] == 18 and (STEPS - 1 - 13) % 7 != 0
    # Not a trivial average: it is not the last weights.
    assert np.max(np.abs(actual[1][-1] - actual[0][-1])) > 1e-3


def test_first_snapshot_is_the_weights_after_step_start_averaging():
    start = 13
    optimizer = SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=start, average_period=7)
    weights, averages, counts = run_eager(optimizer, THETA, start + 2)
    # Steps 0 .. start-1 (0-based) take no snapshot; step `start` does.
    assert np.all(counts[:start] == 0)
    assert counts[start] == 1 and counts[start + 1] == 1
    np.testing.assert_array_equal(averages[start], weights[start])
    np.testing.assert_array_equal(averages[start - 1], np.zeros_like(THETA))


def test_matches_reference_with_weight_decay_schedule_and_lr_scale():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.08, decay_steps=10, decay_rate=0.8)
    optimizer = SWA(
        keras.optimizers.SGD(schedule, momentum=0.8, weight_decay=0.05),
        start_averaging=0, average_period=3,
    )
    optimizer.lr_scale.assign(0.5)
    rates = [0.5 * 0.08 * 0.8 ** (t / 10) for t in range(120)]
    actual = run_eager(optimizer, THETA, 120)
    expected = swa_reference(THETA, gradient_of_quadratic, rates, 0.8, 0, 3, weight_decay=0.05)
    compare(actual, expected)
    assert lr_scale_of(optimizer) is optimizer.lr_scale
    np.testing.assert_allclose(float(np.array(optimizer.learning_rate)), rates[-1] * 0.8 ** 0.1, rtol=1e-6)


def run_compiled(optimizer, theta, steps):
    """The same steps inside XLA (TensorFlow), jax.jit (JAX) or eagerly
    (PyTorch); returns the final weights, average and count."""
    variable = keras.Variable(theta.astype("float32"))
    optimizer.build([variable])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        scales = tf.constant([1.0, 0.5, 4.0, 0.1, 2.5])

        @tf.function(jit_compile=True)
        def step():
            optimizer.apply([scales * variable.value + 0.3], [variable])

        for _ in range(steps):
            step()
    elif BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        scales = jnp.array([1.0, 0.5, 4.0, 0.1, 2.5])

        @jax.jit
        def step(optimizer_values, trainable_values):
            grads = [scales * trainable_values[0] + 0.3]
            return optimizer.stateless_apply(optimizer_values, grads, trainable_values)

        optimizer_values = [v.value for v in optimizer.variables]
        trainable_values = [variable.value]
        for _ in range(steps):
            trainable_values, optimizer_values = step(optimizer_values, trainable_values)
        variable.assign(trainable_values[0])
        for v, value in zip(optimizer.variables, optimizer_values):
            v.assign(value)
    else:
        for _ in range(steps):
            g = gradient_of_quadratic(np.array(variable).astype(np.float64)).astype("float32")
            optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    return (
        np.array(variable).astype(np.float64),
        np.array(optimizer._averages[0]).astype(np.float64),
        int(np.array(optimizer.num_averaged)),
    )


def test_matches_reference_inside_the_backend_compiler():
    optimizer = SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=13, average_period=7)
    weights, average, count = run_compiled(optimizer, THETA, STEPS)
    ref_weights, ref_averages, ref_counts = swa_reference(
        THETA, gradient_of_quadratic, [0.05] * STEPS, 0.9, 13, 7
    )
    assert count == ref_counts[-1] == 18
    np.testing.assert_allclose(weights, ref_weights[-1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(average, ref_averages[-1], rtol=1e-5, atol=1e-7)


def test_trajectory_of_any_inner_optimizer_is_unchanged():
    # Adam alone and inside SWA take the same steps; the average is the
    # mean of Adam's own weights at the snapshot steps.
    steps, start, period = 110, 4, 9
    alone = keras.Variable(THETA.astype("float32"))
    adam = keras.optimizers.Adam(0.02)
    wrapped = SWA(keras.optimizers.Adam(0.02), start_averaging=start, average_period=period)
    inside = keras.Variable(THETA.astype("float32"))
    snapshots = []
    for t in range(steps):
        g = gradient_of_quadratic(np.array(alone).astype(np.float64)).astype("float32")
        apply_once(adam, [keras.ops.convert_to_tensor(g)], [alone])
        apply_once(wrapped, [keras.ops.convert_to_tensor(g)], [inside])
        if t >= start and (t - start) % period == 0:
            snapshots.append(np.array(alone).astype(np.float64))
    np.testing.assert_array_equal(np.array(inside), np.array(alone))
    np.testing.assert_allclose(
        np.array(wrapped._averages[0]), np.mean(snapshots, axis=0), rtol=1e-5, atol=1e-7
    )
    assert int(np.array(wrapped.num_averaged)) == len(snapshots) == 12


def test_tensorflow_addons_published_numbers():
    # TFA's test_averaging: SGD(1.0), start 0, period 1, gradient 0.1, three
    # steps; the weights, then the averages.
    optimizer = SWA(keras.optimizers.SGD(1.0), start_averaging=0, average_period=1)
    var_0 = keras.Variable([1.0, 1.0])
    var_1 = keras.Variable([2.0, 2.0])
    grads = [keras.ops.convert_to_tensor([0.1, 0.1])] * 2
    for _ in range(3):
        apply_once(optimizer, grads, [var_0, var_1])
    np.testing.assert_allclose(np.array(var_0), [0.7, 0.7], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.array(var_1), [1.7, 1.7], rtol=1e-6, atol=1e-6)
    optimizer.assign_average_vars([var_0, var_1])
    np.testing.assert_allclose(np.array(var_0), [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(np.array(var_1), [1.8, 1.8], rtol=1e-6)


# --- the swap at the end of fit ---------------------------------------------
#
# One compiled model serves every case of the tests below that share its
# configuration, each case starting from the same state
# (`restore_training_state`). `swap_on_end` is a Python attribute that `fit`
# reads only at its end (in `finalize_variable_values`), so the cases set it
# on the one optimizer instead of compiling a model for each value.


def swa_model(start_averaging=2, average_period=3):
    """`small_model` compiled with SWA around SGD(0.05), and its state
    before any step."""
    model = small_model()
    optimizer = swa_sgd(0.05, start_averaging=start_averaging, average_period=average_period)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    optimizer.build(model.trainable_variables)
    return model, training_state(model)


@pytest.fixture(scope="module")
def swa_fit_model():
    """`swa_model()`, compiled once for the tests of this section."""
    return swa_model()


def start_from(model, start, swap_on_end):
    """Puts `model` back in the state `start` and sets its optimizer's
    `swap_on_end`; returns `model`."""
    restore_training_state(model, start)
    model.optimizer.swap_on_end = swap_on_end
    return model


def fit(model, epochs=2):
    """One fit of `epochs` epochs, 8 steps each."""
    x, y = regression_data(n=64)
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model


def averages_of(model):
    return [np.array(a) for a in model.optimizer._averages]


def test_swap_on_end_leaves_the_averages_in_the_weights(swa_fit_model):
    model, start = swa_fit_model
    kept = fit(start_from(model, start, swap_on_end=False))
    kept_weights, kept_averages = weights_of(kept), averages_of(kept)
    kept.optimizer.assign_average_vars(kept.trainable_variables)
    assigned = weights_of(kept)
    swapped = fit(start_from(model, start, swap_on_end=True))
    # 16 steps: snapshots after steps 2, 5, 8, 11, 14.
    assert int(np.array(swapped.optimizer.num_averaged)) == 5
    for weight, average in zip(weights_of(swapped), averages_of(swapped)):
        np.testing.assert_array_equal(weight, average)
    # Without the swap the weights are the trajectory's, until asked.
    for a, b in zip(kept_averages, averages_of(swapped)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(np.max(np.abs(w - a)) > 1e-4 for w, a in zip(kept_weights, kept_averages))
    for weight, average in zip(assigned, kept_averages):
        np.testing.assert_array_equal(weight, average)


def test_no_snapshot_yet_leaves_the_weights(swa_fit_model):
    # Two steps: the first snapshot would be taken after the third.
    model, start = swa_fit_model
    x, y = regression_data(n=16)
    start_from(model, start, swap_on_end=False).fit(x, y, batch_size=8, shuffle=False, verbose=0)
    reference = weights_of(model)
    start_from(model, start, swap_on_end=True).fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert int(np.array(model.optimizer.iterations)) == 2
    assert int(np.array(model.optimizer.num_averaged)) == 0
    for a, b in zip(weights_of(model), reference):
        np.testing.assert_array_equal(a, b)
    assert np.abs(weights_of(model)[0]).sum() > 0


def test_second_fit_with_swap_continues_from_the_averages(swa_fit_model):
    # swap_on_end=True is the same as asking for the averages by hand after
    # each fit: the second fit starts from them, the inner state and the
    # average carry on.
    model, start = swa_fit_model
    by_hand = start_from(model, start, swap_on_end=False)
    for _ in range(2):
        fit(by_hand).optimizer.assign_average_vars(by_hand.trainable_variables)
    by_hand_weights = weights_of(by_hand)
    swapped = start_from(model, start, swap_on_end=True)
    fit(fit(swapped))
    # 32 steps: snapshots after steps 2, 5, ..., 29.
    assert int(np.array(swapped.optimizer.num_averaged)) == 10
    for a, b in zip(weights_of(swapped), by_hand_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_repeated_fits_without_swap_equal_one_fit(swa_fit_model):
    model, start = swa_fit_model
    twice = fit(fit(start_from(model, start, swap_on_end=False), epochs=1), epochs=1)
    twice_state = optimizer_state(twice.optimizer)
    once = fit(start_from(model, start, swap_on_end=False), epochs=2)
    for a, b in zip(twice_state, optimizer_state(once.optimizer)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


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


@pytest.mark.parametrize("swap_on_end", [False, True])
def test_save_load_in_the_middle_of_a_window_resumes_identically(swap_on_end, tmp_path):
    # Two runs of 6 steps, snapshots every 4 from step 1: the save after step
    # 5 falls between the snapshots after steps 5 and 9. The model is
    # compiled so that it saves its optimizer, and stepped by the optimizer
    # itself; each run ends as `fit` ends, with `finalize_variable_values`
    # (which swaps in the averages if swap_on_end).
    model = small_model()
    model.compile(
        optimizer=swa_sgd(0.05, start_averaging=1, average_period=4, swap_on_end=swap_on_end),
        loss="mse",
    )
    build_optimizer(model)

    def run(model):
        for _ in range(6):
            step_on(model)
        model.optimizer.finalize_variable_values(model.trainable_weights)

    run(model)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    saved_state = optimizer_state(model.optimizer)
    run(model)

    restored = keras.models.load_model(path)
    assert isinstance(restored.optimizer, SWA)
    assert restored.optimizer.swap_on_end is swap_on_end
    assert int(np.array(restored.optimizer.num_averaged)) == 2
    assert_weights_close(optimizer_state(restored.optimizer), saved_state, rtol=0, atol=0)
    run(restored)

    assert int(np.array(restored.optimizer.num_averaged)) == 3
    assert_weights_close(weights_of(restored), weights_of(model), rtol=0, atol=0)
    assert_weights_close(
        optimizer_state(restored.optimizer), optimizer_state(model.optimizer), rtol=0, atol=0
    )


# --- delegation and wrapping --------------------------------------------------


def test_learning_rate_is_the_inner_one():
    optimizer = SWA(keras.optimizers.SGD(0.1, momentum=0.9))
    optimizer.learning_rate = 0.02
    assert float(np.array(optimizer.inner_optimizer.learning_rate)) == pytest.approx(0.02)
    optimizer.lr_scale.assign(0.5)
    assert float(np.array(optimizer.learning_rate)) == pytest.approx(0.01)


def test_config_round_trip_keeps_the_inner_optimizer():
    optimizer = SWA(keras.optimizers.Adam(0.003, beta_1=0.8), 5, 3, swap_on_end=True)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, SWA)
    assert restored.get_config() == optimizer.get_config()
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert restored.inner_optimizer.beta_1 == 0.8
    assert (restored.start_averaging, restored.average_period) == (5, 3)


def test_loss_scale_optimizer_skips_a_non_finite_step_without_a_snapshot():
    optimizer = keras.optimizers.LossScaleOptimizer(
        SWA(keras.optimizers.SGD(0.1), start_averaging=0, average_period=1),
        initial_scale=1.0,
    )
    variable = keras.Variable(np.ones((3,), "float32"))
    apply_once(optimizer, [keras.ops.ones((3,))], [variable])
    swa = optimizer.inner_optimizer
    average = np.array(swa._averages[0])
    apply_once(optimizer, [keras.ops.convert_to_tensor([np.inf, 1.0, 1.0])], [variable])
    assert int(np.array(swa.num_averaged)) == 1
    np.testing.assert_array_equal(np.array(swa._averages[0]), average)
    np.testing.assert_allclose(np.array(variable), [0.9, 0.9, 0.9], rtol=1e-6)


def test_low_precision_variables_are_averaged_in_float32():
    optimizer = SWA(keras.optimizers.SGD(0.05), start_averaging=0, average_period=1)
    variable = keras.Variable(np.linspace(-1, 1, 6).astype("float32"), dtype="bfloat16")
    for _ in range(5):
        optimizer.apply([keras.ops.convert_to_tensor(variable)], [variable])
    assert keras.backend.standardize_dtype(optimizer._averages[0].dtype) == "float32"
    optimizer.assign_average_vars([variable])
    assert keras.backend.standardize_dtype(variable.dtype) == "bfloat16"


# --- bad arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"start_averaging": -1}, r"Argument `start_averaging` must be in \[0, inf\). Received: start_averaging=-1"),
        ({"start_averaging": 1.5}, r"Argument `start_averaging` must be an integer in \[0, inf\). Received: start_averaging=1.5"),
        ({"start_averaging": "0"}, r"Argument `start_averaging` must be an integer"),
        ({"average_period": 0}, r"Argument `average_period` must be in \[1, inf\). Received: average_period=0"),
        ({"average_period": 2.5}, r"Argument `average_period` must be an integer in \[1, inf\). Received: average_period=2.5"),
        ({"swap_on_end": "yes"}, r"Argument `swap_on_end` must be True or False. Received: swap_on_end='yes'"),
        ({"clipnorm": 1.0}, r"SWA takes no optimizer arguments of its own; set `clipnorm` on the inner"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(arguments, message):
    with pytest.raises((TypeError, ValueError), match=message):
        SWA(keras.optimizers.SGD(0.1), **arguments)


def test_bad_inner_optimizers_are_refused():
    with pytest.raises(TypeError, match=r"Argument `optimizer` must be a keras.optimizers.Optimizer instance. Received: optimizer='sgd'"):
        SWA("sgd")
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        SWA(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    with pytest.raises(ValueError, match="must not set `use_ema`"):
        SWA(keras.optimizers.SGD(0.1, use_ema=True))
    with pytest.raises(ValueError, match="must not set `gradient_accumulation_steps`"):
        SWA(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    built = keras.optimizers.SGD(0.1)
    built.build([keras.Variable(np.ones(2, "float32"))])
    with pytest.raises(ValueError, match="not built yet"):
        SWA(built)


def test_assign_average_vars_refuses_foreign_variables():
    optimizer = SWA(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="no averages yet"):
        optimizer.assign_average_vars([keras.Variable(1.0)])
    optimizer.build([keras.Variable(np.ones(2, "float32"))])
    with pytest.raises(ValueError, match="None of the variables"):
        optimizer.assign_average_vars([keras.Variable(np.ones(2, "float32"))])


# --- update_batch_norm ---------------------------------------------------------


def batch_norm_model(frozen=False):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, name="hidden")(inputs)
    frozen_norm = keras.layers.BatchNormalization(name="frozen")
    frozen_norm.trainable = not frozen
    normed = keras.layers.BatchNormalization(momentum=0.9, name="norm")(frozen_norm(hidden))
    outputs = keras.layers.Dense(1, name="output")(keras.layers.Activation("tanh")(normed))
    return keras.Model(inputs, outputs)


def test_update_batch_norm_averages_the_batch_statistics():
    model = batch_norm_model(frozen=True)
    frozen = model.get_layer("frozen")
    frozen.moving_mean.assign(np.full(5, 0.25, "float32"))
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(70, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.5, -1.0, 2.0, 0.0]).astype("float32")
    weights_before = weights_of(model)

    used = update_batch_norm(model, x, batch_size=16)

    # NumPy: the inputs of "norm" are (Dense(x) - 0.25) / sqrt(1 + eps) by the
    # frozen layer (inference mode, moving variance 1, gamma 1, beta 0).
    kernel, bias = (np.array(w, np.float64) for w in model.get_layer("hidden").get_weights())
    inputs = (x.astype(np.float64) @ kernel + bias - 0.25) / np.sqrt(1.0 + frozen.epsilon)
    batches = [inputs[i : i + 16] for i in range(0, 70, 16)]
    assert used == len(batches) == 5  # the last batch has 6 rows
    expected_mean = np.mean([b.mean(axis=0) for b in batches], axis=0)
    expected_variance = np.mean([b.var(axis=0) for b in batches], axis=0)
    norm = model.get_layer("norm")
    np.testing.assert_allclose(np.array(norm.moving_mean), expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(norm.moving_variance), expected_variance, rtol=1e-5, atol=1e-6)
    # Not the statistics of all rows at once (the short batch weighs more).
    assert np.max(np.abs(expected_mean - inputs.mean(axis=0))) > 1e-3
    # Momentum restored, frozen layer and weights untouched.
    assert norm.momentum == 0.9
    np.testing.assert_array_equal(np.array(frozen.moving_mean), np.full(5, 0.25))
    trainable_before = [w for w, v in zip(weights_before, model.weights) if v.trainable]
    trainable_after = [np.array(v) for v in model.weights if v.trainable]
    for a, b in zip(trainable_after, trainable_before):
        np.testing.assert_array_equal(a, b)


def test_update_batch_norm_takes_an_iterable_of_batches_and_steps():
    model = batch_norm_model()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.normal(size=(48, 1)).astype("float32")
    from_arrays = batch_norm_model()
    update_batch_norm(from_arrays, (x[:32], y[:32]), batch_size=16)
    used = update_batch_norm(model, [(x[i : i + 16], y[i : i + 16]) for i in (0, 16, 32)], steps=2)
    assert used == 2
    for name in ("frozen", "norm"):
        for attribute in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(
                np.array(getattr(model.get_layer(name), attribute)),
                np.array(getattr(from_arrays.get_layer(name), attribute)),
                rtol=1e-6, atol=1e-7,
            )


def test_update_batch_norm_after_swa_training():
    # The use the docstring shows: fit, average, recompute the statistics.
    model = batch_norm_model()
    x, _ = regression_data(n=64, features=4)
    y = np.tanh(x[:, :1])
    model.compile(optimizer=swa_sgd(0.05, swap_on_end=True), loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    # The first layer ("frozen" only when the model is built frozen) sees
    # inputs whose mean moves with the weights.
    before = np.array(model.get_layer("frozen").moving_mean)
    assert update_batch_norm(model, x, batch_size=16) == 4
    after = np.array(model.get_layer("frozen").moving_mean)
    assert np.all(np.isfinite(after)) and np.max(np.abs(after - before)) > 1e-6


def test_update_batch_norm_bad_arguments():
    model = batch_norm_model()
    x = np.zeros((8, 4), "float32")
    with pytest.raises(ValueError, match=r"Argument `batch_size` must be in \[1, inf\). Received: batch_size=0"):
        update_batch_norm(model, x, batch_size=0)
    with pytest.raises(ValueError, match=r"Argument `steps` must be in \[1, inf\). Received: steps=0"):
        update_batch_norm(model, x, steps=0)
    with pytest.raises(TypeError, match="Argument `model` must be a keras.Model"):
        update_batch_norm(keras.layers.Dense(2), x)
    with pytest.raises(ValueError, match="yielded no batch"):
        update_batch_norm(model, [])
