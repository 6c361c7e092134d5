"""Steered: any Keras optimizer with an lr_scale, saved with the model."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from conftest import assert_weights_close, build_optimizer, compiled_apply, small_model, weights_of
from keras_optlab.callbacks import LearningRateLogger
from keras_optlab.optimizers import RAdam, Steered, lr_scale_of


def decay(initial=0.02):
    return keras.optimizers.schedules.ExponentialDecay(initial, decay_steps=4, decay_rate=0.5)


def gradient(w):
    # Of 0.5 |w + 0.3|^2, on each of the model's variables.
    return w + 0.3


def compiled_steps(optimizer, steps=12):
    """small_model's weights after `steps` updates compiled as fit compiles
    them, the gradient of `gradient` scaled as a LossScaleOptimizer's loss
    is; and the learning rate after every 4 steps."""
    model = small_model()
    variables = model.trainable_variables
    step = compiled_apply(optimizer, variables)
    rates = []
    for t in range(1, steps + 1):
        # A power of 2 (2 ** 15 by default): scaling and unscaling are exact.
        scale = float(np.array(optimizer.dynamic_scale)) if hasattr(optimizer, "dynamic_scale") else 1.0
        step([(gradient(np.array(v)) * scale).astype("float32") for v in variables])
        if t % 4 == 0:
            rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    return weights_of(model), rates


def maybe_loss_scaled(optimizer, wrap):
    return keras.optimizers.LossScaleOptimizer(optimizer) if wrap else optimizer


@pytest.mark.parametrize("loss_scaled", [False, True], ids=["plain", "loss_scaled"])
@pytest.mark.parametrize("optimizer_class", [keras.optimizers.SGD, keras.optimizers.AdamW])
def test_scale_multiplies_every_use_of_the_inner_schedule(optimizer_class, loss_scaled):
    # Steered(opt(schedule)) with lr_scale s is opt(s * schedule): the update
    # and AdamW's decoupled weight decay both use the scaled rate.
    steered = Steered(optimizer_class(decay(0.02)))
    steered.lr_scale.assign(0.25)
    weights, rates = compiled_steps(maybe_loss_scaled(steered, loss_scaled))
    reference, _ = compiled_steps(maybe_loss_scaled(optimizer_class(decay(0.02 * 0.25)), loss_scaled))
    assert_weights_close(weights, reference, rtol=1e-5, atol=1e-6)
    # The steps are far above the tolerance: an unscaled rate would show.
    assert max(np.max(np.abs(w - w0)) for w, w0 in zip(weights, weights_of(small_model()))) > 1e-2
    # 4 steps per "epoch": after 4k steps the rate is 0.25 * 0.02 * 0.5 ** k.
    np.testing.assert_allclose(rates, [0.005 * 0.5**k for k in (1, 2, 3)], rtol=1e-6)


def test_scale_one_trains_exactly_as_the_inner_optimizer():
    weights, _ = compiled_steps(Steered(keras.optimizers.Adam(0.01)))
    reference, _ = compiled_steps(keras.optimizers.Adam(0.01))
    assert_weights_close(weights, reference, rtol=1e-6, atol=1e-7)


def test_learning_rate_is_inner_rate_times_scale_seen_from_both():
    inner = keras.optimizers.Adam(decay(0.02))
    steered = Steered(inner)
    steered.lr_scale.assign(0.5)
    assert float(steered.learning_rate) == pytest.approx(0.01, rel=1e-6)
    # The inner optimizer reports the rate it applies, scaled too.
    assert float(inner.learning_rate) == pytest.approx(0.01, rel=1e-6)
    assert lr_scale_of(keras.optimizers.LossScaleOptimizer(steered)) is steered.lr_scale
    assert steered.iterations is inner.iterations


def test_steered_keras_optimizer_scales_on_top_of_its_own_scale():
    inner = RAdam(0.02)
    inner.lr_scale.assign(0.5)
    steered = Steered(inner)
    steered.lr_scale.assign(0.5)
    assert float(steered.learning_rate) == pytest.approx(0.005, rel=1e-6)
    assert lr_scale_of(steered) is steered.lr_scale


@pytest.mark.parametrize("loss_scaled", [False, True], ids=["plain", "loss_scaled"])
def test_scale_and_inner_state_are_saved_and_loaded_with_the_model(tmp_path, loss_scaled):
    model = small_model()
    model.compile(optimizer=maybe_loss_scaled(Steered(keras.optimizers.Adam(decay())), loss_scaled), loss="mse")
    build_optimizer(model)
    # Moments and a step count to save: a few compiled steps, no fit.
    step = compiled_apply(model.optimizer, model.trainable_variables)
    for k in range(3):
        step([np.full(w.shape, 0.1 * (k + 1), "float32") for w in weights_of(model)])
    lr_scale_of(model.optimizer).assign(0.125)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert float(lr_scale_of(loaded.optimizer)) == 0.125
    saved = [np.array(v) for v in model.optimizer.variables]
    restored = [np.array(v) for v in loaded.optimizer.variables]
    assert len(saved) == len(restored)
    for a, b in zip(restored, saved):
        np.testing.assert_array_equal(a, b)
    assert int(np.array(loaded.optimizer.iterations)) == 3
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(model.optimizer.learning_rate), rel=1e-7)


def test_config_round_trip_nests_the_inner_optimizer():
    steered = Steered(keras.optimizers.Adam(decay(), beta_1=0.8), name="steady")
    config = keras.saving.serialize_keras_object(steered)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, Steered) and restored.name == "steady"
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert restored.inner_optimizer.beta_1 == 0.8
    assert restored.inner_optimizer.get_config()["learning_rate"] == steered.inner_optimizer.get_config()["learning_rate"]


@pytest.mark.parametrize(
    "inner, error, message",
    [
        ("adam", TypeError, "Argument `inner_optimizer` must be a keras.optimizers.Optimizer"),
        (keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), ValueError, r"LossScaleOptimizer\(Steered\(optimizer\)\)"),
        (Steered(keras.optimizers.Adam()), ValueError, "must not be a Steered"),
    ],
)
def test_bad_inner_optimizer_is_rejected(inner, error, message):
    with pytest.raises(error, match=message):
        Steered(inner)


def test_optimizer_arguments_belong_to_the_inner_optimizer():
    with pytest.raises(ValueError, match="set `clipnorm` on the inner optimizer"):
        Steered(keras.optimizers.Adam(), clipnorm=1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Steered(keras.optimizers.Adam(decay())),
        lambda: keras.optimizers.LossScaleOptimizer(Steered(keras.optimizers.Adam(decay()))),
        lambda: keras.optimizers.LossScaleOptimizer(RAdam(decay())),
    ],
    ids=["steered", "loss_scaled_steered", "loss_scaled_radam"],
)
def test_learning_rate_logger_reports_schedule_times_scale(make):
    # Driven through the hook fit calls after each epoch; the fits of
    # test_plateau.py log the rate with the scale written mid-fit.
    optimizer = make()
    lr_scale_of(optimizer).assign(0.5)
    model = small_model()
    model.compile(optimizer=optimizer, loss="mse")
    build_optimizer(model)
    logger = LearningRateLogger()
    logger.set_model(model)
    logged = []
    for epoch in range(3):
        # 4 steps per epoch: after epoch k the optimizer stands at step 4k.
        optimizer.iterations.assign(4 * (epoch + 1))
        logs = {"loss": 1.0}
        logger.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    expected = [0.5 * 0.02 * 0.5**k for k in (1, 2, 3)]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
