"""Pieces shared by the optimizers that estimate a step size d from sums
over all variables (`Prodigy`, `DAdaptAdam`).

Their state is float32 whatever the variables' dtype: it holds quantities
scaled by d and d**2, which start at 1e-6 and 1e-12 times the gradient and
lie below float16's range. Hyperparameters may be Python floats or float32
tensors or variables (see `keras_optlab.lab.live`); they are read through
`ops` in the step, never as Python numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics


def check_growth_rate(value: Any) -> float:
    """`growth_rate` as a float in [1, inf]; inf (the default of both
    references) means no cap."""
    message = f"Argument `growth_rate` must be in [1, inf]. Received: growth_rate={value!r}"
    if not _validation._is_number(value):
        raise TypeError(message.replace("must be in", "must be a number in"))
    value = float(value)
    if math.isnan(value) or value < 1.0:
        raise ValueError(message)
    return value


def float32(value):
    """A hyperparameter as float32: Python numbers stay on the host (their
    arithmetic is then float64), tensors and variables are cast."""
    if isinstance(value, (int, float)):
        return float(value)
    return ops.cast(value, "float32")


def one_minus_sqrt(beta):
    """`1 - sqrt(beta)`, written `(1 - beta) / (1 + sqrt(beta))` for a
    tensor: in float32 the plain difference loses 1e-4 relative at
    beta = 0.999."""
    if isinstance(beta, (int, float)):
        return 1.0 - math.sqrt(beta)
    beta = ops.cast(beta, "float32")
    return (1.0 - beta) / (1.0 + ops.sqrt(beta))


def current(first, initial, variable):
    """`initial` on the first step taken, else the variable's value: the
    value d0 gives is read in the step, so a d0 held in a variable is
    followed after a reset."""
    return ops.where(first, initial, ops.convert_to_tensor(variable))


def kept_unless(condition, new, variable):
    """`new` where `condition` holds, else the variable's current value."""
    return ops.where(condition, new, ops.convert_to_tensor(variable))


def l1_norm(x):
    """`sum(|x|)` in float32 (see `_numerics.sum_of_products` for its form)."""
    return _numerics.sum_of_products(ops.abs(x), 1.0)


def bias_correction(beta_1, beta_2, step):
    """Adam's `sqrt(1 - beta_2**t) / (1 - beta_1**t)` for the float32 `t`."""
    correction_1, correction_2 = _numerics.bias_corrections(beta_1, beta_2, step)
    return ops.sqrt(correction_2) / correction_1


def float32_slots(optimizer, var_list, name: str) -> list:
    """One float32 slot per variable (`None` for a variable overwritten with
    its gradient, as Keras does), named as `add_variable_from_reference`
    names them and, on TensorFlow, placed with the variable."""
    slots = []
    for variable in var_list:
        if getattr(variable, "overwrite_with_gradient", False):
            slots.append(None)
        elif keras.backend.standardize_dtype(variable.dtype) == "float32":
            slots.append(optimizer.add_variable_from_reference(variable, name))
        else:
            slots.append(_float32_slot(optimizer, variable, name))
    return slots


def _float32_slot(optimizer, variable, name: str):
    path = str(getattr(variable, "path", variable.name)).replace("/", "_").replace(":", "_")

    def create():
        return optimizer.add_variable(
            shape=variable.shape,
            dtype="float32",
            name=f"{path}_{name}",
            layout=getattr(variable, "_layout", None),
        )

    if keras.backend.backend() != "tensorflow":
        return create()
    with optimizer._distribution_strategy.extended.colocate_vars_with(variable.value):
        return create()


def for_each_variable(optimizer, variables, function: Callable, *args) -> None:
    """Calls `function(variable, *args)` for each variable, as Keras calls
    `update_step`: under `tf.distribute`, once per device copy, in the
    strategy's update context (as Keras applies weight decay), so that what
    `function` reads and writes are that device's copies."""
    if keras.backend.backend() != "tensorflow":
        for variable in variables:
            function(variable, *args)
        return
    import tensorflow as tf

    values = [v.value if isinstance(v, keras.Variable) else v for v in variables]

    def distributed(distribution, values, *args):
        for value in values:
            distribution.extended.update(value, function, args=args, group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(
        distributed, optimizer._distribution_strategy, values, *args
    )
