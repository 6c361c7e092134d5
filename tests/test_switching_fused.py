"""The fused update of SwitchingOptimizer (`_lineage`) against the branch
that runs each phase's own Keras optimizer: same weights, same state
semantics, only faster."""

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    build_optimizer,
    compiled_apply,
    regression_data,
    small_model,
    weights_of,
)
from keras_optlab import optimizers
from keras_optlab.optimizers import SwitchingOptimizer, _lineage
from keras_optlab.schedules import Warmup

K = keras.optimizers
SCHEDULES = keras.optimizers.schedules

# name -> (first, second, wrapper keyword arguments); built twice per test,
# once fused and once with the branch. Together they cover every row of the
# coefficient table, both phases' weight decay and clipping, lr_scale,
# schedules in either phase and the estimated second rate.
PAIRS = {
    "adam_then_momentum": lambda: (K.Adam(0.02), K.SGD(0.02, momentum=0.9), {}),
    "adamw_then_nesterov_clipnorm": lambda: (
        K.AdamW(0.02, weight_decay=0.01),
        K.SGD(0.01, momentum=0.9, nesterov=True, clipnorm=0.5),
        {},
    ),
    "rmsprop_then_sgd_clipvalue": lambda: (
        K.RMSprop(0.005), K.SGD(0.02, clipvalue=0.05, weight_decay=0.02), {}
    ),
    "rmsprop_momentum_then_adam": lambda: (
        K.RMSprop(0.005, momentum=0.5, clipnorm=1.0), K.Adam(0.01), {}
    ),
    "momentum_then_nesterov_schedules": lambda: (
        K.SGD(SCHEDULES.ExponentialDecay(0.02, 20, 0.7), momentum=0.8),
        K.SGD(SCHEDULES.PiecewiseConstantDecay([50], [0.02, 0.005]), momentum=0.9, nesterov=True),
        {},
    ),
    "adabound_then_momentum_estimate": lambda: (
        optimizers.AdaBound(0.02, final_lr=None),
        K.SGD(0.02, momentum=0.9),
        {"second_learning_rate": "estimate", "weight_decay": 1e-3, "global_clipnorm": 1.0},
    ),
    "sgd_then_adam_warmup": lambda: (
        K.SGD(0.05),
        K.Adam(Warmup(SCHEDULES.CosineDecay(0.01, 150), warmup_steps=30)),
        {"clipvalue": 0.5},
    ),
}


def mse_gradients(weights, x, y):
    """The gradients of the mean squared error of `small_model` (8-16-1,
    tanh) on the batch `(x, y)`, by hand in NumPy."""
    kernel_1, bias_1, kernel_2, bias_2 = (np.asarray(w, np.float64) for w in weights)
    hidden = np.tanh(x @ kernel_1 + bias_1)
    d_output = 2.0 * (hidden @ kernel_2 + bias_2 - y) / len(x)
    d_hidden = (d_output @ kernel_2.T) * (1.0 - hidden**2)
    gradients = [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_output, d_output.sum(axis=0)]
    return [g.astype("float32") for g in gradients]


def train(step, variables, steps):
    """`steps` calls of the compiled `step` on `small_model`'s weights
    `variables`, with the gradients of consecutive batches of 8 of 96
    regression samples (12 steps a pass, as `fit` with batch_size=8 and no
    shuffle)."""
    x, y = regression_data(n=96)
    for t in range(steps):
        batch = slice(8 * (t % 12), 8 * (t % 12) + 8)
        step(mse_gradients([np.array(v) for v in variables], x[batch], y[batch]))


