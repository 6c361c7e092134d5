"""Search spaces: the ranges a tuner may draw a hyperparameter from.

The optimizer, schedule and callback registries declare, next to each name,
which of its arguments are worth tuning and over what range
(`OptimizerInfo.search_space`, `ScheduleInfo.search_space`,
`CallbackInfo.search_space`). The lab's `tune` reads them; nothing here
depends on a tuning library.

Each dimension carries a `default`: the value the name stands for when it
is not tuned (the registry's default, or the class's own), so that "the
default setting" of a candidate is well defined and can be compared with the
tuned one.

Example:

```python
from keras_optlab import search_space as space

momentum = space.OneMinusLogUniform(0.5, 0.99, default=0.9)
momentum.from_unit(0.5)   # the value halfway through the range: 0.9293...
```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from keras_optlab import _validation


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One tunable hyperparameter: a range and the untuned default.

    Subclasses fix how values are spread over the range. `from_unit` maps a
    number in [0, 1] to a value, so that a sampler (or a test) can walk the
    range without knowing its shape.

    Attributes:
        low: Smallest value.
        high: Largest value.
        default: The value used when the dimension is not tuned.
    """

    low: float
    high: float
    default: float

    kind = "dimension"

    def __post_init__(self) -> None:
        low = _validation.check_float("low", self.low)
        high = _validation.check_float("high", self.high)
        if not low < high:
            raise ValueError(
                f"Argument `high` must be greater than `low`. Received: low={low!r}, high={high!r}"
            )
        _validation.check_float("default", self.default, low=low, high=high)

    def from_unit(self, u: float) -> float:
        """The value at fraction `u` (in [0, 1]) of the range."""
        return self.low + (self.high - self.low) * u

    def contains(self, value: Any) -> bool:
        """Whether `value` is a number in [low, high]."""
        try:
            _validation.check_float("value", value, low=self.low, high=self.high)
        except (TypeError, ValueError):
            return False
        return True

    def describe(self) -> str:
        """The range in one line of text, for reports."""
        return f"{self.kind} [{self.low:g}, {self.high:g}], default {self.default:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "default": self.default}


@dataclasses.dataclass(frozen=True)
class Uniform(Dimension):
    """Every value in [low, high] equally likely."""

    kind = "uniform"


@dataclasses.dataclass(frozen=True)
class LogUniform(Dimension):
    """log(value) uniform: each factor of ten in [low, high] equally likely.
    The usual prior for learning rates and decay constants; `low > 0`."""

    kind = "log_uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        _validation.check_float("low", self.low, low=0.0, low_open=True)

    def from_unit(self, u: float) -> float:
        return math.exp(math.log(self.low) + (math.log(self.high) - math.log(self.low)) * u)


@dataclasses.dataclass(frozen=True)
class OneMinusLogUniform(Dimension):
    """log(1 − value) uniform: for decay rates close to 1 (momentum, Adam's
    β's), where 0.9 → 0.99 → 0.999 are equal steps. `high < 1`."""

    kind = "one_minus_log_uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        _validation.check_float("high", self.high, high=1.0, high_open=True)

    def from_unit(self, u: float) -> float:
        # u = 0 gives `low`, u = 1 gives `high`: 1 − value falls from 1 − low to 1 − high.
        top, bottom = math.log(1.0 - self.low), math.log(1.0 - self.high)
        return 1.0 - math.exp(top + (bottom - top) * u)


@dataclasses.dataclass(frozen=True)
class IntUniform(Dimension):
    """Every integer in [low, high] equally likely."""

    kind = "int_uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("low", "high", "default"):
            _validation.check_int(name, getattr(self, name))

    def from_unit(self, u: float) -> int:
        return int(min(self.high, math.floor(self.low + (self.high - self.low + 1) * u)))

    def contains(self, value: Any) -> bool:
        try:
            _validation.check_int("value", value, low=int(self.low), high=int(self.high))
        except (TypeError, ValueError):
            return False
        return True

    def describe(self) -> str:
        return f"integer [{self.low:d}, {self.high:d}], default {self.default:d}"


SearchSpace = Mapping[str, Dimension]


def defaults(space: SearchSpace) -> dict[str, Any]:
    """The default of every dimension, by name."""
    return {name: dimension.default for name, dimension in space.items()}


def check_space(space: SearchSpace, owner: str) -> dict[str, Dimension]:
    """Returns `space` as a dict after checking that every key is a name
    and every value a `Dimension`; `owner` names it in messages."""
    checked = {}
    for name, dimension in dict(space).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"Search space of {owner}: names must be identifiers. Received: {name!r}"
            )
        if not isinstance(dimension, Dimension):
            raise TypeError(
                f"Search space of {owner}: {name!r} must be a "
                f"keras_optlab.search_space.Dimension. Received: {dimension!r}"
            )
        checked[name] = dimension
    return checked


def describe(space: SearchSpace, names: Sequence[str] | None = None) -> str:
    """`name: range` for each dimension, separated by semicolons."""
    keys = list(space) if names is None else list(names)
    return "; ".join(f"{name}: {space[name].describe()}" for name in keys)


__all__ = [
    "Dimension",
    "IntUniform",
    "LogUniform",
    "OneMinusLogUniform",
    "SearchSpace",
    "Uniform",
    "check_space",
    "defaults",
    "describe",
]
