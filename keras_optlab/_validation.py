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


def check_name(name: str, value: Any) -> str:
    """Returns `value` if it is a non-empty string (a schedule's `name`)."""
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"Argument `{name}` must be a non-empty string. Received: {name}={value!r}"
        )
    return value


def renamed_arguments(owner: str, given: dict, renames: dict) -> dict:
    """Old keyword spellings of `owner`'s arguments, under their new names.

    `given` holds the keywords `owner` did not recognise; each old name in
    `renames` (old name -> new name) is returned under its new name with a
    `DeprecationWarning` naming the new one. Any other keyword is a
    `TypeError`, as Python raises for an unexpected keyword.
    """
    import warnings

    unknown = sorted(set(given) - set(renames))
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    found = {}
    for old, value in given.items():
        new = renames[old]
        warnings.warn(
            f"{owner}: argument `{old}` is deprecated; use `{new}` (the name "
            f"Keras' own schedules use). Received: {old}={value!r}",
            DeprecationWarning,
            stacklevel=3,
        )
        found[new] = value
    return found


def _is_positive_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer() and value >= 1


def _is_rate_in_unit_interval(value: Any) -> bool:
    return _is_number(value) and 0 < value <= 1


def swapped_decay_order(owner: str, decay_steps: Any, decay_rate: Any) -> tuple[Any, Any]:
    """`(decay_steps, decay_rate)`, put back in order if they were given in
    the former order `(decay_rate, decay_steps)`.

    Keras' schedules take `decay_steps` before `decay_rate`; keras_optlab's
    decays once took them the other way round. A pair that is invalid as
    given but valid swapped (`decay_steps=0.5, decay_rate=100`) can only be
    the former order: it is swapped with a `DeprecationWarning`.
    """
    import warnings

    valid = _is_positive_integer(decay_steps) and _is_rate_in_unit_interval(decay_rate)
    valid_swapped = _is_positive_integer(decay_rate) and _is_rate_in_unit_interval(decay_steps)
    if valid or not valid_swapped:
        return decay_steps, decay_rate
    warnings.warn(
        f"{owner}: received decay_steps={decay_steps!r}, decay_rate={decay_rate!r}, "
        "read as the former positional order (decay_rate, decay_steps). Pass "
        f"decay_steps={decay_rate!r}, decay_rate={decay_steps!r} in Keras' order "
        "(initial_learning_rate, decay_steps, decay_rate) or by keyword.",
        DeprecationWarning,
        stacklevel=3,
    )
    return decay_rate, decay_steps
