"""What `compare` and `tune` share: the checks of their common arguments,
one record of the settings a report states, and the per-candidate
overrides of the learning rate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from keras_optlab.lab import candidates as parser
from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The checked arguments that say how every run trains.

    Attributes:
        epochs: Epochs per run.
        batch_size: Examples per step, or `"full"` (compare only).
        seed: The first seed (compare) or the tuning seed (tune).
        jit_compile: Passed to `compile`.
        steps_per_execution: Steps per compiled call.
        verbose: 0 silent; above 0 progress lines.
        say: Prints one progress line.
    """

    epochs: int
    batch_size: int | str
    seed: int
    jit_compile: bool | str
    steps_per_execution: int
    verbose: int
    say: Callable[[str], None]


def check_run_settings(
    *,
    epochs: Any,
    batch_size: Any,
    seed: Any,
    jit_compile: Any,
    steps_per_execution: Any,
    verbose: Any,
    log: Callable[[str], None] | None,
    full_batch: bool = False,
) -> RunSettings:
    """Checks the arguments every run shares; `full_batch` allows
    `batch_size="full"`.

    Raises:
        UsageError: Naming the argument, its allowed range and the value.
    """
    from keras_optlab import _validation
    from keras_optlab.lab.engine import steps_per_execution as check_steps

    if not (full_batch and batch_size == "full"):
        batch_size = _validation.check_int("batch_size", batch_size, low=1)
    if jit_compile != "auto":
        _validation.check_bool("jit_compile", jit_compile)
    return RunSettings(
        epochs=_validation.check_int("epochs", epochs, low=1),
        batch_size=batch_size,
        seed=_validation.check_int("seed", seed, low=0),
        jit_compile=jit_compile,
        steps_per_execution=check_steps(steps_per_execution),
        verbose=_validation.check_int("verbose", verbose, low=0, high=2),
        say=log or (lambda line: print(line, flush=True)),
    )


def per_candidate(
    values: Mapping[str, Any] | None,
    chosen: Sequence[Candidate],
    what: str,
    check: Callable[[str, Any], Any],
) -> dict[str, Any]:
    """`{candidate name: check(name, value)}` for an override given per
    candidate (a rate for `compare`, a range for `tune`); a name that is not
    among `chosen` is refused."""
    out = {}
    names = {c.name for c in chosen}
    for name, value in dict(values or {}).items():
        key = parser.parse_candidate(name).name
        if key not in names:
            raise UsageError(f"A {what} is given for {name!r}, which is not among the candidates.")
        out[key] = check(name, value)
    return out


def check_rate(name: str, rate: Any) -> float:
    """A learning rate given for candidate `name`: a float > 0."""
    from keras_optlab import _validation

    return _validation.check_float(f"learning_rate[{name}]", rate, low=0.0, low_open=True)


def check_range(name: str, pair: Any) -> tuple[float, float]:
    """A learning-rate range given for candidate `name`: 0 < LOW < HIGH."""
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise UsageError(
            f"The learning-rate range of {name!r} must be two numbers LOW,HIGH. Received: {pair!r}"
        ) from None
    if not (0 < low < high and math.isfinite(high)):
        raise UsageError(
            f"The learning-rate range of {name!r} must satisfy 0 < LOW < HIGH. "
            f"Received: {low:g},{high:g}"
        )
    return low, high


def describe(work: Any, settings: RunSettings, batch_size: int | None, engine: Any) -> dict[str, Any]:
    """The settings a report states, shared by `compare` and `tune`:
    workload, epochs, batch size, backend, compilation and what the engine
    compiled."""
    import keras

    return {
        **work.describe(),
        "epochs": settings.epochs,
        "batch_size": batch_size,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "jit_compile": settings.jit_compile,
        "steps_per_execution": engine.steps_per_execution,
        "compiled": engine.counts(),
    }
