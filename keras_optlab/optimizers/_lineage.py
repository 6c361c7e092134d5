r"""The lineage of first-order optimizers as one fused element-wise update.

SGD, momentum, Nesterov momentum, RMSprop and Adam differ in which moving
averages they keep and in how they combine them, not in the shape of the
arithmetic. Each of them is one update with per-step scalar coefficients,
on a first-moment slot $m$ and a second-moment slot $v$:

$$
\begin{aligned}
v &\leftarrow b_2\, v + c_2\,(g^2 - d_2\, v) \\
m &\leftarrow b_1\, m + c_1\,(g - d_1\, m) \,/\, \sqrt{a_m v + e_m} \\
\theta &\leftarrow \theta - \lambda\,\theta
    - (k_1\, m + k_2\, g) \,/\, (\sqrt{a\, v + e} + f)
\end{aligned}
$$

A method is a `Row` of these scalars, written so that each reproduces the
operations Keras' own optimizer performs (so that the fused update and
Keras' class agree to the rounding of the same operations):

| method | $b_1$ | $c_1$ | $d_1$ | $a_m, e_m$ | $b_2$ | $c_2$ | $d_2$ | $a, e, f$ | $k_1$ | $k_2$ |
|---|---|---|---|---|---|---|---|---|---|---|
| SGD | 1 | 0 | 0 | 0, 1 | 1 | 0 | 0 | 0, 1, 0 | 0 | $\eta$ |
| momentum | $\mu$ | $-\eta$ | 0 | 0, 1 | 1 | 0 | 0 | 0, 1, 0 | $-1$ | 0 |
| Nesterov | $\mu$ | $-\eta$ | 0 | 0, 1 | 1 | 0 | 0 | 0, 1, 0 | $-\mu$ | $\eta$ |
| RMSprop | 1 | 0 | 0 | 0, 1 | $\rho$ | $1-\rho$ | 0 | 1, $\epsilon$, 0 | 0 | $\eta$ |
| RMSprop, momentum | $\mu$ | $\eta$ | 0 | 1, $\epsilon$ | $\rho$ | $1-\rho$ | 0 | 0, 1, 0 | 1 | 0 |
| Adam | 1 | $1-\beta_1$ | 1 | 0, 1 | 1 | $1-\beta_2$ | 1 | 1, 0, $\epsilon$ | $\alpha_t$ | 0 |

with $\alpha_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)$ and $\lambda$ the
decoupled weight decay times the learning rate. Reading down the table is
the history of the methods: momentum adds a velocity to SGD, Nesterov looks
ahead along it, RMSprop divides by a running root mean square, and Adam is
momentum and RMSprop together with bias corrections.

A method that starts later (the second phase of a switch) starts from empty
slots, as a freshly built optimizer would: on its first step $b_1 = d_1 = 0$
(and $b_2 = d_2 = 0$ if it keeps $v$), so the slots it shares with the first
method are overwritten rather than read.

Switching methods is switching rows: `select` picks each coefficient with a
scalar `where`, so one kernel per variable reads and writes the same arrays
before and after a switch, and nothing branches. Coefficients that are the
same Python number in both rows stay Python numbers, and `update` leaves out
the terms they make trivial (no $v$ term for two SGD variants, no
$\sqrt{\cdot}$ when no row divides).

A row that keeps no $v$ (SGD and its momentum variants) marks it `v_idle`.
Where the selected row is idle, `update` neither reads nor writes $v$: a
select on the scalar keeps $v$ and puts 0 where $v$ would be read. Under XLA
a select on a scalar costs nothing where it keeps the old value, so after a
switch from Adam to SGD the step touches only what SGD touches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from keras_optlab.optimizers import _numerics

_FIELDS = (
    "b1", "c1", "d1", "am", "em", "b2", "c2", "d2", "a", "e", "f", "k1", "k2", "v_idle",
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One method's coefficients for one step.

    Each field is a Python float (known when the step is traced) or a scalar
    tensor. The defaults keep both slots as they are, divide by 1 and take
    no step.
    """

    b1: Any = 1.0
    c1: Any = 0.0
    d1: Any = 0.0
    am: Any = 0.0
    em: Any = 1.0
    b2: Any = 1.0
    c2: Any = 0.0
    d2: Any = 0.0
    a: Any = 0.0
    e: Any = 1.0
    f: Any = 0.0
    k1: Any = 0.0
    k2: Any = 0.0
    # Whether the method keeps no v (b2 = 1, c2 = d2 = a = am = 0): a
    # Python bool, or a scalar boolean tensor once rows are selected.
    v_idle: Any = False

    def restarted(self, fresh, slots: frozenset[str]) -> "Row":
        """This row, but reading `slots` as zeros where `fresh` is true."""
        changes = {}
        if "m" in slots:
            changes.update(b1=choose(fresh, 0.0, self.b1), d1=choose(fresh, 0.0, self.d1))
        if "v" in slots:
            changes.update(b2=choose(fresh, 0.0, self.b2), d2=choose(fresh, 0.0, self.d2))
        return dataclasses.replace(self, **changes)


