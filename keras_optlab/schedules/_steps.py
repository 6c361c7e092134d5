"""Numeric pieces shared by the schedules: step conversion, interpolation
and the selection of one piece of a piecewise schedule.

Everything here uses `keras.ops` only and no Python branching on tensors, so
a schedule built from it can be called inside a compiled train step (XLA,
`jax.jit`) with the optimizer's integer iteration variable.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from keras import ops

# Schedules compute in float32, as Keras' own do for a float learning rate.
DTYPE = "float32"


def as_float_step(step):
    """The step as a float32 tensor (the optimizer passes an integer one)."""
    return ops.cast(ops.convert_to_tensor(step), DTYPE)


def power_of_constant(base: float, exponent):
    """`base ** exponent` for a Python float `base > 0` and a tensor exponent.

    Computed as `exp(exponent * log(base))` with the logarithm taken in
    float64: the float32 rounding of `base` itself (0.999 is stored as
    0.99900001) would otherwise be raised to the power of the step, an
    error of 4e-6 after 128 steps. The exponent is clamped so that
    `|exponent * log(base)| <= 80`: `exp` then neither overflows nor turns
    into NaN (exp(-80) is below any useful rate; exp(80) is finite in
    float32). A `base` that is a float32 scalar tensor or variable (the lab
    holds tuned values in variables) takes its logarithm in the graph.
    """
    if not isinstance(base, (int, float)):
        log_base = ops.log(ops.cast(base, DTYPE))
        limit = 80.0 / ops.maximum(ops.abs(log_base), 1e-30)
        return ops.exp(ops.clip(exponent, -limit, limit) * log_base)
    log_base = math.log(base)
    if log_base == 0.0:
        return ops.ones_like(exponent)
    limit = 80.0 / abs(log_base)
    return ops.exp(ops.clip(exponent, -limit, limit) * log_base)


def interpolate(start, end, fraction, shape: str):
    """Goes from `start` at `fraction=0` to `end` at `fraction=1`.

    `shape="linear"`: `start + (end - start) * fraction`;
    `shape="cosine"`: `end + (start - end) * (1 + cos(pi * fraction)) / 2`;
    `shape="exponential"`: `start * (end / start) ** fraction` (geometric,
    `start > 0`). `fraction` is clipped to [0, 1] first, so nothing overflows
    whatever the step.
    """
    fraction = ops.clip(fraction, 0.0, 1.0)
    if shape == "linear":
        return start + (end - start) * fraction
    if shape == "cosine":
        return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * fraction))
    if shape == "exponential":
        return start * ops.power(end / start, fraction)
    raise ValueError(f"Unknown interpolation shape {shape!r}.")  # pragma: no cover


def select_piece(
    step,
    pieces: Sequence[Callable],
    boundaries: Sequence[float],
):
    """The value of a piecewise schedule at `step` (a float32 tensor).

    Piece `i` is used for `boundaries[i-1] <= step < boundaries[i]` and is
    called with the step counted from the start of its piece,
    `step - boundaries[i-1]`, as `optax.join_schedules` does. Every piece is
    evaluated (at a step clamped to >= 0, so no piece ever sees a negative
    step) and the right one is selected with `ops.where`: a traced step
    needs no Python branch and no `cond`.
    """
    result = pieces[0](ops.maximum(step, 0.0))
    for boundary, piece in zip(boundaries, pieces[1:]):
        local = ops.maximum(step - float(boundary), 0.0)
        value = ops.cast(piece(local), DTYPE)
        result = ops.where(step >= float(boundary), value, ops.cast(result, DTYPE))
    return result
