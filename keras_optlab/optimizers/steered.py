"""`Steered`: gives any Keras optimizer an `lr_scale` that callbacks can write."""

from __future__ import annotations

from typing import Any

import keras

from keras_optlab.optimizers._wrapping import InnerDelegation, check_inner
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class Steered(InnerDelegation, SteerableOptimizer):
    r"""Wraps any Keras optimizer so that its learning rate carries a scale.

    The wrapped (inner) optimizer does all the work, with its own learning
    rate $\eta(t)$ (float, schedule or callable) multiplied by the scale
    $s$ that this wrapper owns:

    $$
    \eta_{\text{applied}}(t) = \eta(t)\, s
    $$

    $s$ is the float32 variable `lr_scale`, 1.0 at creation, written by
    `keras_optlab.callbacks.ReduceLROnPlateau` between steps. Use this
    wrapper when a Keras built-in optimizer has a **schedule** as learning
    rate and a plateau callback must lower it: such an optimizer has no
    variable to write, and one cannot be added to it after construction
    (a `.keras` file stores optimizer variables by position, and
    `load_own_variables` skips all of them, with only a warning, when their
    number differs).

    Like `keras.optimizers.LossScaleOptimizer`, the wrapper passes
    `learning_rate` (scaled), `iterations` and `variables` (its own, then the
    inner optimizer's) through, and serializes the inner optimizer nested,
    so the scale is saved in and restored from `.keras` files. For mixed
    precision put the loss-scale optimizer outside:
    `LossScaleOptimizer(Steered(Adam(schedule)))`.

    Everything the inner optimizer applies uses the scaled rate: its update,
    and decoupled weight decay (`AdamW`), as when Keras' own plateau callback
    lowers a float learning rate. `optimizer.learning_rate` returns the
    scaled rate, and so does the inner optimizer's own `learning_rate`.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import ReduceLROnPlateau
    from keras_optlab.optimizers import Steered

    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 1000, 0.9)
    model.compile(optimizer=Steered(keras.optimizers.Adam(schedule)), loss="mse")
    model.fit(x, y, validation_split=0.2, callbacks=[ReduceLROnPlateau()])
    ```

    Args:
        inner_optimizer: The `keras.optimizers.Optimizer` to steer; not a
            `LossScaleOptimizer` (wrap that around `Steered` instead) and
            not another `Steered`. Required.
        name: Name of the wrapper. Defaults to `None` (`"steered"` with a
            unique suffix).
    """

    def __init__(self, inner_optimizer: keras.optimizers.Optimizer, name: str | None = None, **kwargs: Any) -> None:
        # Built or not (Keras' own optimizers are wrapped as they come); the
        # inner optimizer keeps its own arguments.
        check_inner("inner_optimizer", inner_optimizer, "Steered", unbuilt=False, refused=())
        if isinstance(inner_optimizer, Steered):
            raise ValueError(
                "Argument `inner_optimizer` must not be a Steered: it already has "
                f"an `lr_scale`. Received: inner_optimizer={inner_optimizer!r}"
            )
        if kwargs:
            # The inner optimizer owns clipping, weight decay, EMA, ...
            raise ValueError(
                "Steered takes no optimizer arguments of its own; set "
                f"`{'`, `'.join(kwargs)}` on the inner optimizer."
            )
        # The wrapper's own learning rate is never used (as in
        # LossScaleOptimizer); 0.0 makes it a constant variable so that the
        # number of variables is the same built fresh or loaded.
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.scale_inner_rate()

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(list(trainable_variables))
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Steered":
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)