def _is_number(value) -> bool:
    return isinstance(value, (int, float))


def choose(condition, when_true, when_false):
    """`ops.where` on scalars; a Python number when both sides are equal
    numbers, so that `update` can leave out the term."""
    if _is_number(when_true) and _is_number(when_false) and when_true == when_false:
        return when_true
    if isinstance(when_true, bool) and isinstance(when_false, bool):
        return condition if when_true else ops.logical_not(condition)
    # A variable (a hyperparameter held in one) as a tensor: JAX's `where`
    # does not take it.
    when_true, when_false = (
        ops.convert_to_tensor(v) if isinstance(v, keras.Variable) else v
        for v in (when_true, when_false)
    )
    return ops.where(condition, when_true, when_false)


def select(condition, when_true: Row, when_false: Row) -> Row:
    """`when_true` where the scalar `condition` holds, else `when_false`."""
    return Row(
        **{
            name: choose(condition, getattr(when_true, name), getattr(when_false, name))
            for name in _FIELDS
        }
    )


class StepCache:
    """Per-step values computed once and reused for every variable.

    `update_step` runs once per variable; the coefficients are the same for
    all of them (per dtype), and on PyTorch, which runs eagerly, computing
    them again for each variable costs a few dozen small operations. The
    key is the learning-rate tensor, which the base class computes anew at
    every step (and once per device under `tf.distribute`); the entry keeps
    that tensor alive, so an identical `id` means the same step. The owner
    calls `clear()` after each step.
    """

    def __init__(self) -> None:
        self._entries: dict = {}

    def get(self, learning_rate, dtype, compute):
        key = (id(learning_rate), str(dtype))
        entry = self._entries.get(key)
        if entry is None or entry[0] is not learning_rate:
            entry = (learning_rate, compute())
            self._entries[key] = entry
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()


