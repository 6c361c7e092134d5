"""The optimizers of keras_optlab under Keras' mixed-precision policies, one
per update path (`conftest.update_path`; float16 variables are checked for
every name in test_every_optimizer.py).

Under `mixed_float16`, `compile` wraps the optimizer in
`keras.optimizers.LossScaleOptimizer`, which skips steps whose gradients are
not finite; the state of the optimizer it wraps must be left untouched.
"""

import contextlib

import keras
import numpy as np
import pytest

from conftest import (
    JIT_COMPILE,
    build_optimizer,
    one_per_update_path,
    optimizer_state,
    regression_data,
    small_model,
    weights_of,
)
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
    build_optimizer(model)
    return model


def inner_optimizer(model):
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def assert_float32_state(model):
    for variable in inner_optimizer(model).variables:
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if "int" in dtype:  # step counters, phases, runs of steps
            continue
        assert dtype == "float32", variable.path


# D-Adaptation Adam at its authors' settings (learning rate 1, no bias
# correction, no warmup) overshoots on this regression before it settles,
# in float32 as well: d reaches about 0.3 within the first epoch while the
# uncorrected second moment still inflates each step, and the loss rises or
# wanders for two to five epochs, depending on the backend, before it falls
# well below the first epoch's (to less than half by the tenth on all three).
EPOCHS = {"dadapt_adam": 10}


@pytest.mark.parametrize("name", one_per_update_path(OUR_NAMES))
def test_float16_trains_keeps_float32_state_and_skips_a_non_finite_step(name):
    """One compiled model under `mixed_float16`: three epochs (more where
    `EPOCHS` says) train without NaN in float32 state; then a batch with an
    infinite input takes the loss-scale optimizer's skip path and leaves
    weights and state as they were."""
    x, y = regression_data(n=336)
    with policy("mixed_float16"):
        model = compiled_model(name)
        # Few long epochs: an epoch of `fit` costs about 0.1 s on TensorFlow.
        history = model.fit(
            x[:320], y[:320], batch_size=16, epochs=EPOCHS.get(name, 3), verbose=0
        )
        losses = history.history["loss"]
        assert np.all(np.isfinite(losses))
        assert losses[-1] < losses[0]
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert_float32_state(model)

        weights = weights_of(model)
        state = optimizer_state(inner_optimizer(model))
        scale = float(np.array(model.optimizer.dynamic_scale))
        poisoned = x[320:].copy()
        poisoned[3, 2] = np.inf
        model.fit(poisoned, y[320:], batch_size=16, verbose=0)
    # The skip path was taken: the loss scale was halved.
    assert float(np.array(model.optimizer.dynamic_scale)) == scale / 2
    for after, before in zip(weights_of(model), weights):
        np.testing.assert_array_equal(after, before)
    for after, before in zip(optimizer_state(inner_optimizer(model)), state):
        np.testing.assert_array_equal(after, before)


# Under `mixed_bfloat16` no loss scaling wraps the optimizer and the
# variables and gradients it sees are float32, as without a policy: an
# optimizer that made a slot in the compute dtype would show it under
# `mixed_float16` above as well. One optimizer of each kind runs here: a
# plain update step, a wrapper and a two-phase optimizer.
@pytest.mark.parametrize("name", ["radam", "lookahead", "adam_then_sgd"])
def test_bfloat16_trains_and_keeps_float32_state(name):
    x, y = regression_data(n=320)
    with policy("mixed_bfloat16"):
        model = compiled_model(name)
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert_float32_state(model)
