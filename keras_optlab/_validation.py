"""Argument checks shared by every constructor in the package.

Each check raises with one message shape::

    Argument `beta_2` must be in [0, 1). Received: beta_2=1.5

`bool` is never accepted as a number, and ints are accepted where floats are.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import keras


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return np.issubdtype(type(value), np.number)
    except ImportError:  # pragma: no cover - numpy ships with keras
        pass
    return isinstance(value, (int, float))


def _interval(low, high, low_open, high_open) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{left}{low_text}, {high_text}{right}"


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns `value` as a float if it is a finite number in the interval."""
    interval = _interval(low, high, low_open, high_open)
    if not _is_number(value):
        raise TypeError(
            f"Argument `{name}` must be a number in {interval}. "
            f"Received: {name}={value!r}"
        )
    value = float(value)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(
            f"Argument `{name}` must be in {interval}. Received: {name}={value!r}"
        )
    return value


def check_int(
    name: str, value: Any, *, low: int | None = None, high: int | None = None
) -> int:
    """Returns `value` as an int if it is an integer in [low, high]."""
    interval = _interval(low, high, False, False)
    is_integer = _is_number(value) and float(value).is_integer()
    if not is_integer:
        raise TypeError(
            f"Argument `{name}` must be an integer in {interval}. "
            f"Received: {name}={value!r}"
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(
            f"Argument `{name}` must be in {interval}. Received: {name}={value!r}"
        )
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(
            f"Argument `{name}` must be True or False. Received: {name}={value!r}"
        )
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"Argument `{name}` must be one of {allowed}. Received: {name}={value!r}"
        )
    return value


def check_learning_rate(value: Any, name: str = "learning_rate") -> Any:
    """Accepts a schedule, a callable or a number >= 0 (ints become floats)."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if callable(value) and not _is_number(value):
        return value
    if not _is_number(value):
        raise TypeError(
            f"Argument `{name}` must be a float >= 0, a "
            "keras.optimizers.schedules.LearningRateSchedule or a callable. "
            f"Received: {name}={value!r}"
        )
    return check_float(name, value, low=0.0)