# --- the methods ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Method:
    """A method the fused update can run, read off one optimizer.

    Attributes:
        optimizer: The optimizer it describes (its hyperparameters and step
            count are read every step).
        kind: `"sgd"`, `"rmsprop"`, `"adam"` (Keras' `Adam`/`AdamW`, whose
            coefficients are computed in the variable's dtype as Keras
            does) or `"adam_float32"` (keras_optlab's `AdaBound` without
            bounds, whose coefficients are float32 from `_numerics`).
        slots: The slots the method keeps: a subset of `{"m", "v"}`.
    """

    optimizer: keras.optimizers.Optimizer
    kind: str
    slots: frozenset[str]

    def row(self, learning_rate, dtype) -> Row:
        """The row for the method's next step, at `learning_rate`."""
        optimizer = self.optimizer
        rate = ops.cast(learning_rate, dtype)
        if self.kind == "sgd":
            momentum = float(optimizer.momentum)
            if momentum == 0.0:
                return Row(k2=rate, v_idle=True)
            return Row(
                b1=momentum, c1=-rate,
                k1=-momentum if optimizer.nesterov else -1.0,
                k2=rate if optimizer.nesterov else 0.0,
                v_idle=True,
            )
        if self.kind == "rmsprop":
            rho, epsilon = float(optimizer.rho), float(optimizer.epsilon)
            momentum = float(optimizer.momentum)
            if momentum == 0.0:
                return Row(b2=rho, c2=1.0 - rho, a=1.0, e=epsilon, k2=rate)
            return Row(
                b1=momentum, c1=rate, am=1.0, em=epsilon,
                b2=rho, c2=1.0 - rho, k1=1.0,
            )
        beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
        if self.kind == "adam":
            # Keras' Adam: powers and step size in the variable's dtype.
            step = ops.cast(optimizer.iterations + 1, dtype)
            power_1 = ops.power(ops.cast(beta_1, dtype), step)
            power_2 = ops.power(ops.cast(beta_2, dtype), step)
            alpha = rate * ops.sqrt(1 - power_2) / (1 - power_1)
        else:
            step = _numerics.step_count(optimizer)
            correction_1, correction_2 = _numerics.bias_corrections(beta_1, beta_2, step)
            alpha = ops.cast(
                ops.cast(learning_rate, "float32") * ops.sqrt(correction_2) / correction_1,
                dtype,
            )
        return Row(
            c1=1.0 - beta_1, d1=1.0, c2=1.0 - beta_2, d2=1.0,
            a=1.0, e=0.0, f=float(optimizer.epsilon), k1=alpha,
        )


def _overrides(optimizer, base, name: str) -> bool:
    return getattr(type(optimizer), name) is not getattr(base, name)


def describe(optimizer: keras.optimizers.Optimizer) -> Method | None:
    """The `Method` that reproduces `optimizer`'s update, or `None`.

    Covered: Keras' `SGD` (plain, momentum, Nesterov), `RMSprop` (not
    centered, with or without momentum), `Adam` and `AdamW` without
    `amsgrad`, and keras_optlab's `AdaBound` with `final_lr=None` and no
    `amsbound` (Adam with float32 coefficients). A subclass that overrides
    `update_step`, and an optimizer with `global_clipnorm` (which needs
    every gradient before any variable moves), are not covered.
    """
    from keras_optlab.optimizers.adabound import AdaBound

    if optimizer.global_clipnorm:
        return None
    optimizers = keras.optimizers
    if isinstance(optimizer, optimizers.SGD):
        if _overrides(optimizer, optimizers.SGD, "update_step"):
            return None
        slots = {"m"} if optimizer.momentum else set()
        return Method(optimizer, "sgd", frozenset(slots))
    if isinstance(optimizer, optimizers.RMSprop):
        if optimizer.centered or _overrides(optimizer, optimizers.RMSprop, "update_step"):
            return None
        slots = {"m", "v"} if optimizer.momentum else {"v"}
        return Method(optimizer, "rmsprop", frozenset(slots))
    if isinstance(optimizer, optimizers.Adam):
        if optimizer.amsgrad or _overrides(optimizer, optimizers.Adam, "update_step"):
            return None
        return Method(optimizer, "adam", frozenset({"m", "v"}))
    if isinstance(optimizer, AdaBound):
        if (
            optimizer.final_lr is not None
            or optimizer.amsbound
            or _overrides(optimizer, AdaBound, "update_step")
        ):
            return None
        return Method(optimizer, "adam_float32", frozenset({"m", "v"}))
    return None


# --- the update -------------------------------------------------------------


def _scale(coefficient, tensor, dtype):
    """`coefficient * tensor`, leaving out multiplications by 0 and 1."""
    if _is_number(coefficient):
        if coefficient == 0.0:
            return None
        if coefficient == 1.0:
            return tensor
    return ops.multiply(ops.cast(coefficient, dtype), tensor)


def _plus(x, y):
    if x is None:
        return y
    if y is None:
        return x
    return ops.add(x, y)


def _moment(slot, source, b, c, d, dtype, root=None):
    """`b * slot + c * (source - d * slot) / root`, trivial terms left out."""
    inner = source
    decayed = _scale(d, slot, dtype)
    if decayed is not None:
        inner = ops.subtract(source, decayed)
    increment = _scale(c, inner, dtype)
    if increment is not None and root is not None:
        increment = ops.divide(increment, root)
    return _plus(_scale(b, slot, dtype), increment)


