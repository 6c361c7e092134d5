"""Data-parallel training over two host devices equals one device.

TensorFlow: tf.distribute.MirroredStrategy without XLA (Keras cannot combine
jit_compile=True with MirroredStrategy, keras#19005). JAX:
keras.distribution.DataParallel over two host devices (XLA_FLAGS in
conftest). Every optimizer of keras_optlab is run by name from the registry.
"""

import contextlib

import keras
import numpy as np
import pytest

from conftest import BACKEND, optimizer_state, regression_data, small_model, weights_of
from keras_optlab import optimizers

OUR_NAMES = optimizers.list_optimizers(keras_builtin=False)
STEPS_PER_EPOCH, EPOCHS = 4, 3


@contextlib.contextmanager
def two_devices():
    if BACKEND == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            yield
    else:
        import jax

        devices = jax.devices()
        assert len(devices) == 2
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)


def train(name, distributed, callbacks=()):
    x, y = regression_data(n=16 * STEPS_PER_EPOCH)
    context = two_devices() if distributed else contextlib.nullcontext()
    with context:
        model = small_model()
        entry = optimizers.info(name)
        model.compile(
            optimizer=optimizers.get(name, learning_rate=entry.suggested_learning_rate),
            loss="mse",
            jit_compile=False if BACKEND == "tensorflow" else True,
        )
        model.fit(x, y, batch_size=16, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=list(callbacks))
        if distributed and BACKEND == "jax":
            # The data really was split: the batch dimension is sharded.
            assert len(model.trainable_variables[0].value.sharding.device_set) == 2
    return model


@pytest.mark.parametrize("name", OUR_NAMES)
def test_two_replicas_equal_one_device(name):
    single = train(name, distributed=False)
    double = train(name, distributed=True)
    for a, b in zip(weights_of(double), weights_of(single)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(optimizer_state(double.optimizer), optimizer_state(single.optimizer)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
