"""The base class of every optimizer keras_optlab writes.

It adds one thing to `keras.optimizers.Optimizer`: a scalar variable
`lr_scale`, owned by the optimizer, multiplied into the learning rate.
Callbacks such as `keras_optlab.callbacks.ReduceLROnPlateau` steer training by
writing it between steps. Because the variable is created in `__init__`,
right after Keras' own `iteration` (and `learning_rate`) variables, it has the
same index in `optimizer.variables` whether the optimizer was just built or
loaded from a `.keras` file; it is therefore saved, restored, and carried in
the JAX train state like any other optimizer variable.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation


@keras.saving.register_keras_serializable(package="keras_optlab")
class SteerableOptimizer(keras.optimizers.Optimizer):
    """A `keras.optimizers.Optimizer` whose learning rate carries a scale.

    The learning rate applied at step `t` is `learning_rate(t) * lr_scale`,
    where `learning_rate` is the float, schedule or callable given to the
    constructor and `lr_scale` is a float32 variable, 1.0 at creation.
    `optimizer.learning_rate` returns that product, so logging callbacks see
    the rate really applied. Decoupled weight decay uses the same product, as
    it does in Keras when a plateau callback lowers the learning rate.

    Subclasses write `build`, `update_step` and `get_config` as for any Keras
    optimizer. Integer learning rates are accepted and converted.
    """

    def __init__(self, learning_rate: Any, **kwargs: Any) -> None:
        learning_rate = _validation.check_learning_rate(learning_rate)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.lr_scale = self._add_scalar("lr_scale", initial=1)

    def _add_scalar(self, name: str, dtype: str = "float32", initial: Any = 0):
        """Adds a scalar optimizer variable (a step count, a rate, a phase)
        kept on the first replica only, starting at `initial`."""
        return self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(initial),
            dtype=dtype,
            aggregation="only_first_replica",
            name=name,
        )

    def _get_current_learning_rate(self):
        base = super()._get_current_learning_rate()
        return ops.multiply(
            ops.cast(base, "float32"), ops.convert_to_tensor(self.lr_scale)
        )


def find_attribute(optimizer: keras.optimizers.Optimizer, name: str):
    """`optimizer.<name>`, looking through wrappers such as
    `keras.optimizers.LossScaleOptimizer` (via `inner_optimizer`); `None` if
    no optimizer in the chain has it."""
    while optimizer is not None:
        value = getattr(optimizer, name, None)
        if value is not None:
            return value
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def lr_scale_of(optimizer: keras.optimizers.Optimizer):
    """The `lr_scale` variable steering `optimizer`, or `None`."""
    return find_attribute(optimizer, "lr_scale")