def train_across_the_switch(make, fused, lr_scale=1.0):
    """120 compiled steps of the pair `make()`, switching after 60: both
    phases run long enough for their schedules to cross their boundaries
    (a decay every 20 steps, a constant piece ending at 50, a warmup of 30)."""
    first, second, kwargs = make()
    optimizer = SwitchingOptimizer(first, second, switch_step=60, fused=fused, **kwargs)
    optimizer.lr_scale.assign(lr_scale)
    variables = small_model().trainable_variables
    train(compiled_apply(optimizer, variables), variables, 120)
    return optimizer, [np.array(v) for v in variables]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_update_gives_the_branch_weights_across_the_switch(name):
    lr_scale = 0.5 if name == "adam_then_momentum" else 1.0
    fused, fused_weights = train_across_the_switch(PAIRS[name], None, lr_scale)
    branch, branch_weights = train_across_the_switch(PAIRS[name], False, lr_scale)
    assert fused.fused and not branch.fused
    for optimizer in (fused, branch):
        assert int(np.array(optimizer.iterations)) == 120
        assert int(np.array(optimizer.switch_iteration)) == 60
        assert int(np.array(optimizer.first.iterations)) == 60
        assert int(np.array(optimizer.second.iterations)) == 60
    actual = np.concatenate([w.ravel() for w in fused_weights])
    expected = np.concatenate([w.ravel() for w in branch_weights])
    # The same arithmetic in another order: float32 rounding, no more.
    assert np.linalg.norm(actual - expected) <= 1e-6 * np.linalg.norm(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6)
    if fused.second_learning_rate == "estimate":
        # The branch measures each step as the change of the (rounded)
        # weights, the fused update as the step it subtracts.
        np.testing.assert_allclose(
            float(np.array(fused.estimated_learning_rate)),
            float(np.array(branch.estimated_learning_rate)),
            rtol=2e-6,
        )


@pytest.mark.parametrize(
    "optimizer",
    [
        K.Adam(amsgrad=True),
        K.RMSprop(centered=True),
        K.Nadam(),
        K.SGD(global_clipnorm=1.0),
        optimizers.AdaBound(final_lr=0.1),
        optimizers.RAdam(),
    ],
    ids=lambda o: type(o).__name__,
)
def test_methods_outside_the_table_keep_the_branch(optimizer):
    assert _lineage.describe(optimizer) is None
    switching = SwitchingOptimizer(optimizer, K.SGD(0.01, momentum=0.9))
    assert not switching.fused
    with pytest.raises(ValueError, match=r"Argument `fused` is True, but `first` is not a method"):
        SwitchingOptimizer(type(optimizer).from_config(optimizer.get_config()), K.SGD(), fused=True)


def test_a_subclass_with_its_own_update_keeps_the_branch():
    class Signed(K.SGD):
        def update_step(self, gradient, variable, learning_rate):
            self.assign_sub(variable, learning_rate * keras.ops.sign(gradient))

    assert _lineage.describe(Signed(0.1)) is None
    assert not SwitchingOptimizer(K.Adam(), Signed(0.1)).fused


def test_uncovered_pair_still_switches_through_the_branch():
    optimizer = SwitchingOptimizer(K.Adam(0.01, amsgrad=True), K.SGD(0.01, momentum=0.9), switch_step=8)
    variables = small_model().trainable_variables
    train(compiled_apply(optimizer, variables), variables, 16)
    assert not optimizer.fused
    assert int(np.array(optimizer.switch_iteration)) == 8
    assert int(np.array(optimizer.second.iterations)) == 8


def test_fused_flag_is_saved_in_the_config():
    optimizer = SwitchingOptimizer(K.Adam(), K.SGD(momentum=0.9), fused=False)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.fused is False
    automatic = keras.optimizers.deserialize(
        keras.optimizers.serialize(SwitchingOptimizer(K.Adam(), K.SGD(momentum=0.9)))
    )
    assert automatic.fused is True


def test_fused_second_phase_starts_from_empty_slots():
    # SGD with momentum after Adam: the first SGD step is -lr * g exactly,
    # whatever Adam left in the shared first-moment slot.
    optimizer = SwitchingOptimizer(K.Adam(0.1), K.SGD(0.01, momentum=0.9), switch_step=3)
    variable = keras.Variable(np.array([1.0, -2.0, 0.5], "float32"))
    gradient = np.array([0.3, -0.1, 0.2], "float32")
    for _ in range(3):
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    before = np.array(variable)
    optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    np.testing.assert_allclose(np.array(variable), before - 0.01 * gradient, rtol=1e-6)
    # The slot holds Keras' velocity, -lr * g.
    np.testing.assert_allclose(np.array(optimizer._first_moments[0]), -0.01 * gradient, rtol=1e-6)


UNCOVERED = {
    # Pairs outside the coefficient table, so the branch runs them: as data
    # flow with selects on TensorFlow and JAX, behind a conditional on
    # PyTorch, and on TensorFlow for Nadam (which replaces Keras' loop over
    # the variables).
    "adamax_then_adagrad": lambda: (K.Adamax(0.01), K.Adagrad(0.05)),
    "nadam_then_adagrad": lambda: (K.Nadam(0.01), K.Adagrad(0.05)),
    "radam_then_momentum": lambda: (optimizers.RAdam(0.01), K.SGD(0.01, momentum=0.9)),
}


