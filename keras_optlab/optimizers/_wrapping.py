"""What the wrappers (`Steered`, `SWA`, `Lookahead`, `SwitchingOptimizer`)
share: the checks of an optimizer they wrap, the delegation of variables and
learning rate to it (`InnerRate`, `InnerDelegation`), and whether a
`tf.distribute` strategy is in scope."""

from __future__ import annotations

from typing import Any, Iterable

import keras
from keras import ops

from keras_optlab.optimizers.base import SteerableOptimizer

# Arguments that act around a whole step. Set on an inner optimizer, the
# wrapper's step would skip or repeat them silently, so they are refused
# there and set on the wrapper instead.
WRAPPER_ONLY = ("use_ema", "gradient_accumulation_steps", "loss_scale_factor")


def check_inner(
    argument: str,
    optimizer: Any,
    wrapper: str,
    *,
    unbuilt: bool = True,
    refused: Iterable[str] = WRAPPER_ONLY,
    refused_because: str | None = None,
) -> keras.optimizers.Optimizer:
    """Checks `optimizer`, given to `wrapper` as `argument`: an optimizer
    instance, not a `LossScaleOptimizer` (which goes outside the wrapper),
    not built yet where `unbuilt` (the wrapper builds it on the variables it
    trains) and without any of the `refused` arguments set (`refused_because`
    says why; by default, that the wrapper applies them). Returns it."""
    if refused_because is None:
        refused_because = f"set it on the {wrapper}, which applies it around the inner optimizer"
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"Argument `{argument}` must be a keras.optimizers.Optimizer instance. "
            f"Received: {argument}={optimizer!r}"
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise ValueError(
            f"Argument `{argument}` must not be a LossScaleOptimizer: write "
            f"LossScaleOptimizer({wrapper}(optimizer)), with {wrapper} inside. "
            f"Received: {argument}={optimizer!r}"
        )
    if unbuilt and optimizer.built:
        raise ValueError(
            f"Argument `{argument}` must be an optimizer that is not built yet: it "
            f"is already built on {len(optimizer._trainable_variables)} variables "
            f"and holds state for them. {wrapper} builds it on the variables it "
            f"trains; pass a fresh one. Received: {argument}={optimizer.name!r}"
        )
    for attribute in refused:
        if getattr(optimizer, attribute, None):
            raise ValueError(
                f"Argument `{argument}` must not set `{attribute}`: {refused_because}. "
                f"Received: {argument}.{attribute}={getattr(optimizer, attribute)!r}"
            )
    return optimizer


def under_tf_strategy() -> bool:
    """Whether a (non-default) `tf.distribute` strategy is in scope."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


class InnerRate:
    """What a wrapper whose `inner_optimizer` applies the update shares with
    it: the variables (the wrapper's own first, then the inner ones) and the
    learning rate, the inner rate times the wrapper's `lr_scale`. A rate set
    after construction is the inner optimizer's, as in Keras'
    `LossScaleOptimizer`. Mixed in before `SteerableOptimizer`.

    `scale_inner_rate` makes everything the inner optimizer applies (its
    update, its decoupled weight decay, PyTorch's fused paths, all of which
    read `_get_current_learning_rate`) use the scaled rate."""

    @property
    def variables(self):
        return self._variables[:] + self.inner_optimizer.variables

    def _inner_rate(self):
        # The class's method, not the instance's: the instance attribute is
        # the scaled rate (see `scale_inner_rate`).
        inner = self.inner_optimizer
        return type(inner)._get_current_learning_rate(inner)

    def _get_current_learning_rate(self):
        return ops.multiply(
            ops.cast(self._inner_rate(), "float32"), ops.convert_to_tensor(self.lr_scale)
        )

    @property
    def learning_rate(self):
        """The inner optimizer's rate times `lr_scale`."""
        return self._get_current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # Called once by the base constructor (the wrapper's own, unused
        # rate); afterwards a new rate is the inner optimizer's.
        if getattr(self, "inner_optimizer", None) is None:
            SteerableOptimizer.learning_rate.fset(self, learning_rate)
        else:
            self.inner_optimizer.learning_rate = learning_rate

    def scale_inner_rate(self) -> None:
        """Shadows the inner optimizer's `_get_current_learning_rate` with
        this wrapper's: once, not around each step, because tf.distribute
        runs the replicas' steps in parallel threads."""
        object.__setattr__(
            self.inner_optimizer, "_get_current_learning_rate", self._get_current_learning_rate
        )


def rate_already_scaled(optimizer: Any) -> bool:
    """Whether another wrapper's `scale_inner_rate` holds `optimizer`."""
    return "_get_current_learning_rate" in vars(optimizer)


class InnerDelegation(InnerRate):
    """`InnerRate`, plus the step count and loss scaling: for a wrapper
    whose inner optimizer counts the steps (`Steered`, `SWA`)."""

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)
