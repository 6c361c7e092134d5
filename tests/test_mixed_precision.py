"""Every optimizer of keras_optlab under Keras' mixed-precision policies.

Under `mixed_float16`, `compile` wraps the optimizer in
`keras.optimizers.LossScaleOptimizer`, which skips steps whose gradients are
not finite; the state of the optimizer it wraps must be left untouched.
"""

import contextlib

import keras
import numpy as np
import pytest

from conftest import JIT_COMPILE, optimizer_state, regression_data, small_model, weights_of
from keras_optlab import optimizers

OUR_NAMES = optimizers.list_optimizers(keras_builtin=False)


@contextlib.contextmanager
def policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compiled_model(name):
    model = small_model()
    rate = optimizers.info(name).suggested_learning_rate
    model.compile(optimizer=optimizers.get(name, learning_rate=rate), loss="mse",
                  jit_compile=JIT_COMPILE)
    return model


def inner_optimizer(model):
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


@pytest.mark.parametrize("policy_name", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", OUR_NAMES)
def test_trains_without_nan_and_keeps_float32_state(name, policy_name):
    x, y = regression_data(n=128)
    with policy(policy_name):
        model = compiled_model(name)
        history = model.fit(x, y, batch_size=16, epochs=10, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
        policy_name == "mixed_float16"
    )
    for variable in inner_optimizer(model).variables:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if "int" in dtype:  # step counters, phases, runs of steps
            continue
        assert dtype == "float32", variable.path


@pytest.mark.parametrize("name", OUR_NAMES)
def test_non_finite_gradient_step_leaves_weights_and_state_untouched(name):
    x, y = regression_data(n=32)
    with policy("mixed_float16"):
        model = compiled_model(name)
        model.fit(x[:16], y[:16], batch_size=16, verbose=0)
        weights = weights_of(model)
        state = optimizer_state(inner_optimizer(model))
        scale = float(np.array(model.optimizer.dynamic_scale))
        poisoned = x[16:].copy()
        poisoned[3, 2] = np.inf
        model.fit(poisoned, y[16:], batch_size=16, verbose=0)
    # The skip path was taken: the loss scale was halved.
    assert float(np.array(model.optimizer.dynamic_scale)) == scale / 2
    for after, before in zip(weights_of(model), weights):
        np.testing.assert_array_equal(after, before)
    for after, before in zip(optimizer_state(inner_optimizer(model)), state):
        np.testing.assert_array_equal(after, before)