@pytest.mark.parametrize("name", sorted(UNCOVERED))
def test_branch_gives_each_optimizer_alone_and_leaves_the_idle_one_as_it_was(name):
    """Against Keras itself: the same weights trained by `first` alone, then
    by a fresh `second`. While one optimizer runs, the other's variables
    keep their values exactly."""
    switch = 36  # 12 steps a pass: three passes of each
    first, second = UNCOVERED[name]()
    reference = small_model().trainable_variables
    train(compiled_apply(first, reference), reference, switch)
    first_state = [np.array(v) for v in first.variables]
    train(compiled_apply(second, reference), reference, switch)
    second_state = [np.array(v) for v in second.variables]

    first, second = UNCOVERED[name]()
    optimizer = SwitchingOptimizer(first, second, switch_step=switch)
    assert not optimizer.fused
    variables = small_model().trainable_variables
    step = compiled_apply(optimizer, variables)
    built = [np.array(v) for v in second.variables]
    train(step, variables, switch)
    assert_idle_state_kept_and_weights_match(
        optimizer, built, first_state, second_state,
        lambda: train(step, variables, switch),
        lambda: [np.array(v) for v in variables],
        [np.array(v) for v in reference],
    )


def assert_idle_state_kept_and_weights_match(
    optimizer, built, first_state, second_state, run_second_phase, weights, expected_weights
):
    """At the switch: the second optimizer still holds the state it was
    built with, the first holds what it reached alone. After
    `run_second_phase()`: the weights are those of the reference, the first
    optimizer's state is exactly what it was at the switch, the second's
    what it reached alone."""
    first, second = optimizer.first, optimizer.second
    assert int(np.array(optimizer.phase)) == 1
    for variable, expected in zip(second.variables, built):
        np.testing.assert_array_equal(np.array(variable), expected)
    at_switch = [np.array(v) for v in first.variables]
    for actual, expected in zip(at_switch, first_state):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    run_second_phase()
    for actual, expected in zip(weights(), expected_weights):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    for variable, expected in zip(first.variables, at_switch):
        np.testing.assert_array_equal(np.array(variable), expected)
    for variable, expected in zip(second.variables, second_state):
        np.testing.assert_allclose(np.array(variable), expected, rtol=1e-5, atol=1e-6)


if BACKEND == "tensorflow":
    # Only TensorFlow gives an embedding sparse gradients; elsewhere this
    # would repeat the dense cases above.

    def test_branch_with_an_embeddings_sparse_gradients_gives_each_optimizer_alone():
        """As above, under `fit`: on TensorFlow the gradient of an embedding is
        sparse (`tf.IndexedSlices`), which the branch runs behind a
        conditional."""
        def data_and_model():
            rng = np.random.default_rng(1)
            x = rng.integers(0, 50, size=(96, 4)).astype("int32")
            y = rng.normal(size=(96, 1)).astype("float32")
            keras.utils.set_random_seed(0)
            model = keras.Sequential(
                [
                    keras.Input((4,), dtype="int32"),
                    keras.layers.Embedding(50, 6),
                    keras.layers.Flatten(),
                    keras.layers.Dense(1),
                ]
            )
            return x, y, model

        def make():
            return K.Adagrad(0.05), K.SGD(0.01, momentum=0.9)

        x, y, reference = data_and_model()
        first, second = make()
        reference.compile(optimizer=first, loss="mse", jit_compile=JIT_COMPILE)
        build_optimizer(reference)
        reference.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        first_state = [np.array(v) for v in first.variables]
        reference.compile(optimizer=second, loss="mse", jit_compile=JIT_COMPILE)
        build_optimizer(reference)
        reference.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        second_state = [np.array(v) for v in second.variables]

        x, y, model = data_and_model()
        first, second = make()
        optimizer = SwitchingOptimizer(first, second, switch_step=36)
        assert not optimizer.fused
        model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
        build_optimizer(model)
        optimizer.build(model.trainable_variables)
        built = [np.array(v) for v in second.variables]
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        assert_idle_state_kept_and_weights_match(
            optimizer, built, first_state, second_state,
            lambda: model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0),
            lambda: weights_of(model),
            weights_of(reference),
        )
