"""Running one of two stateful branches inside a compiled step.

A value-returning `ops.cond` runs only the branch it takes (XLA conditional,
`jax.lax.cond`, a Python `if` in eager PyTorch), so an optimizer that holds
two methods pays for one per step. TensorFlow and PyTorch accept branches that
assign variables. JAX does not (the assignment leaks a tracer out of the
branch): there each branch runs in its own `keras.StatelessScope`, returns the
new values of the variables it may touch, and the assignment happens outside
the cond. Both branches then return values for the same list of variables.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops


def cond_with_updates(
    predicate,
    true_fn: Callable[[], None],
    false_fn: Callable[[], None],
    touched: Sequence[keras.Variable],
) -> None:
    """Runs `true_fn` if `predicate` else `false_fn`; both only assign.

    Args:
        predicate: A scalar boolean tensor.
        true_fn, false_fn: Functions of no argument that change variables
            through `assign`, `assign_add` or `assign_sub` and return nothing.
        touched: Every variable either function reads or writes. On JAX the
            branches see only these; a variable left out would be read as a
            constant frozen into the compiled step.
    """
    if keras.backend.backend() != "jax":
        ops.cond(predicate, true_fn, false_fn)
        return

    touched = list(touched)
    # Read in the enclosing context: inside the train step these are the
    # traced values of the train state, not the variables' stale buffers.
    current = [variable.value for variable in touched]

    def stateless(function):
        def branch():
            mapping = list(zip(touched, current))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                function()
            return [scope.get_current_value(variable) for variable in touched]

        return branch

    new_values = ops.cond(predicate, stateless(true_fn), stateless(false_fn))
    for variable, value in zip(touched, new_values):
        variable.assign(value)
