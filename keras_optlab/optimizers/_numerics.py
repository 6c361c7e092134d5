"""Numeric pieces shared by several optimizers.

Scalar coefficients are computed in float32 from constants worked out in
float64 on the host. `1 - beta**t` is formed as `-expm1(t * log(beta))`:
computed naively in float32, `float32(0.999)` alone is off by 1.3e-5 in
`1 - beta`, and the subtraction loses more for small `t`.

A `beta` may also be a float32 scalar tensor or variable (the lab holds
tuned hyperparameters in variables, so that a new value needs no new
trace). The same expressions are then formed in the graph; they inherit
float32's representation of `beta` (the 1.3e-5 above), and nothing else.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def step_count(optimizer):
    """The 1-based index of the step being taken, as float32.

    Keras increments `iterations` after the update, so inside `update_step`
    the current step is `iterations + 1`.
    """
    return ops.cast(optimizer.iterations + 1, "float32")


def _on_host(value) -> bool:
    return isinstance(value, (int, float))


def one_minus_power(beta: float, step):
    """`1 - beta**step` in float32, accurate to a few ulps for beta in [0, 1)."""
    if not _on_host(beta):
        # log(0) = -inf gives expm1(-inf) = -1: 1 - 0**t = 1 for t >= 1.
        return ops.negative(ops.expm1(step * ops.log(ops.cast(beta, "float32"))))
    if beta == 0.0:
        return ops.ones_like(step)
    return ops.negative(ops.expm1(step * math.log(beta)))


def bias_corrections(beta_1: float, beta_2: float, step):
    """`(1 - beta_1**t, 1 - beta_2**t)` for the float32 step `t`."""
    return one_minus_power(beta_1, step), one_minus_power(beta_2, step)


def _one_minus_x_over_expm1(x):
    """`1 - x / (exp(x) - 1)` without cancellation for small x >= 0."""
    # Taylor series (Bernoulli numbers) below 0.5, where the next term is
    # under 3e-11; the closed form is well conditioned above.
    x2 = x * x
    series = x * 0.5 - x2 * (
        1.0 / 12.0 - x2 * (1.0 / 720.0 - x2 * (1.0 / 30240.0 - x2 / 1209600.0))
    )
    safe = ops.maximum(x, 0.5)
    closed = 1.0 - safe / ops.expm1(safe)
    return ops.where(x < 0.5, series, closed)


def radam_rho(beta_2: float, step):
    """RAdam's `(rho_inf, rho_t)`: a Python float and a float32 tensor.

    `rho_t = rho_inf - 2 t beta_2^t / (1 - beta_2^t)` subtracts two numbers
    near `2 / (1 - beta_2)` (about 2000 for the default beta_2), so it is
    rewritten with `L = -log(beta_2)` and `x = t L` as
    `(rho_inf - 2/L) + (2/L) (1 - x / expm1(x))`, whose pieces carry no
    cancellation in float32.
    """
    if not _on_host(beta_2):
        return _radam_rho_in_graph(ops.cast(beta_2, "float32"), step)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    if beta_2 == 0.0:
        return rho_inf, ops.full_like(step, rho_inf)
    log_beta = -math.log(beta_2)
    offset = rho_inf - 2.0 / log_beta
    rho_t = offset + (2.0 / log_beta) * _one_minus_x_over_expm1(step * log_beta)
    return rho_inf, rho_t


def _radam_rho_in_graph(beta_2, step):
    """`radam_rho` for a float32 tensor `beta_2` (`rho_inf` a tensor too)."""
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    # beta_2 = 0 (L = inf) has rho_t = rho_inf = 1; kept finite on that side.
    positive = ops.greater(beta_2, 0.0)
    log_beta = ops.negative(ops.log(ops.where(positive, beta_2, 0.5)))
    offset = rho_inf - 2.0 / log_beta
    rho_t = offset + (2.0 / log_beta) * _one_minus_x_over_expm1(step * log_beta)
    return rho_inf, ops.where(positive, rho_t, rho_inf)


def radam_rectifier(beta_2: float, step, threshold: float):
    """RAdam's `(rectified, r_t)` for the float32 step `t`: whether
    `rho_t >= threshold`, and the rectifier
    `sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))`,
    finite (and unused) below the threshold; 0 if `rho_inf <= 4`, where the
    rectified step never happens."""
    rho_inf, rho_t = radam_rho(beta_2, step)
    rectified = ops.greater_equal(rho_t, threshold)
    if _on_host(rho_inf) and rho_inf <= 4.0:
        return rectified, ops.zeros_like(rho_t)
    # Clamped so that the value not taken stays finite.
    rho_safe = ops.maximum(rho_t, 4.0)
    rho_inf_safe = rho_inf if _on_host(rho_inf) else ops.maximum(rho_inf, 5.0)
    rectifier = ops.sqrt(
        (rho_safe - 4.0) * (rho_safe - 2.0) * rho_inf_safe
        / ((rho_inf_safe - 4.0) * (rho_inf_safe - 2.0) * rho_safe)
    )
    if not _on_host(rho_inf):
        rectifier = ops.where(ops.greater(rho_inf, 4.0), rectifier, 0.0)
    return rectified, rectifier


def _matrix_shape(size: int) -> tuple[int, int] | None:
    """`(rows, columns)` with `rows * columns == size` and the columns as
    close to 1024 as a divisor allows (from 64 up), or `None`."""
    for columns in range(min(1024, size // 2), 63, -1):
        if size % columns == 0:
            return size // columns, columns
    return None


def sum_of_products(x, y):
    """`sum(x * y)` over all elements, in float32.

    XLA:CPU as built into TensorFlow (2.21) sums one element at a time: 20
    arrays of 500,000 floats took 19 ms to reduce where updating them took
    3.3 ms, and `dot(x, x)` about 12 ms. A matrix-vector product goes to a
    vectorised kernel: the products viewed as a (rows, columns) matrix times
    a vector of ones, then the short sum, took 4.9 ms with the update. That
    form is used on TensorFlow when the size has a divisor between 64 and
    1024; otherwise, for small arrays and on the other backends, the plain
    sum. JAX's XLA:CPU reduces fast, and there the matrix form made SWATS'
    Adam phase slower (2.0 against 1.8 times Keras' Adam).
    """
    products = ops.multiply(ops.cast(x, "float32"), ops.cast(y, "float32"))
    size = 1
    for dimension in products.shape:
        size *= int(dimension)
    shape = None
    if keras.backend.backend() == "tensorflow" and size >= 65536:
        shape = _matrix_shape(size)
    if shape is None:
        return ops.sum(products)
    matrix = ops.reshape(products, shape)
    return ops.sum(ops.matmul(matrix, ops.ones((shape[1], 1), "float32")))


def squared_norm(x):
    """`sum(x**2)` over all elements of `x`, in float32 (see
    `sum_of_products` for its form)."""
    return sum_of_products(x, x)


def update_moments(optimizer, momentum, velocity, gradient, beta_1, beta_2):
    """Adam's moving averages, in place: m += (1-b1)(g-m), v += (1-b2)(g^2-v)."""
    dtype = momentum.dtype
    optimizer.assign_add(
        momentum,
        ops.multiply(
            ops.subtract(gradient, momentum), ops.cast(1.0 - beta_1, dtype)
        ),
    )
    optimizer.assign_add(
        velocity,
        ops.multiply(
            ops.subtract(ops.square(gradient), velocity),
            ops.cast(1.0 - beta_2, dtype),
        ),
    )


def one_after(total):
    """Exactly 1 (NaN where `total` is NaN), computed from the scalar `total`.

    XLA gives each result array of a compiled update its own loop and
    writes a slot in place only where every loop that reads the slot's old
    value is known to run first; a reduction over the old slot and the
    slot's own loop, with no data between them, are not ordered, and XLA
    copies the slot at every step (on JAX into a fresh buffer: D-Adaptation
    Adam, with two such copies, ran at 1.8 times its memory traffic).
    Multiplying the slot's update by `one_after(reduction)` gives the order
    at the price of a scalar operand. `minimum(1, |t| + 1)` is 1 for every
    finite or infinite `t`, and XLA does not fold it away.
    """
    return ops.minimum(1.0, ops.abs(total) + 1.0)


def one_after_first(*arrays):
    """`one_after` of the arrays' first elements (summed in float32): an
    exact 1 that orders the loop it enters after the loops that write
    `arrays`. One element is enough to give XLA the order; a sum over a
    whole array would add a pass over it."""
    total = ops.cast(ops.reshape(arrays[0], (-1,))[0], "float32")
    for array in arrays[1:]:
        total = total + ops.cast(ops.reshape(array, (-1,))[0], "float32")
    return one_after(total)


def unmerged(x, scalar):
    """`x`, value for value, as an expression XLA does not merge with `x`.

    XLA computes an expression that two loops read once, into a full-size
    array stored at every step, when the expression holds a division or a
    root (it does not compute those twice), and it merges two identical
    expressions into one. Writing the second loop's copy from
    `unmerged(operand, scalar)` gives each loop its own computation with
    the same values: the operand is multiplied by `one_after(scalar)`, an
    exact 1 that XLA cannot fold. `scalar` is any scalar of the step (the
    learning rate); only where it is NaN does the result change (to NaN).
    Under XLA:CPU, subnormal elements become 0, as in any arithmetic there.
    """
    return ops.multiply(x, ops.cast(one_after(scalar), x.dtype))
