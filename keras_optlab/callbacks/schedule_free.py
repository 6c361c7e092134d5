"""Puts a schedule-free model at its average x to validate, evaluate,
predict and save, and back at y to train."""

from __future__ import annotations

import keras
import numpy as np

from keras_optlab.optimizers.base import find_attribute
from keras_optlab.optimizers.schedule_free import move_between_y_and_x


class ScheduleFreeEval(keras.callbacks.Callback):
    r"""Calls a schedule-free optimizer's `eval()` and `train()` for `fit`.

    Schedule-free optimizers train at $y$ and average at $x$ (see
    `keras_optlab.optimizers.schedule_free`). This callback moves the
    model's trainable weights:

    - to $x$ at `on_test_begin` (validation during `fit`, or `evaluate`
      given this callback) and at `on_epoch_end`, so that callbacks after
      this one in the list (`ModelCheckpoint`, `EarlyStopping`) see $x$;
    - to $x$ at `on_train_end`, so that `evaluate`, `predict` and a model
      saved after `fit` see $x$;
    - back to $y$ at `on_train_begin` and `on_epoch_begin`, before any step.

    Moving is exact in both directions up to float rounding ($x = y + (1 -
    1/\beta)(z - y)$ and back). To resume bit for bit, the callback keeps a
    host copy of $y$ and of the $x$ it wrote while the model is at $x$: if
    the weights still equal that $x$ when training resumes, $y$ is put back
    as it was; if something else changed them (`set_weights`,
    `EarlyStopping(restore_best_weights=True)`), $y$ is computed from them
    and $z$, as the reference's `train()` does. The copies cost two host
    transfers of the trainable weights per move.

    Serves `ScheduleFreeSGD` and `ScheduleFreeAdamW` from
    `keras_optlab.optimizers.schedule_free` (whose variable `at_average`,
    saved with the model, says where the weights are) and Keras' own
    `keras.optimizers.ScheduleFreeAdamW` exactly (same $y$, $z$ in its slot
    `momentum`, $\beta$ = `beta_1`, the relation its own step uses to
    recover $x$; Keras 3.15's step itself departs from the paper on
    TensorFlow and PyTorch, see `ScheduleFreeAdamW`). Keras' class has no
    such variable: where its weights are is kept on the optimizer object,
    so it is lost when the model is saved and loaded; a model loaded from a
    file saved at $x$ is then taken to be at $y$. Also through
    `keras.optimizers.LossScaleOptimizer`. Any other optimizer is a
    `TypeError` at `on_train_begin`.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import ScheduleFreeEval
    from keras_optlab.optimizers import ScheduleFreeAdamW

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=ScheduleFreeAdamW(), loss="sparse_categorical_crossentropy")
    model.fit(x, y, validation_split=0.25, epochs=10, callbacks=[ScheduleFreeEval()])
    model.evaluate(x, y)  # at x
    ```
    """

    def __init__(self) -> None:
        super().__init__()
        self._saved_y = None
        self._written_x = None

    # Through self.model each time: on JAX only the model's optimizer is
    # synced with the train state between epochs.
    def _optimizer(self):
        optimizer = self.model.optimizer
        own = find_attribute(optimizer, "at_average")
        if own is not None:
            while not hasattr(optimizer, "to_x"):
                optimizer = optimizer.inner_optimizer
            return optimizer
        while optimizer is not None:
            if isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW):
                return optimizer
            optimizer = getattr(optimizer, "inner_optimizer", None)
        raise TypeError(
            "ScheduleFreeEval needs a schedule-free optimizer (keras_optlab's "
            "ScheduleFreeSGD or ScheduleFreeAdamW, or "
            "keras.optimizers.ScheduleFreeAdamW). Received: "
            f"{type(self.model.optimizer).__name__}"
        )

    def _variables(self):
        return list(self.model.trainable_variables)

    def _to_x(self):
        optimizer = self._optimizer()
        if not optimizer.built or _at_x(optimizer):
            return
        variables = self._variables()
        self._saved_y = _values(variables)
        if hasattr(optimizer, "to_x"):
            optimizer.to_x(variables)
        else:
            beta = _beta_1(optimizer)
            move_between_y_and_x(optimizer, optimizer._momentums, variables, 1.0 - 1.0 / beta)
            optimizer._keras_optlab_at_x = True
        self._written_x = _values(variables)

    def _to_y(self):
        optimizer = self._optimizer()
        if not optimizer.built or not _at_x(optimizer):
            return
        variables = self._variables()
        saved, written = self._saved_y, self._written_x
        self._saved_y = self._written_x = None
        if saved is not None and _equal(_values(variables), written):
            for variable, value in zip(variables, saved):
                variable.assign(value)
            _mark_at_y(optimizer)
        elif hasattr(optimizer, "to_y"):
            optimizer.to_y(variables)
        else:
            move_between_y_and_x(optimizer, optimizer._momentums, variables, 1.0 - _beta_1(optimizer))
            _mark_at_y(optimizer)

    def on_train_begin(self, logs=None):
        self._optimizer()  # a wrong optimizer fails here, before any step
        self._to_y()

    def on_epoch_begin(self, epoch, logs=None):
        self._to_y()

    def on_test_begin(self, logs=None):
        self._to_x()

    def on_epoch_end(self, epoch, logs=None):
        self._to_x()

    def on_train_end(self, logs=None):
        self._to_x()


def _at_x(optimizer) -> bool:
    if hasattr(optimizer, "at_average"):
        return bool(keras.ops.convert_to_numpy(optimizer.at_average))
    return getattr(optimizer, "_keras_optlab_at_x", False)


def _mark_at_y(optimizer) -> None:
    if hasattr(optimizer, "at_average"):
        optimizer.at_average.assign(0)
    else:
        optimizer._keras_optlab_at_x = False


def _beta_1(optimizer) -> float:
    beta = optimizer.beta_1
    if callable(beta):
        beta = beta()
    return float(keras.ops.convert_to_numpy(beta))


def _values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _equal(values, others) -> bool:
    return others is not None and all(np.array_equal(a, b) for a, b in zip(values, others))
