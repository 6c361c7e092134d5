"""Callbacks that steer the learning rate during `fit`, by name.

The lab's candidates name them after an optimizer (`adam+plateau`); the
table says how a run builds each one and which of its arguments are worth
tuning, as the optimizer and schedule registries do.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Mapping

import keras

from keras_optlab import _registry
from keras_optlab import search_space as space
from keras_optlab.callbacks.plateau import ReduceLROnPlateau


@dataclasses.dataclass(frozen=True)
class CallbackInfo:
    """What the registry knows about one callback name.

    Attributes:
        name: The registry name, lowercase.
        factory: Called with the keyword arguments to build the callback.
        family: `"plateau"` (reacts to a metric).
        description: What it does, in one line.
        paper: Authors, title, year, or `"-"`.
        keras_builtin: Whether the class is Keras' own.
        fit_arguments: Called as `fit_arguments(epochs, **params)` with one
            value per `search_space` name; returns the keyword arguments of
            `factory` for a run of `epochs` epochs.
        search_space: The arguments worth tuning, with ranges and defaults.
        needs_lr_scale: Whether it needs an optimizer whose learning rate
            it can lower while a schedule drives it (an `lr_scale`: wrap
            Keras' own optimizers in `keras_optlab.optimizers.Steered`).
    """

    name: str
    factory: Callable[..., keras.callbacks.Callback]
    family: str
    description: str
    paper: str
    keras_builtin: bool
    fit_arguments: Callable[..., Mapping[str, Any]]
    search_space: Mapping[str, space.Dimension] = dataclasses.field(default_factory=dict)
    needs_lr_scale: bool = False

    def __post_init__(self):
        checked = space.check_space(self.search_space, f"callback {self.name!r}")
        object.__setattr__(self, "search_space", MappingProxyType(checked))


_REGISTRY: _registry.Registry[CallbackInfo] = _registry.Registry("callback")


def register(info: CallbackInfo) -> CallbackInfo:
    """Adds `info` to the registry; its name must not be taken."""
    return _REGISTRY.add(info)


def list_callbacks(family: str | None = None) -> list[str]:
    """Names of the registered callbacks, in registration order."""
    return _REGISTRY.names(family, None)


def info(name: str) -> CallbackInfo:
    """The `CallbackInfo` of `name`; `ValueError` listing the names if unknown."""
    return _REGISTRY.lookup(name)


register(
    CallbackInfo(
        name="plateau",
        factory=ReduceLROnPlateau,
        family="plateau",
        description=(
            "performance-based decay: multiply the rate by `factor` after "
            "`patience` epochs without a lower validation loss"
        ),
        paper="-",
        keras_builtin=False,
        fit_arguments=lambda epochs, factor, patience: dict(
            monitor="val_loss", factor=factor, patience=patience
        ),
        search_space={
            "factor": space.Uniform(0.1, 0.7, default=0.5),
            "patience": space.IntUniform(1, 5, default=2),
        },
        needs_lr_scale=True,
    )
)