def _root(v, a, e, dtype):
    """`sqrt(a * v + e)`, or `None` where that is 1 in every row (always so
    when no row keeps `v`)."""
    if _is_number(a) and a == 0.0 and _is_number(e) and e == 1.0:
        return None
    offset = None if _is_number(e) and e == 0.0 else ops.cast(e, dtype)
    return ops.sqrt(_plus(_scale(a, v, dtype), offset))


def moments(row: Row, m, v, gradient):
    """The new `(m, v)` (`None` for a slot no row keeps), and the `v` the
    rest of the step reads: the new one, or 0 where the selected row is
    idle (`Row.v_idle`), which leaves `v` as it was."""
    dtype = gradient.dtype
    read = None
    if v is not None:
        computed = _moment(v, ops.square(gradient), row.b2, row.c2, row.d2, dtype)
        if _is_number(row.v_idle):
            v = read = computed
        else:
            v = ops.where(row.v_idle, v, computed)
            # Read from the selected value, so that only the loop writing v
            # reads the old one (else XLA copies a donated v).
            read = ops.where(row.v_idle, ops.zeros((), dtype), v)
    if m is not None:
        m = _moment(
            m, gradient, row.b1, row.c1, row.d1, dtype, _root(read, row.am, row.em, dtype)
        )
    return m, v, read


def step(row: Row, m, v, gradient, guard_zero: bool = False):
    """`(k1 m + k2 g) / (sqrt(a v + e) + f)` from the new slots, or `None`
    where every row's step is 0.

    `guard_zero` divides by 1 where the denominator is 0 (for `epsilon=0`,
    where 0/0 would turn a zero step into NaN).
    """
    dtype = gradient.dtype
    numerator = _plus(
        None if m is None else _scale(row.k1, m, dtype), _scale(row.k2, gradient, dtype)
    )
    if numerator is None:
        return None
    denominator = _root(v, row.a, row.e, dtype)
    if not (_is_number(row.f) and row.f == 0.0):
        denominator = _plus(denominator, ops.cast(row.f, dtype))
    if denominator is None:
        return numerator
    if guard_zero:
        denominator = ops.where(ops.equal(denominator, 0), 1, denominator)
    return ops.divide(numerator, denominator)


def update(row: Row, theta, m, v, gradient, decay=None, guard_zero=False):
    """One fused step: the new `(theta, m, v)`.

    Args:
        row: This step's coefficients (usually from `select`).
        theta: The variable's value.
        m, v: The slots' values, or `None` where no row keeps that slot.
        gradient: The gradient, in the variable's dtype.
        decay: $\lambda$, this step's weight-decay factor, or `None`.
        guard_zero: See `step`.
    """
    dtype = theta.dtype
    m, v, read = moments(row, m, v, gradient)
    if decay is not None:
        theta = ops.subtract(theta, ops.multiply(theta, ops.cast(decay, dtype)))
    taken = step(row, m, read, gradient, guard_zero)
    if taken is not None:
        theta = ops.subtract(theta, taken)
    return theta, m, v


def sums_when(condition, compute, count: int):
    """`compute()` (a tuple of `count` float32 scalars) where the scalar
    `condition` holds, else zeros.

    The sums some methods need over all elements (SWATS' projections, the
    estimated rate of a switch) are wasted in the phase that does not use
    them, and XLA on CPU runs each as a pass of its own over the arrays.
    Behind a value-returning conditional that only reads, the other phase
    skips them; `compute` recomputes what it needs from its arguments
    rather than sharing tensors with the update, which XLA would otherwise
    keep whole in memory for both consumers. On PyTorch, which runs eagerly,
    the sums are taken unconditionally (a branch there would read the
    condition back from the device).
    """
    if keras.backend.backend() == "torch":
        return compute()
    return ops.cond(
        condition, compute, lambda: tuple(ops.zeros((), "float32") for _ in range(count))
    )
