"""Data-parallel training over two host devices equals one device.

TensorFlow: tf.distribute.MirroredStrategy without XLA (Keras cannot combine
jit_compile=True with MirroredStrategy, keras#19005). JAX:
keras.distribution.DataParallel over two host devices (XLA_FLAGS in
conftest). The optimizers of keras_optlab come from the registry, one per
update path (`conftest.update_path`): those that take Keras' generic
per-variable path are represented by the first of them.
"""

import contextlib

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    one_per_update_path,
    optimizer_state,
    regression_data,
    small_model,
    weights_of,
)
from keras_optlab import optimizers

OUR_NAMES = optimizers.list_optimizers(keras_builtin=False)
# 12 steps: in one epoch where the epochs do not matter (an epoch of `fit`
# costs about 0.1 s on TensorFlow), in three where callbacks act per epoch.
STEPS, EPOCHS = 12, 3
# At its digits rate of 1.0, schedule-free SGD grows this regression's
# weights to about 14 within the 12 steps, where the float32 rounding of
# the two replicas' gradient sum is amplified to 1e-3 relative (at 0.05 the
# runs agree to 1e-5, as every other optimizer's do at its own rate).
RATES = {"schedule_free_sgd": 0.05}
# SOAP's eigenbasis is unique only where its factors' eigenvalues are
# distinct. The (8, 16) kernel's 16 x 16 factor has rank 8 after a step of
# one batch and the (16, 1) kernel's 16 x 16 factor rank 1, so the basis of
# their null spaces follows the rounding of the gradient, which the
# replicas' sum changes (a gradient scaled by 1 + 1e-7 moves the kernel by
# 0.5 % within 12 steps, on one device). Only the 8 x 8 factor, of full
# rank, is kept; its close eigenvalues still turn the rounding into
# differences of about 6e-5 relative in the weights and 1e-5 absolute in
# the momentum, which lives in the eigenbasis (momenta of 1e-3 to 1e-2).
OPTIONS = {"soap": {"max_precond_dim": 8}}
TOLERANCES = {"soap": {"rtol": 2e-4, "atol": 1e-4}}


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


def train(name, distributed, callbacks=(), make_optimizer=None, epochs=1):
    x, y = regression_data(n=16 * STEPS // epochs)
    context = two_devices() if distributed else contextlib.nullcontext()
    with context:
        model = small_model()
        if make_optimizer is None:
            entry = optimizers.info(name)
            rate = RATES.get(name, entry.suggested_learning_rate)
            optimizer = optimizers.get(name, learning_rate=rate, **OPTIONS.get(name, {}))
        else:
            # Created here: under tf.distribute, inside the strategy's scope.
            optimizer = make_optimizer()
        model.compile(
            optimizer=optimizer,
            loss="mse",
            jit_compile=False if BACKEND == "tensorflow" else True,
        )
        model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=list(callbacks))
        if distributed and BACKEND == "jax":
            # The data really was split: the batch dimension is sharded.
            assert len(model.trainable_variables[0].value.sharding.device_set) == 2
    return model


