"""Behaviour every registered optimizer must have. The list comes from the
registry, so an optimizer added there is tested here without being named."""

import inspect
import os

import keras
import numpy as np
import pytest

from conftest import (
    JIT_COMPILE,
    apply_once,
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


def off_default_arguments(name):
    """Every tunable argument a third of the way from its default to the
    far end of its range: a value `get_config` must carry, or the restored
    optimizer steps differently."""
    arguments = {}
    for key, dimension in optimizers.info(name).search_space.items():
        value = dimension.default
        end = dimension.high if value - dimension.low < dimension.high - value else dimension.low
        moved = value + (end - value) / 3
        arguments[key] = int(round(moved)) if isinstance(dimension.default, int) else moved
    return arguments


@pytest.mark.parametrize("name", ALL_NAMES)
def test_config_round_trip_keeps_every_tunable_argument(name):
    optimizer = optimizers.get(name, **off_default_arguments(name))
    restored = serialize_round_trip(optimizer)
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()
    # The same steps from the same start: an argument left out of the
    # config would come back at its default. Eight steps: RAdam's second
    # moment acts from the sixth.
    start = np.linspace(-1.0, 1.5, 5).astype("float32")
    trajectories = []
    for candidate in (optimizer, restored):
        variable = keras.Variable(start)
        for _ in range(8):
            gradient = 0.5 * keras.ops.convert_to_tensor(variable) + 0.2
            apply_once(candidate, [gradient], [variable])
        trajectories.append(np.array(variable))
    np.testing.assert_array_equal(trajectories[1], trajectories[0])


def resume_gradients(model, steps=3):
    """Fixed gradients for a few steps after loading: the same for the
    original and the restored model."""
    rng = np.random.default_rng(7)
    return [
        [keras.ops.convert_to_tensor(rng.normal(size=w.shape).astype("float32"))
         for w in model.trainable_variables]
        for _ in range(steps)
    ]


# Keras' own classes, handed out by name, are Keras' to test under `fit`
# and saving; what the registry adds to them (its defaults, such as `nag`'s
# momentum and Nesterov flag) is checked by the config round trip above and
# test_registry.py. One of them runs here as the baseline of the others.
FIT_NAMES = OUR_NAMES + ["adam"]


@pytest.mark.parametrize("name", FIT_NAMES)
def test_trains_under_compiled_fit_then_saves_loads_and_resumes_exactly(name, tmp_path):
    """One compiled fit per optimizer (XLA on TensorFlow, jit on JAX): the
    loss falls; the `.keras` file restores the same class and every
    optimizer variable bit for bit; the restored optimizer then takes the
    same steps as the original one."""
    x, y = regression_data(n=512)
    model = small_model()
    model.compile(optimizer=build(name), loss="mse", jit_compile=JIT_COMPILE)
    # 160 steps of one batch shape (one trace), in few epochs: an epoch of
    # `fit` costs about 0.1 s on TensorFlow whatever its length.
    history = model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert int(np.array(model.optimizer.iterations)) == 160

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored.optimizer) is type(model.optimizer)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    assert_weights_close(
        optimizer_state(restored.optimizer), optimizer_state(model.optimizer), rtol=0, atol=0
    )
    assert_weights_close(weights_of(restored), weights_of(model), rtol=0, atol=0)

    for grads in resume_gradients(model):
        apply_once(model.optimizer, grads, model.trainable_variables)
        apply_once(restored.optimizer, grads, restored.trainable_variables)
    assert int(np.array(restored.optimizer.iterations)) == 163
    assert_weights_close(weights_of(restored), weights_of(model))
    assert_weights_close(optimizer_state(restored.optimizer), optimizer_state(model.optimizer))


# Keras' own Adam family computes its coefficients in the variable's dtype:
# beta_2 = 0.999 rounds to 1.0 in bfloat16, so Keras Adam never moves and
# Nadam returns NaN. Ours compute coefficients in float32; bfloat16 variables
# are therefore checked on ours only.
LOW_PRECISION_CASES = [(name, "float16") for name in ALL_NAMES] + [
    (name, "bfloat16") for name in OUR_NAMES
]
# Prodigy estimates d from how far the variables have moved from where they
# started; its first moves (about 3 d0 = 3e-6) are below what float16 and
# bfloat16 resolve, so x0 - x stays 0, d stays d0 and the variables never
# move (documented in `Prodigy`, whose remedy is a mixed-precision policy:
# float32 variables, tested in test_mixed_precision.py).
STAYS_AT_D0_IN_LOW_PRECISION = {"prodigy"}


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
    if name in STAYS_AT_D0_IN_LOW_PRECISION:
        np.testing.assert_array_equal(value, initial)
        assert float(np.asarray(optimizer.d)) == np.float32(optimizer.d0)
        return
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
