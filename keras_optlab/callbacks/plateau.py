"""Reduce the learning rate on a plateau, whatever the learning rate is."""

from __future__ import annotations

import keras
import numpy as np

from keras_optlab import _validation
from keras_optlab.callbacks._monitor import Monitor
from keras_optlab.optimizers.base import lr_scale_of


def _innermost(optimizer):
    while getattr(optimizer, "inner_optimizer", None) is not None:
        optimizer = optimizer.inner_optimizer
    return optimizer


def _as_float(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


class ReduceLROnPlateau(keras.callbacks.Callback):
    r"""Lowers the learning rate when a metric stops improving, for any
    schedule and any optimizer.

    Same arguments and meaning as `keras.callbacks.ReduceLROnPlateau`: after
    `patience` epochs without an improvement of the monitored metric (by more
    than `min_delta`), the learning rate is multiplied by `factor`, never
    going below `min_lr`; then `cooldown` epochs pass before epochs without
    improvement are counted again. The counters `wait`, `cooldown_counter` and
    `best` evolve as in Keras, and are reset at the start of each `fit`.

    How the rate is lowered:

    - **The optimizer owns an `lr_scale`** (keras_optlab's optimizers, any
      optimizer wrapped in `keras_optlab.optimizers.Steered`, either of them
      inside `keras.optimizers.LossScaleOptimizer`): the callback multiplies
      `lr_scale` by `factor`. The applied rate is $\eta(t)\,s$, schedule
      times scale, so a schedule keeps its shape and is lowered as a whole.
      Only a variable changes: nothing retraces or recompiles, and the scale
      is saved with the model.
    - **A Keras optimizer with a float learning rate** and no scale: the
      callback assigns the learning rate, exactly as Keras' own callback
      does (same sequence of rates).
    - **A Keras optimizer with a schedule** and no scale: `TypeError` at the
      start of training, naming the fix: wrap the optimizer in
      `keras_optlab.optimizers.Steered`.

    `min_lr` bounds the **effective** rate at the moment of a reduction: with
    $r$ the applied rate at the current step, the new rate is
    $\max(r \cdot \text{factor}, \text{min\_lr})$, and nothing is done if
    $r \le \text{min\_lr}$. A decaying schedule may take the rate below
    `min_lr` later; the callback never does.

    Like Keras' callback it writes `learning_rate` (the rate applied during
    the epoch, before any reduction) into the epoch logs.

    Departures from Keras: `factor` must be in (0, 1) (Keras only rejects
    `factor >= 1`); an unknown `mode` is an error, not a warning;
    `mode="auto"` decides from the metric's name (`*loss`, `*error`, `*mse`,
    `*mae`, `*crossentropy` are minimised); a missing metric warns once, not
    every epoch. Optimizers holding several optimizers (`optimizers`
    attribute) are not supported.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import ReduceLROnPlateau
    from keras_optlab.optimizers import Steered

    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=10000)
    model.compile(optimizer=Steered(keras.optimizers.Adam(schedule)), loss="mse")
    model.fit(x, y, validation_split=0.2, epochs=50,
              callbacks=[ReduceLROnPlateau(factor=0.5, patience=3)])
    ```

    Args:
        monitor: The metric to watch, a key of the epoch logs. Defaults to
            `"val_loss"`.
        factor: The rate is multiplied by it, in (0, 1). Defaults to `0.1`.
        patience: Epochs without improvement before a reduction, an integer
            >= 0. Defaults to `10`.
        verbose: 0 (quiet) or 1 (a message at each reduction). Defaults to
            `0`.
        mode: `"auto"`, `"min"` or `"max"`. Defaults to `"auto"`.
        min_delta: Smallest change that counts as an improvement, >= 0.
            Defaults to `1e-4`.
        cooldown: Epochs after a reduction during which epochs without
            improvement are not counted, an integer >= 0. Defaults to `0`.
        min_lr: Lower bound on the effective rate set by a reduction, >= 0.
            Defaults to `0.0`.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        self._monitor = Monitor(monitor, mode, min_delta, owner="ReduceLROnPlateau")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = self._monitor.min_delta
        self.factor = _validation.check_float(
            "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.patience = _validation.check_int("patience", patience, low=0)
        self.verbose = _validation.check_int("verbose", verbose, low=0)
        self.cooldown = _validation.check_int("cooldown", cooldown, low=0)
        self.min_lr = _validation.check_float("min_lr", min_lr, low=0.0)
        self.cooldown_counter = 0

    # Keras' names for the state, kept in the shared Monitor.
    @property
    def wait(self) -> int:
        return self._monitor.wait

    @property
    def best(self) -> float:
        return self._monitor.best

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._monitor.reset()
        self.cooldown_counter = 0
        optimizer = self.model.optimizer
        if lr_scale_of(optimizer) is None and not isinstance(
            _innermost(optimizer)._learning_rate, keras.Variable
        ):
            raise TypeError(
                "ReduceLROnPlateau cannot lower the learning rate of "
                f"{type(_innermost(optimizer)).__name__}: it is a schedule "
                "(or a callable) and the optimizer has no `lr_scale`. Wrap the "
                "optimizer in keras_optlab.optimizers.Steered, e.g. "
                "`Steered(keras.optimizers.Adam(schedule))` (inside any "
                "LossScaleOptimizer), or use a keras_optlab optimizer."
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        # Through self.model every time: on JAX a write through a kept
        # reference to the optimizer is overwritten by the train state.
        optimizer = self.model.optimizer
        logs["learning_rate"] = _as_float(optimizer.learning_rate)
        current = self._monitor.value(logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self._monitor.wait = 0
        if self._monitor.is_improvement(current):
            self._monitor.best = current
            self._monitor.wait = 0
        elif not self.in_cooldown():
            self._monitor.wait += 1
            if self._monitor.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter = self.cooldown
                self._monitor.wait = 0

    def _reduce(self, optimizer, epoch: int) -> bool:
        old_lr = _as_float(optimizer.learning_rate)
        # Keras compares with float32(min_lr): a rate stored in float32 at
        # min_lr must count as reached.
        if not old_lr > np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        scale = lr_scale_of(optimizer)
        if scale is None:
            # Keras' own path, for a float rate without a scale.
            optimizer.learning_rate = new_lr
        elif old_lr * self.factor >= self.min_lr:
            scale.assign(_as_float(scale) * self.factor)
        else:
            scale.assign(_as_float(scale) * (self.min_lr / old_lr))
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True
