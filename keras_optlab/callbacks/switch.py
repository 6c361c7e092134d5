"""Switches a switching optimizer to its second phase at an epoch or on a plateau."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_optlab import _validation
from keras_optlab.callbacks._monitor import Monitor
from keras_optlab.optimizers.base import find_attribute


def _phase_variable(optimizer):
    phase = find_attribute(optimizer, "phase")
    if not isinstance(phase, keras.Variable):
        raise ValueError(
            "SwitchOptimizer needs a model whose optimizer can switch: a "
            "keras_optlab.optimizers.SwitchingOptimizer (or SWATS), possibly "
            "wrapped in keras.optimizers.LossScaleOptimizer. Received an "
            f"optimizer of type {type(optimizer).__name__}."
        )
    return phase


class SwitchOptimizer(keras.callbacks.Callback):
    """Writes phase 1 into the model's switching optimizer.

    Switches at the end of epoch `at_epoch`, or once the
    monitored metric has not improved by more than `min_delta` for
    `patience` epochs, whichever comes first when both are given. The
    switch is a write to the optimizer's `phase` variable between two steps:
    the compiled train step is not retraced, and a model saved afterwards
    remembers it. Does nothing once the optimizer is in phase 1, whoever put
    it there (`switch_step`, SWATS' own criterion, a loaded model).

    Epochs are counted as Keras counts them in `on_epoch_end`, from 0:
    `at_epoch=3` switches at the end of the fourth epoch, so the fifth epoch
    (epoch index 4) is the first trained by `second`; `switch_epoch` is then
    4. Every epoch's logs carry `switch_epoch`: -1 before the switch, then that
    index (so it appears in `History`, and in `TensorBoard` or `CSVLogger`
    placed after this callback); the attribute `switch_epoch` keeps it
    (`None` while no switch happened through this callback).

    The optimizer is always reached through `self.model.optimizer`: on JAX
    the live state lives outside the model's variables during an epoch, and
    only the model's optimizer is synced with it.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import SwitchOptimizer
    from keras_optlab.optimizers import SwitchingOptimizer

    optimizer = SwitchingOptimizer(keras.optimizers.Adam(1e-3),
                                   keras.optimizers.SGD(0.01, momentum=0.9))
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, validation_split=0.2, epochs=50,
              callbacks=[SwitchOptimizer(monitor="val_loss", patience=3)])
    ```

    Args:
        at_epoch: Switch at the end of this epoch index, an int >= 0, or
            `None`. Defaults to `None`.
        monitor: Metric watched for a plateau, or `None` to switch only at
            `at_epoch`. Defaults to `None`.
        patience: Epochs without improvement before switching, an int >= 1.
            Defaults to `3`.
        min_delta: Smallest change counting as an improvement, >= 0.
            Defaults to `0.0`.
        mode: `"min"`, `"max"` or `"auto"` (from the metric's name).
            Defaults to `"auto"`.
        verbose: Print a line when switching, 0 or 1. Defaults to `0`.
    """

    def __init__(
        self,
        at_epoch: int | None = None,
        monitor: str | None = None,
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if at_epoch is not None:
            at_epoch = _validation.check_int("at_epoch", at_epoch, low=0)
        self.patience = _validation.check_int("patience", patience, low=1)
        self.verbose = _validation.check_int("verbose", verbose, low=0, high=1)
        if at_epoch is None and monitor is None:
            raise ValueError(
                "SwitchOptimizer needs `at_epoch` or `monitor`. "
                "Received: at_epoch=None, monitor=None"
            )
        self.at_epoch = at_epoch
        self.monitor = (
            Monitor(monitor, mode, min_delta, owner="SwitchOptimizer")
            if monitor is not None
            else None
        )
        self.switch_epoch: int | None = None

    def on_train_begin(self, logs=None):
        # Fail before the first epoch rather than at the switch.
        _phase_variable(self.model.optimizer)
        if self.monitor is not None:
            self.monitor.reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None):
        phase = _phase_variable(self.model.optimizer)
        if logs is not None:
            logs["switch_epoch"] = -1 if self.switch_epoch is None else self.switch_epoch
        if self.switch_epoch is not None:
            return
        if int(np.asarray(keras.ops.convert_to_numpy(phase))) != 0:
            return
        due = self.at_epoch is not None and epoch >= self.at_epoch
        if self.monitor is not None:
            current = self.monitor.value(logs)
            if current is not None:
                self.monitor.update(current)
                due = due or self.monitor.wait >= self.patience
        if due:
            phase.assign(1)
            self.switch_epoch = epoch + 1
            if logs is not None:
                logs["switch_epoch"] = self.switch_epoch
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: SwitchOptimizer switching to the "
                    "second method from the next epoch."
                )
