"""ReduceLROnPlateau for any schedule and any optimizer."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    apply_once,
    assert_weights_close,
    build_optimizer,
    regression_data,
    restore_training_state,
    small_model,
    training_state,
    weights_of,
)
from keras_optlab.callbacks import LearningRateLogger, ReduceLROnPlateau
from keras_optlab.optimizers import RAdam, Steered, lr_scale_of

STEPS_PER_EPOCH = 4  # 32 samples, batch 8


def decay():
    return keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=8, decay_rate=0.7)


def decay_at(step):
    return 0.01 * 0.7 ** (step / 8)


class FakeMetric(keras.callbacks.Callback):
    """Writes a prescribed `val_loss` for each epoch, so the plateau is exact."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


class Recorder(keras.callbacks.Callback):
    """After each epoch: the effective rate and a plateau callback's state."""

    def __init__(self, plateau):
        super().__init__()
        self.plateau = plateau
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        rate = float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.rows.append((rate, self.plateau.wait, self.plateau.cooldown_counter, float(self.plateau.best)))


class CountingModel(keras.Sequential):
    """Counts executions of train_step's Python code, over all instances:
    once per trace on TensorFlow and JAX (compiled), once per step on
    PyTorch (eager)."""

    traces = 0

    def train_step(self, *args, **kwargs):
        CountingModel.traces += 1
        return super().train_step(*args, **kwargs)


class TraceCountAtFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.count = CountingModel.traces


def data():
    return regression_data(n=32)


OPTIMIZERS = {
    "steered_adam": lambda: Steered(keras.optimizers.Adam(decay())),
    "radam": lambda: RAdam(decay()),
    "loss_scaled_steered_adam": lambda: keras.optimizers.LossScaleOptimizer(Steered(keras.optimizers.Adam(decay()))),
    # Float rates, for the comparisons with Keras' own callback.
    "adam_float_rate": lambda: keras.optimizers.Adam(0.01),
    "radam_float_rate": lambda: RAdam(0.01),
}
SCHEDULED = ["steered_adam", "radam", "loss_scaled_steered_adam"]

_COMPILED = {}


def compiled_model(name):
    """A CountingModel compiled with `OPTIMIZERS[name]`, compiled once per
    module and handed out reset to the weights and optimizer state it had
    before its first step (a compile costs 1.5-4 s, an epoch milliseconds).
    Every fit here uses one batch shape, so a reused model never retraces."""
    if name not in _COMPILED:
        keras.utils.set_random_seed(0)
        model = CountingModel([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
        model.compile(optimizer=OPTIMIZERS[name](), loss="mse", jit_compile=JIT_COMPILE)
        build_optimizer(model)
        _COMPILED[name] = (model, training_state(model))
    model, start = _COMPILED[name]
    restore_training_state(model, start)
    return model


@pytest.mark.parametrize("name", SCHEDULED)
def test_schedule_is_lowered_by_factor_at_the_right_epochs_without_retracing(name):
    # patience 2. Epochs 0, 1 improve; 2, 3 do not -> reduce after epoch 3;
    # 4, 5 do not -> reduce after 5; 6 improves; 7, 8 do not -> reduce after 8.
    values = [1.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7]
    scale_after = [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    model = compiled_model(name)
    plateau = ReduceLROnPlateau(factor=0.5, patience=2)
    first = TraceCountAtFirstEpoch()
    x, y = data()
    traces_before = CountingModel.traces
    history = model.fit(x, y, batch_size=8, epochs=len(values), verbose=0,
                        callbacks=[first, FakeMetric(values), plateau, LearningRateLogger()])
    steps = STEPS_PER_EPOCH * np.arange(1, len(values) + 1)
    np.testing.assert_allclose(history.history["learning_rate"], decay_at(steps) * np.array(scale_after), rtol=1e-6)
    assert float(lr_scale_of(model.optimizer)) == 0.125
    if BACKEND == "torch":
        # Eager: the Python step runs at every step, and nothing is compiled.
        assert CountingModel.traces - traces_before == STEPS_PER_EPOCH * len(values)
    else:
        # Traced in this fit's first epoch or in an earlier fit of the same
        # compiled model; never again after the plateau's writes.
        assert first.count >= 1
        assert CountingModel.traces == first.count


def keras_and_ours_side_by_side(name):
    # Exercises min_delta (0.99995 is no improvement), cooldown and min_lr.
    # One compiled model runs Keras' callback, then, reset to the same
    # weights and optimizer state, ours. The sequence of rates and the
    # callback's counters depend only on the metric values; with a float rate
    # (and lr_scale 1 where the optimizer has one) Keras' callback assigns
    # the rate itself, as it does for Keras' own optimizers.
    values = [1.0, 0.99995, 0.9, 0.9, 0.9, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85, 0.85]
    arguments = dict(monitor="val_loss", factor=0.5, patience=1, cooldown=1, min_lr=0.0015, min_delta=1e-4)
    x, y = data()
    runs = []
    for callback in (keras.callbacks.ReduceLROnPlateau(**arguments), ReduceLROnPlateau(**arguments)):
        model = compiled_model(name)
        recorder = Recorder(callback)
        history = model.fit(x, y, batch_size=8, epochs=len(values), verbose=0, shuffle=False,
                            callbacks=[FakeMetric(values), callback, recorder])
        runs.append((history.history["learning_rate"], recorder.rows, weights_of(model)))
    return runs, model


def test_float_rate_on_keras_optimizer_reproduces_keras_callback_exactly():
    ((keras_logged, keras_rows, keras_weights), (our_logged, our_rows, our_weights)), _ = (
        keras_and_ours_side_by_side("adam_float_rate")
    )
    assert our_logged == keras_logged
    assert our_rows == keras_rows
    assert_weights_close(our_weights, keras_weights, rtol=0, atol=0)
    rates = [row[0] for row in our_rows]
    assert min(rates) == pytest.approx(0.0015) and rates[0] == pytest.approx(0.01)
    assert len(set(rates)) > 3  # several reductions happened


def test_float_rate_on_scaled_optimizer_follows_keras_sequence():
    # RAdam owns lr_scale: the callback writes the scale, not the rate, and
    # the effective rates follow Keras' sequence (to float32 rounding).
    ((keras_logged, keras_rows, _), (our_logged, our_rows, _)), model = keras_and_ours_side_by_side("radam_float_rate")
    np.testing.assert_allclose(our_logged, keras_logged, rtol=1e-6)
    np.testing.assert_allclose([r[0] for r in our_rows], [r[0] for r in keras_rows], rtol=1e-6)
    assert [r[1:] for r in our_rows] == [r[1:] for r in keras_rows]
    assert float(model.optimizer._learning_rate.numpy()) == pytest.approx(0.01)


def test_min_lr_bounds_the_effective_rate_at_a_reduction():
    values = [1.0] * 5
    model = compiled_model("radam")
    plateau = ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.002)
    x, y = data()
    history = model.fit(x, y, batch_size=8, epochs=len(values), verbose=0,
                        callbacks=[FakeMetric(values), plateau, LearningRateLogger()])
    # After epoch 1 the rate is decay_at(8) = 0.007; 0.1 of it is below
    # min_lr, so it becomes 0.002. Later the schedule alone decays it below
    # min_lr, and the callback no longer reduces.
    scale = 0.002 / decay_at(8)
    np.testing.assert_allclose(history.history["learning_rate"][1], 0.002, rtol=1e-6)
    np.testing.assert_allclose(float(lr_scale_of(model.optimizer)), scale, rtol=1e-6)
    steps = STEPS_PER_EPOCH * np.arange(3, 6)
    np.testing.assert_allclose(history.history["learning_rate"][2:], decay_at(steps) * scale, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [lambda: keras.optimizers.Adam(decay()),
     lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(decay()))],
    ids=["adam", "loss_scaled_sgd"],
)
def test_keras_optimizer_with_schedule_and_no_scale_names_steered(make):
    model = small_model()
    model.compile(optimizer=make(), loss="mse")
    build_optimizer(model)
    x, y = data()
    with pytest.raises(TypeError, match=r"keras_optlab\.optimizers\.Steered"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ReduceLROnPlateau(monitor="loss")])


