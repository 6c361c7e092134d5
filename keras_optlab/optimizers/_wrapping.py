"""What the wrappers (`Steered`, `SWA`, `Lookahead`, `SwitchingOptimizer`)
share: the checks of an optimizer they wrap, and whether a `tf.distribute`
strategy is in scope."""

from __future__ import annotations

from typing import Any, Iterable

import keras

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
