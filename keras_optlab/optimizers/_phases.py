"""Running one of two stateful branches inside a compiled step.

Two forms. `select_updates` runs both branches as data flow and keeps one
result with element-wise selects on the scalar predicate: under XLA a loop
whose select keeps the old value, in place, does no work, so each step
costs about what the taken branch costs, with no conditional. It needs the
branches to read their own variables through the selected values, which
its scope arranges. `cond_with_updates` is the conditional:

A value-returning `ops.cond` runs only the branch it takes (XLA conditional,
`jax.lax.cond`, a Python `if` in eager PyTorch), so an optimizer that holds
two methods pays for one per step. TensorFlow and PyTorch accept branches that
assign variables. JAX does not (the assignment leaks a tracer out of the
branch): there each branch runs in its own `keras.StatelessScope`, returns the
new values of the variables it may touch, and the assignment happens outside
the cond. Both branches then return values for the same list of variables.
"""

from __future__ import annotations

import contextlib
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


class _SelectingScope(keras.StatelessScope):
    """A stateless scope whose writes to `owned` variables are kept only
    where `take` holds: `where(take, new, old)` is stored at once, so that
    later reads in the branch see the selected value (which is the value
    the step writes). Writes to other variables are stored as they are."""

    def __init__(self, take, owned_ids, original, state_mapping):
        super().__init__(state_mapping=state_mapping)
        self._take = take
        self._owned_ids = owned_ids
        self._original = original

    def add_update(self, update):
        variable, value = update
        key = id(variable)
        if key in self._owned_ids:
            value = ops.where(self._take, value, self._original[key])
        self.state_mapping[key] = value


def select_updates(
    predicate,
    true_fn: Callable[[], None],
    false_fn: Callable[[], None],
    true_owned: Sequence[keras.Variable],
    false_owned: Sequence[keras.Variable],
    shared: Sequence[keras.Variable],
) -> None:
    """Both functions as data flow; what the step keeps is `true_fn`'s where
    `predicate` holds, else `false_fn`'s.

    Args:
        predicate: A scalar boolean tensor.
        true_fn, false_fn: Functions of no argument that change variables
            through `assign`, `assign_add` or `assign_sub` and return nothing.
        true_owned, false_owned: The variables only `true_fn` (resp.
            `false_fn`) writes, such as an optimizer's slots and step count.
            A write is selected at once, so that a later read in the same
            branch reads the old value in the other phase. Reading the
            selected value, not the branch's own, keeps every buffer read by
            one loop only, so XLA updates donated buffers in place without
            copying them.
        shared: The variables both may write or read (the trained weights):
            each branch starts from their current value, and the two
            results meet in one select at the end.
    """
    owned = [list(true_owned), list(false_owned)]
    shared = list(shared)
    everything = owned[0] + owned[1] + shared
    # Read in the enclosing context (the traced train state on JAX).
    original = {id(variable): variable.value for variable in everything}
    mapping = [(variable, original[id(variable)]) for variable in everything]
    results = []
    for function, take, own in (
        (true_fn, predicate, owned[0]),
        (false_fn, ops.logical_not(predicate), owned[1]),
    ):
        with _SelectingScope(take, {id(v) for v in own}, original, mapping) as scope:
            function()
        results.append(scope)
    for variables, scope in ((owned[0], results[0]), (owned[1], results[1])):
        for variable in variables:
            value = scope.get_current_value(variable)
            if value is not original[id(variable)]:
                variable.assign(value)
    for variable in shared:
        key = id(variable)
        values = [scope.get_current_value(variable) for scope in results]
        if values[0] is original[key] and values[1] is original[key]:
            continue
        variable.assign(ops.where(predicate, values[0], values[1]))


def _plain_assign(variable, value):
    variable.assign(value)


def _plain_assign_add(variable, value):
    variable.assign_add(value)


def _plain_assign_sub(variable, value):
    variable.assign_sub(value)


@contextlib.contextmanager
def plain_assignments(optimizer):
    """Within, `optimizer.assign`, `assign_add` and `assign_sub` call the
    Keras variable's own method, which a stateless scope records, and
    `optimizer._get_variable_index` finds a Keras variable by identity.

    Keras' TensorFlow optimizers write the `tf.Variable` under a Keras
    variable directly, past any scope (as Keras' base class does not), and
    find a variable's slots through that `tf.Variable`, which a stateless
    scope hides. Instance attributes, set and removed past the trackers'
    `__setattr__`.
    """
    indices = {id(variable): i for i, variable in enumerate(optimizer._trainable_variables)}
    replaced = {
        "assign": _plain_assign,
        "assign_add": _plain_assign_add,
        "assign_sub": _plain_assign_sub,
        "_get_variable_index": lambda variable: indices[id(variable)],
    }
    for name, function in replaced.items():
        object.__setattr__(optimizer, name, function)
    try:
        yield
    finally:
        for name in replaced:
            object.__delattr__(optimizer, name)
