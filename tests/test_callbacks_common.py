import warnings

import keras
import numpy as np
import pytest

from conftest import build_optimizer, small_model
from keras_optlab.callbacks import LearningRateLogger
from keras_optlab.callbacks._monitor import Monitor
from keras_optlab.optimizers import RAdam, lr_scale_of


@pytest.mark.parametrize(
    "monitor, mode, minimise",
    [("val_loss", "auto", True), ("val_accuracy", "auto", False),
     ("val_accuracy", "min", True), ("loss", "max", False)],
)
def test_monitor_direction(monitor, mode, minimise):
    assert Monitor(monitor, mode, 0.0, "X").minimise is minimise


def test_monitor_counts_epochs_without_improvement_beyond_min_delta():
    tracker = Monitor("val_loss", "min", 0.1, "X")
    improved = [tracker.update(v) for v in [1.0, 0.95, 0.85, 0.9, 0.8]]
    assert improved == [True, False, True, False, False]
    assert tracker.wait == 2 and tracker.best == 0.85


def test_monitor_rejects_unknown_mode_and_negative_delta():
    with pytest.raises(ValueError, match="Argument `mode` must be one of"):
        Monitor("val_loss", "lowest", 0.0, "X")
    with pytest.raises(ValueError, match=r"`min_delta` must be in \[0, inf\)"):
        Monitor("val_loss", "min", -1.0, "X")


def test_monitor_warns_once_when_metric_missing():
    tracker = Monitor("val_auc", "max", 0.0, "Owner")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tracker.value({"loss": 1.0}) is None
        assert tracker.value({"loss": 1.0}) is None
    assert len(caught) == 1 and "val_auc" in str(caught[0].message)


def test_lr_scale_is_found_through_loss_scale_optimizer():
    inner = RAdam()
    wrapped = keras.optimizers.LossScaleOptimizer(inner)
    assert lr_scale_of(wrapped) is inner.lr_scale
    assert lr_scale_of(keras.optimizers.Adam()) is None


def test_learning_rate_logger_records_schedule_times_scale():
    # Driven through the hook fit calls after each epoch; the fits of
    # test_plateau.py and test_steered.py check it there, where on JAX the
    # optimizer is reached through the model.
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5)
    optimizer = RAdam(learning_rate=schedule)
    optimizer.lr_scale.assign(0.5)
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
        logged.append(logs)
    expected = [0.5 * 0.01 * 0.5 ** (4 * k / 4) for k in (1, 2, 3)]
    np.testing.assert_allclose([logs["learning_rate"] for logs in logged], expected, rtol=1e-6)
    assert all("optimizer_phase" not in logs for logs in logged)
