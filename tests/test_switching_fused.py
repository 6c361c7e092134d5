"""The fused update of SwitchingOptimizer (`_lineage`) against the branch
that runs each phase's own Keras optimizer: same weights, same state
semantics, only faster."""

import keras
import numpy as np
import pytest

from conftest import JIT_COMPILE, regression_data, small_model, weights_of
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


def fit_300_steps(make, fused, lr_scale=1.0):
    x, y = regression_data(n=96)
    first, second, kwargs = make()
    optimizer = SwitchingOptimizer(first, second, switch_step=150, fused=fused, **kwargs)
    optimizer.lr_scale.assign(lr_scale)
    model = small_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    # 12 steps an epoch, the switch in the middle of epoch 13.
    model.fit(x, y, batch_size=8, epochs=25, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_update_gives_the_branch_weights_across_the_switch(name):
    lr_scale = 0.5 if name == "adam_then_momentum" else 1.0
    fused = fit_300_steps(PAIRS[name], None, lr_scale)
    branch = fit_300_steps(PAIRS[name], False, lr_scale)
    assert fused.optimizer.fused and not branch.optimizer.fused
    for model in (fused, branch):
        assert int(np.array(model.optimizer.iterations)) == 300
        assert int(np.array(model.optimizer.switch_iteration)) == 150
        assert int(np.array(model.optimizer.first.iterations)) == 150
        assert int(np.array(model.optimizer.second.iterations)) == 150
    actual = np.concatenate([w.ravel() for w in weights_of(fused)])
    expected = np.concatenate([w.ravel() for w in weights_of(branch)])
    # The same arithmetic in another order: float32 rounding, no more.
    assert np.linalg.norm(actual - expected) <= 1e-6 * np.linalg.norm(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6)
    if fused.optimizer.second_learning_rate == "estimate":
        # The branch measures each step as the change of the (rounded)
        # weights, the fused update as the step it subtracts.
        np.testing.assert_allclose(
            float(np.array(fused.optimizer.estimated_learning_rate)),
            float(np.array(branch.optimizer.estimated_learning_rate)),
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
    x, y = regression_data(n=64)
    model = small_model()
    optimizer = SwitchingOptimizer(K.Adam(0.01, amsgrad=True), K.SGD(0.01, momentum=0.9), switch_step=8)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    assert not optimizer.fused
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


def _embedding_data_and_model():
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


UNCOVERED = {
    # Pairs outside the coefficient table, so the branch runs them: as data
    # flow with selects on TensorFlow and JAX, behind a conditional on
    # PyTorch, and on TensorFlow for an embedding's sparse gradients and for
    # Nadam (which replaces Keras' loop over the variables).
    "adamax_then_adagrad": lambda: (K.Adamax(0.01), K.Adagrad(0.05)),
    "nadam_then_adagrad": lambda: (K.Nadam(0.01), K.Adagrad(0.05)),
    "radam_then_momentum": lambda: (optimizers.RAdam(0.01), K.SGD(0.01, momentum=0.9)),
    "embedding_adagrad_then_momentum": lambda: (K.Adagrad(0.05), K.SGD(0.01, momentum=0.9)),
}


@pytest.mark.parametrize("name", sorted(UNCOVERED))
def test_branch_gives_each_optimizer_alone_and_leaves_the_idle_one_as_it_was(name):
    """Against Keras itself: the same model trained by `first` alone, then
    recompiled with a fresh `second`. While one optimizer runs, the other's
    variables keep their values exactly."""
    def data_and_model():
        if name.startswith("embedding"):
            return _embedding_data_and_model()
        x, y = regression_data(n=96)
        return x, y, small_model()

    switch = 36  # 12 steps an epoch: three epochs of each
    x, y, reference = data_and_model()
    first, second = UNCOVERED[name]()
    reference.compile(optimizer=first, loss="mse", jit_compile=JIT_COMPILE)
    reference.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    first_state = [np.array(v) for v in first.variables]
    reference.compile(optimizer=second, loss="mse", jit_compile=JIT_COMPILE)
    reference.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    second_state = [np.array(v) for v in second.variables]

    x, y, model = data_and_model()
    first, second = UNCOVERED[name]()
    optimizer = SwitchingOptimizer(first, second, switch_step=switch)
    assert not optimizer.fused
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    optimizer.build(model.trainable_variables)
    built = [np.array(v) for v in second.variables]
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    # Up to the switch the second optimizer keeps the state it was built with.
    assert int(np.array(optimizer.phase)) == 1
    for variable, expected in zip(second.variables, built):
        np.testing.assert_array_equal(np.array(variable), expected)
    at_switch = [np.array(v) for v in first.variables]
    for actual, expected in zip(at_switch, first_state):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    for actual, expected in zip(weights_of(model), weights_of(reference)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # After it, the first optimizer's state is exactly what it was at the switch.
    for variable, expected in zip(first.variables, at_switch):
        np.testing.assert_array_equal(np.array(variable), expected)
    for variable, expected in zip(second.variables, second_state):
        np.testing.assert_allclose(np.array(variable), expected, rtol=1e-5, atol=1e-6)
