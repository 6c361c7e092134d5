"""Hyperparameters held in variables, so that a compiled train step serves
every value.

A compiled step bakes every Python number it reads into its trace: the
next value would need a new trace. The lab therefore builds a candidate's
optimizer (and its schedule) with the run's values, then replaces each
number that a tuned hyperparameter feeds by a `LiveValue`, a float32
scalar `keras.Variable` tracked by the optimizer (so JAX carries it in the
train state instead of freezing it). The step reads it like any variable;
between runs the lab assigns the next value.

Which numbers to replace is found, not declared: the candidate is built a
second time with every tuned hyperparameter moved, and the leaves of the
two `get_config()` trees that differ are the numbers the hyperparameters
feed. Each is replaced on the object that holds it under the same name
(Keras' convention: a config key is a constructor argument and an
attribute); an optimizer's float learning rate is already a variable and is
assigned directly.

Code may still read a `LiveValue` as a Python number: `float(v)`,
`v != 0`, `numpy.asarray(v)`, or any use while the optimizer builds its
slots (an initial accumulator value). Such a read is baked into what was
built or traced, so each one is recorded with its result; a later value
that would change a recorded result is not accepted (`Bindings.accepts`)
and the caller compiles again. Comparisons record their
outcome only (`momentum != 0` stays true from 0.5 to 0.99), other reads the
value itself.
"""

from __future__ import annotations

import contextlib
import math
import operator
from typing import Any, Callable, Iterator, Mapping

import keras
import numpy as np

from keras_optlab.lab import no_tensorflow

# While true (the optimizer building its slots), every read of a LiveValue
# is a host read: what it yields is stored in the slots' initial values.
_BUILDING = [False]


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Reads of any `LiveValue` inside count as baked (see the module)."""
    _BUILDING[0] = True
    try:
        yield
    finally:
        _BUILDING[0] = False


def _compare(name: str) -> Callable[[Any, Any], Any]:
    op = getattr(operator, name)
    base = getattr(keras.Variable, f"__{name}__")

    def method(self, other):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            result = op(self.host_value, other)
            self._record(lambda value: op(value, other), result)
            return result
        if name in ("eq", "ne") and isinstance(other, keras.Variable):
            return (self is other) == (name == "eq")
        return base(self, other)

    return method


class LiveValue(keras.Variable):
    """A float32 scalar variable standing for a hyperparameter (see the
    module). `host_value` is the Python float last assigned through
    `set`; `host_reads` the recorded Python-side uses."""

    def __init__(self, value: float, name: str) -> None:
        super().__init__(float(value), dtype="float32", trainable=False, name=name)
        self.host_value = float(value)
        self.host_reads: list[tuple[Callable[[float], Any], Any]] = []

    def _record(self, function: Callable[[float], Any], result: Any) -> None:
        self.host_reads.append((function, result))

    def _baked(self) -> float:
        self._record(lambda value: value, self.host_value)
        return self.host_value

    def accepts(self, value: float) -> bool:
        """Whether every recorded host read gives the same with `value`."""
        return all(_same(function(value), result) for function, result in self.host_reads)

    def set(self, value: float) -> None:
        self.host_value = float(value)
        self.assign(float(value))

    @property
    def value(self):
        if _BUILDING[0]:
            self._baked()
        return super().value

    def __float__(self) -> float:
        return self._baked()

    def __int__(self) -> int:
        return int(self._baked())

    def __index__(self) -> int:
        return operator.index(self._baked())

    def __bool__(self) -> bool:
        result = bool(self.host_value)
        self._record(bool, result)
        return result

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._baked(), dtype=dtype)

    def numpy(self):
        return np.asarray(self._baked())

    __eq__ = _compare("eq")
    __ne__ = _compare("ne")
    __lt__ = _compare("lt")
    __le__ = _compare("le")
    __gt__ = _compare("gt")
    __ge__ = _compare("ge")
    __hash__ = object.__hash__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


# --- where the numbers live --------------------------------------------

_NESTED = ("inner_optimizer", "first", "second", "optimizer")


def _is_serialized(value: Any) -> bool:
    return isinstance(value, dict) and "class_name" in value and "config" in value


def _child(owner: Any, key: str) -> Any:
    """The object a nested config entry `key` of `owner` describes."""
    if key == "learning_rate" and isinstance(owner, keras.optimizers.Optimizer):
        return owner._learning_rate
    return getattr(owner, key, None)


def _leaves(config: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """Path -> value of every entry of a (nested) config."""
    if _is_serialized(config):
        return _leaves(config["config"], prefix)
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            out.update(_leaves(value, prefix + (key,)))
        return out
    return {prefix: config}


def config_of(optimizer: Any) -> dict[tuple, Any]:
    """The leaves of `optimizer`'s config, nested objects included."""
    with no_tensorflow.unless_in_use():
        return _leaves(keras.saving.serialize_keras_object(optimizer))


