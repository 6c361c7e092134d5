"""Reduce-on-plateau on top of a decaying schedule, with Keras' own Adam.

An MLP on scikit-learn's digits, trained by `keras.optimizers.Adam` whose
learning rate is an `ExponentialDecay` schedule. Keras' own
`ReduceLROnPlateau` cannot lower such a rate (it assigns
`optimizer.learning_rate`, which raises `TypeError` for a schedule);
wrapping the optimizer in `keras_optlab.optimizers.Steered` gives it an
`lr_scale` variable that keras_optlab's `ReduceLROnPlateau` multiplies by
`factor`. The applied rate is schedule(step) x lr_scale: the schedule keeps
decaying and each plateau lowers it as a whole.

Prints, per epoch, the validation loss, the schedule's own rate, the scale
and the applied rate (written into the logs by `LearningRateLogger`), then
the epochs after which the rate was reduced.

    PYTHONPATH=. python examples/plateau_with_schedule.py
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_optlab.callbacks import LearningRateLogger, ReduceLROnPlateau  # noqa: E402
from keras_optlab.optimizers import Steered  # noqa: E402


def _scalar(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


class RecordScale(keras.callbacks.Callback):
    """Keeps `lr_scale` and the schedule's rate at the end of every epoch.

    Placed after `ReduceLROnPlateau`, it sees the scale once the epoch's
    reduction, if any, has been made. It reads the optimizer through
    `self.model` each time: on JAX only the model's optimizer is synced with
    the train state at the end of an epoch.
    """

    def __init__(self, schedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.scales: list[float] = []
        self.schedule_rates: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        self.scales.append(_scalar(optimizer.lr_scale))
        # The schedule's own value at the current step, without the scale.
        # Not `optimizer.inner_optimizer.learning_rate`: the inner optimizer
        # applies the scaled rate, and that is what it returns.
        self.schedule_rates.append(_scalar(self.schedule(optimizer.iterations)))


def main(epochs: int, batch_size: int) -> list[int]:
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    # Halve the rate every 20 epochs, smoothly.
    schedule = keras.optimizers.schedules.ExponentialDecay(
        1e-2, decay_steps=20 * steps_per_epoch, decay_rate=0.5
    )
    model.compile(
        optimizer=Steered(keras.optimizers.Adam(schedule)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    record = RecordScale(schedule)
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
        batch_size=batch_size, verbose=0,
        callbacks=[
            LearningRateLogger(),  # the rate applied during the epoch
            ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=2, min_delta=1e-3, cooldown=2,
                min_lr=1e-5,
            ),
            record,
        ],
    )

    print(f"backend {keras.backend.backend()}, {steps_per_epoch} steps per epoch\n")
    print(f"{'epoch':>5} {'val_loss':>9} {'val_acc':>8} {'schedule':>10} "
          f"{'lr_scale':>9} {'applied lr':>11}")
    reduced = []
    for epoch in range(epochs):
        scale_before = record.scales[epoch - 1] if epoch else 1.0
        mark = ""
        if record.scales[epoch] < scale_before:
            reduced.append(epoch + 1)
            mark = f"  reduced: scale {scale_before:g} -> {record.scales[epoch]:g}"
        print(
            f"{epoch + 1:5d} {history.history['val_loss'][epoch]:9.4f} "
            f"{history.history['val_accuracy'][epoch]:8.4f} "
            f"{record.schedule_rates[epoch]:10.3e} {scale_before:9.4g} "
            f"{history.history['learning_rate'][epoch]:11.3e}{mark}"
        )
    print(
        "\nlr_scale and 'applied lr' are those of the epoch's steps; a "
        "reduction at the end of an epoch applies from the next one."
    )
    print(f"learning rate reduced after epochs: {reduced or 'none'}")
    return reduced


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    arguments = parser.parse_args()
    main(arguments.epochs, arguments.batch_size)