def test_scale_is_saved_and_training_resumes_identically(tmp_path):
    values = [1.0, 1.0, 1.0, 1.0]
    model = compiled_model("steered_adam")
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
              callbacks=[FakeMetric(values), ReduceLROnPlateau(factor=0.5, patience=1)])
    assert float(lr_scale_of(model.optimizer)) == 0.125
    path = os.path.join(tmp_path, "plateau.keras")
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects={"CountingModel": CountingModel})
    assert float(lr_scale_of(loaded.optimizer)) == 0.125
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    # Resume both with the same gradients: the loaded schedule, scale, step
    # count and moments must give the same steps.
    rng = np.random.default_rng(3)
    gradients = [[rng.normal(size=w.shape).astype("float32") for w in weights_of(model)] for _ in range(4)]
    for m in (model, loaded):
        for g in gradients:
            apply_once(m.optimizer, [keras.ops.convert_to_tensor(a) for a in g], m.trainable_variables)
    assert_weights_close(weights_of(loaded), weights_of(model), rtol=1e-6, atol=1e-7)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)
    assert int(np.array(model.optimizer.iterations)) == 16 + 4


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(factor=1.5), ValueError, r"Argument `factor` must be in \(0, 1\)"),
        (dict(factor=1.0), ValueError, r"Argument `factor` must be in \(0, 1\)"),
        (dict(factor=0), ValueError, r"Argument `factor` must be in \(0, 1\)"),
        (dict(patience=-1), ValueError, r"Argument `patience` must be in \[0, inf\)"),
        (dict(cooldown=-2), ValueError, r"Argument `cooldown` must be in \[0, inf\)"),
        (dict(mode="lowest"), ValueError, "Argument `mode` must be one of"),
        (dict(min_lr=-1e-3), ValueError, r"Argument `min_lr` must be in \[0, inf\)"),
        (dict(min_delta=-1.0), ValueError, r"Argument `min_delta` must be in \[0, inf\)"),
        (dict(patience=1.5), TypeError, "Argument `patience` must be an integer"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(arguments, error, message):
    with pytest.raises(error, match=message):
        ReduceLROnPlateau(**arguments)


def test_missing_metric_warns_once_and_changes_nothing():
    # The callback writes nothing here, so it is driven through the hooks fit
    # calls, with the logs of a fit without validation.
    model = small_model()
    model.compile(optimizer=RAdam(0.01), loss="mse")
    build_optimizer(model)
    callback = ReduceLROnPlateau(monitor="val_auc", patience=0)
    callback.set_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_train_begin()
        for epoch in range(3):
            callback.on_epoch_end(epoch, {"loss": 1.0 - 0.1 * epoch})
    messages = [str(w.message) for w in caught if "val_auc" in str(w.message)]
    assert len(messages) == 1 and "ReduceLROnPlateau" in messages[0]
    assert float(lr_scale_of(model.optimizer)) == 1.0
    assert callback.wait == 0
