"""Behaviour every registered optimizer must have. The list comes from the
registry, so an optimizer added there is tested here without being named."""

import inspect
import os

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    assert_weights_close,
    optimizer_state,
    regression_data,
    small_model,
    weights_of,
)
from keras_optlab import optimizers

ALL_NAMES = optimizers.list_optimizers()
OUR_NAMES = optimizers.list_optimizers(keras_builtin=False)


def build(name):
    entry = optimizers.info(name)
    return optimizers.get(name, learning_rate=entry.suggested_learning_rate)


def serialize_round_trip(optimizer):
    config = keras.optimizers.serialize(optimizer)
    return keras.optimizers.deserialize(config)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_config_round_trip(name):
    optimizer = build(name)
    restored = serialize_round_trip(optimizer)
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_save_load_and_resume_equals_uninterrupted(name, tmp_path):
    x, y = regression_data(n=96)
    first, second = slice(0, 48), slice(48, 96)

    def fresh():
        model = small_model()
        model.compile(optimizer=build(name), loss="mse", jit_compile=JIT_COMPILE)
        return model

    uninterrupted = fresh()
    uninterrupted.fit(x[first], y[first], batch_size=8, shuffle=False, verbose=0)
    uninterrupted.fit(x[second], y[second], batch_size=8, shuffle=False, verbose=0)

    interrupted = fresh()
    interrupted.fit(x[first], y[first], batch_size=8, shuffle=False, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    interrupted.save(path)
    state_before = optimizer_state(interrupted.optimizer)
    restored = keras.models.load_model(path)
    assert type(restored.optimizer) is type(interrupted.optimizer)
    assert_weights_close(optimizer_state(restored.optimizer), state_before, rtol=0, atol=0)
    restored.fit(x[second], y[second], batch_size=8, shuffle=False, verbose=0)

    assert_weights_close(weights_of(restored), weights_of(uninterrupted))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_loss_falls_under_compiled_fit(name):
    x, y = regression_data(n=128)
    model = small_model()
    model.compile(optimizer=build(name), loss="mse", jit_compile=JIT_COMPILE)
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


# Keras' own Adam family computes its coefficients in the variable's dtype:
# beta_2 = 0.999 rounds to 1.0 in bfloat16, so Keras Adam never moves and
# Nadam returns NaN. Ours compute coefficients in float32; bfloat16 variables
# are therefore checked on ours only.
LOW_PRECISION_CASES = [(name, "float16") for name in ALL_NAMES] + [
    (name, "bfloat16") for name in OUR_NAMES
]


@pytest.mark.parametrize("name, dtype", LOW_PRECISION_CASES)
def test_low_precision_variables(name, dtype):
    # bfloat16 resolves steps of about 0.008 near 1: use rates that move it.
    rate = max(optimizers.info(name).suggested_learning_rate, 0.05)
    optimizer = optimizers.get(name, learning_rate=rate)
    start = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    variable = keras.Variable(start, dtype=dtype)
    for _ in range(10):
        # Gradient of 0.5 * |x|^2.
        optimizer.apply([keras.ops.convert_to_tensor(variable)], [variable])
    value = keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32"))
    assert keras.backend.standardize_dtype(variable.dtype) == dtype
    assert np.all(np.isfinite(value))
    # Every optimizer moves toward the minimum at 0.
    initial = keras.ops.convert_to_numpy(
        keras.ops.cast(keras.ops.cast(start, dtype), "float32")
    )
    assert np.sum(value**2) < np.sum(initial**2)


BAD_VALUES = {
    "learning_rate": [-0.1, "fast", None],
    "beta_1": [-0.1, 1.0, 1.5, "0.9"],
    "beta_2": [-0.1, 1.0, 1.5, True],
    "epsilon": [-1e-8, float("nan"), "tiny"],
}


def _bad_cases():
    for name in OUR_NAMES:
        factory = optimizers.info(name).factory
        parameters = inspect.signature(factory).parameters
        for argument, values in BAD_VALUES.items():
            if argument in parameters:
                for value in values:
                    yield pytest.param(name, argument, value, id=f"{name}-{argument}-{value!r}")


@pytest.mark.parametrize("name, argument, value", list(_bad_cases()))
def test_bad_arguments_raise_naming_the_argument(name, argument, value):
    with pytest.raises((ValueError, TypeError), match=f"Argument `{argument}`") as error:
        optimizers.get(name, **{argument: value})
    assert f"Received: {argument}=" in str(error.value)


def test_every_optimizer_of_ours_has_bad_value_cases():
    covered = {case.values[0] for case in _bad_cases()}
    assert set(OUR_NAMES) <= covered


@pytest.mark.parametrize("name", OUR_NAMES)
def test_integer_learning_rate_is_accepted(name):
    optimizer = optimizers.get(name, learning_rate=1)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_apply_inside_the_backend_compiler(name):
    """XLA via tf.function on TensorFlow, jax.jit of stateless_apply on JAX,
    eager on PyTorch; three steps toward the minimum of 0.5 |x|^2."""
    optimizer = build(name)
    variable = keras.Variable(np.ones((4,), "float32"))
    optimizer.build([variable])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        step = tf.function(jit_compile=True)(
            lambda: optimizer.apply([tf.convert_to_tensor(variable.value)], [variable])
        )
        for _ in range(3):
            step()
        value = np.array(variable)
    elif BACKEND == "jax":
        import jax

        @jax.jit
        def step(optimizer_values, trainable_values):
            return optimizer.stateless_apply(optimizer_values, trainable_values, trainable_values)

        optimizer_values = [v.value for v in optimizer.variables]
        trainable_values = [variable.value]
        for _ in range(3):
            trainable_values, optimizer_values = step(optimizer_values, trainable_values)
        value = np.array(trainable_values[0])
    else:
        for _ in range(3):
            optimizer.apply([keras.ops.convert_to_tensor(variable)], [variable])
        value = np.array(variable)
    assert np.all(np.isfinite(value))
    assert np.all(np.abs(value) < 1.0)