def assert_same_training(single, double, rtol=1e-5, atol=1e-6):
    for a, b in zip(weights_of(double), weights_of(single)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)
    for a, b in zip(optimizer_state(double.optimizer), optimizer_state(single.optimizer)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", one_per_update_path(OUR_NAMES))
def test_two_replicas_equal_one_device(name):
    single = train(name, distributed=False)
    double = train(name, distributed=True)
    assert_same_training(single, double, **TOLERANCES.get(name, {}))


# The second rate estimated from the first phase's steps: the estimate's
# sums are the part that must be global across replicas (a switch with the
# second optimizer's own rate runs the same switch, without them).
@pytest.mark.parametrize("second_clipping", ["clipnorm", "global_clipnorm"])
def test_switching_with_a_switch_and_inner_options(second_clipping):
    # Both phases run (switch after 5 of 12 steps), each with its own
    # clipping and weight decay, which the step applies per phase. An inner
    # global_clipnorm keeps the branch; clipnorm takes the fused update.
    second_learning_rate = "estimate"
    def make_optimizer():
        return optimizers.SwitchingOptimizer(
            optimizers.AdaBound(0.01, final_lr=None, clipnorm=0.05, weight_decay=0.01),
            keras.optimizers.SGD(
                0.02, momentum=0.9, weight_decay=0.02, **{second_clipping: 0.1}
            ),
            switch_step=5,
            second_learning_rate=second_learning_rate,
        )

    single = train("switching", distributed=False, make_optimizer=make_optimizer)
    double = train("switching", distributed=True, make_optimizer=make_optimizer)
    assert single.optimizer.fused == (second_clipping == "clipnorm")
    assert int(np.array(single.optimizer.phase)) == 1
    assert int(np.array(single.optimizer.switch_iteration)) == 5
    assert_same_training(single, double)


# Only tf.distribute runs the inner steps in cross-replica context; the
# test exists on TensorFlow alone rather than being skipped elsewhere.
if BACKEND == "tensorflow":

    def test_switching_refuses_an_inner_step_override_under_tf_distribute():
        # SWATS overrides `_backend_update_step`, which the distributed step
        # does not run: refused rather than skipped.
        def make_optimizer():
            return optimizers.SwitchingOptimizer(
                optimizers.SWATS(), keras.optimizers.SGD(0.01), switch_step=2
            )

        with pytest.raises(NotImplementedError, match="_backend_update_step"):
            train("switching", distributed=True, make_optimizer=make_optimizer)


@pytest.mark.parametrize("criterion", ["global", "per_variable"])
def test_swats_switches_at_the_same_step(criterion):
    def make_optimizer():
        # A relative tolerance at which the criterion holds on 3 steps
        # running for every variable of this problem.
        return optimizers.SWATS(
            learning_rate=0.01, switch_tolerance=1.0, switch_patience=3, switch_warmup=1,
            criterion=criterion,
        )

    # The data of three epochs of 4 steps, on which the criterion fires.
    single = train("swats", distributed=False, make_optimizer=make_optimizer, epochs=EPOCHS)
    double = train("swats", distributed=True, make_optimizer=make_optimizer, epochs=EPOCHS)
    phase = np.array(single.optimizer.phase)
    assert np.any(phase == 1), "the criterion never fired: the test would prove nothing"
    np.testing.assert_array_equal(np.array(double.optimizer.phase), phase)
    assert_same_training(single, double)


def test_every_callback_gives_the_same_training():
    from keras_optlab.callbacks import LearningRateLogger, ReduceLROnPlateau, SwitchOptimizer

    def steering():
        # min_delta larger than any change: a plateau at every epoch.
        return [
            SwitchOptimizer(at_epoch=1),
            ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9),
            LearningRateLogger(),
        ]

    def make_optimizer():
        return optimizers.get("adam_then_sgd", learning_rate=0.01)

    single = train("adam_then_sgd", distributed=False, make_optimizer=make_optimizer,
                   callbacks=steering(), epochs=EPOCHS)
    double = train("adam_then_sgd", distributed=True, make_optimizer=make_optimizer,
                   callbacks=steering(), epochs=EPOCHS)
    assert int(np.array(single.optimizer.phase)) == 1
    assert float(np.array(single.optimizer.lr_scale)) < 1.0
    assert_same_training(single, double)


def test_plateau_on_a_steered_builtin_with_a_schedule():
    from keras_optlab.callbacks import ReduceLROnPlateau

    def make_optimizer():
        schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 4, 0.5)
        return optimizers.Steered(keras.optimizers.Adam(schedule))

    def plateau():
        return [ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)]

    single = train("adam", distributed=False, make_optimizer=make_optimizer, callbacks=plateau(),
                   epochs=EPOCHS)
    double = train("adam", distributed=True, make_optimizer=make_optimizer, callbacks=plateau(),
                   epochs=EPOCHS)
    assert float(np.array(single.optimizer.lr_scale)) == 0.25
    assert_same_training(single, double)