def varying(candidate: Any, values: Mapping[str, Any], steps: int, epochs: int) -> set[tuple]:
    """Config paths of `candidate`'s optimizer that its tuned
    hyperparameters feed: those that differ from `values`' build when every
    hyperparameter is moved to another value of its range."""
    space = candidate.search_space()
    moved = {}
    for name, dimension in space.items():
        value = values.get(name, dimension.default)
        moved[name] = dimension.high if value != dimension.high else dimension.low
    first, _ = candidate.build(values, steps, epochs)
    second, _ = candidate.build(moved, steps, epochs)
    a, b = config_of(first), config_of(second)
    return {path for path in set(a) | set(b) if not _same(a.get(path), b.get(path))}


def _owner(root: Any, path: tuple) -> tuple[Any, str] | None:
    """The object holding the leaf at `path`, and its attribute name."""
    owner = root
    for key in path[:-1]:
        owner = _child(owner, key)
        if owner is None:
            return None
    return owner, path[-1]


class Bindings:
    """The `LiveValue`s of one built candidate, and how to set them.

    Args:
        optimizer: The optimizer to bind, not yet built.
        varying: Config paths (see `config_of`) whose values the tuned
            hyperparameters change.
    """

    def __init__(self, optimizer: Any, varying: set[tuple]) -> None:
        self.optimizer = optimizer
        self.config = config_of(optimizer)
        # path -> ("learning_rate", variable) or ("live", LiveValue)
        self.bound: dict[tuple, tuple[str, Any]] = {}
        for path in sorted(varying, key=str):
            value = self.config.get(path)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            found = _owner(optimizer, path)
            if found is None:
                continue
            owner, name = found
            if name == "learning_rate" and isinstance(owner, keras.optimizers.Optimizer):
                rate = owner._learning_rate
                if isinstance(rate, keras.Variable):
                    self.bound[path] = ("learning_rate", rate)
                    # Copies of the rate as constructed (AdaBound's eta_0).
                    for copy in getattr(owner, "learning_rate_copies", ()):
                        live = LiveValue(getattr(owner, copy), name=f"live{copy}")
                        setattr(owner, copy, live)
                        self.bound[path + (copy,)] = ("copy", live)
                continue
            current = getattr(owner, name, None)
            if isinstance(current, bool) or not isinstance(current, (int, float)) or current != value:
                continue
            live = LiveValue(value, name=f"live_{name}")
            # An optimizer tracks a variable set as its attribute; one on a
            # schedule is tracked by the optimizer, so that JAX carries it in
            # the train state instead of freezing its value into the step.
            setattr(owner, name, live)
            if not isinstance(owner, keras.optimizers.Optimizer):
                optimizer._track_variable(live)
            self.bound[path] = ("live", live)

    @property
    def live_values(self) -> list[LiveValue]:
        return [v for kind, v in self.bound.values() if kind != "learning_rate"]

    @property
    def variables(self) -> list[Any]:
        """Every variable a run's values are assigned to."""
        return [v for _, v in self.bound.values()]

    def accepts(self, config: dict[tuple, Any]) -> bool:
        """Whether a run whose own build has the leaves `config` can run
        here: whatever is not bound is as built (names aside), and no bound
        value changes a recorded host read."""
        for path in set(self.config) | set(config):
            if path in self.bound or path[-1] == "name":
                continue
            if not _same(self.config.get(path), config.get(path)):
                return False
        return all(
            variable.accepts(self._value(config, path, kind))
            for path, (kind, variable) in self.bound.items()
            if kind != "learning_rate"
        )

    def assign(self, config: dict[tuple, Any]) -> None:
        """Sets every bound value from `config` (which `accepts`)."""
        for path, (kind, variable) in self.bound.items():
            value = self._value(config, path, kind)
            if kind == "learning_rate":
                variable.assign(value)
            else:
                variable.set(value)

    @staticmethod
    def _value(config: dict[tuple, Any], path: tuple, kind: str) -> float:
        # A copy of the learning rate follows the rate's own leaf.
        return float(config[path[:-1] if kind == "copy" else path])
