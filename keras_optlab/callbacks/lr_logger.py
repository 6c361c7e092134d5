"""Writes the learning rate really applied into the epoch logs."""

from __future__ import annotations

import keras
import numpy as np

from keras_optlab.optimizers.base import find_attribute


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the effective learning rate, and the phase if any, in the logs.

    At the end of each epoch it adds `learning_rate` (the rate the optimizer
    applies at its current step: the schedule's value times `lr_scale` for
    keras_optlab's optimizers) and, for optimizers that switch method, the
    integer `optimizer_phase`. Place it before `History`-reading callbacks
    such as `keras.callbacks.TensorBoard` or `CSVLogger` in the list so they
    see the values; `History` always does.

    Example:

    ```python
    from keras_optlab.callbacks import LearningRateLogger

    history = model.fit(x, y, epochs=10, callbacks=[LearningRateLogger()])
    history.history["learning_rate"]
    ```
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        # Through self.model: on JAX only the model's optimizer is synced
        # with the train state at the end of an epoch.
        optimizer = self.model.optimizer
        rate = keras.ops.convert_to_numpy(optimizer.learning_rate)
        logs["learning_rate"] = float(np.asarray(rate))
        phase = find_attribute(optimizer, "phase")
        if phase is not None:
            logs["optimizer_phase"] = int(np.asarray(keras.ops.convert_to_numpy(phase)))
