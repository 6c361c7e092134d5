"""`_numerics.unmerged`: the same values as its operand, also compiled, so
that an update written twice with it (once per loop) computes the same
numbers in both places."""

import numpy as np
import pytest

from conftest import BACKEND


def compiled(function):
    """`function` as the backend compiles an optimizer's step: XLA on
    TensorFlow and JAX, eagerly on PyTorch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(jit_compile=True)(function)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function


def as_numpy(values):
    import keras

    return [keras.ops.convert_to_numpy(v) for v in values]


# Normal, the smallest normal, huge, negative, zero and infinite elements.
# (XLA:CPU flushes subnormal numbers to zero in any arithmetic, this
# multiplication included, as it does in the expression being repeated.)
VALUES = np.array(
    [1.5, -2.25e-3, np.finfo(np.float32).tiny, 3e38, -7.0, 0.0, -0.0, np.inf, -np.inf],
    np.float32,
)


@pytest.mark.parametrize("scalar", [0.0, 2.5e-3, -4.0, 1e-30, 3e38, np.inf])
def test_values_are_the_operands_bit_for_bit(scalar):
    from keras import ops

    from keras_optlab.optimizers import _numerics

    function = compiled(lambda x, s: [_numerics.unmerged(x, s)])
    (actual,) = as_numpy(function(ops.convert_to_tensor(VALUES), ops.convert_to_tensor(
        np.float32(scalar))))
    assert actual.dtype == np.float32
    assert np.array_equal(actual.view(np.uint32), VALUES.view(np.uint32))


def test_a_nan_scalar_gives_nan():
    from keras import ops

    from keras_optlab.optimizers import _numerics

    function = compiled(lambda x, s: [_numerics.unmerged(x, s)])
    (actual,) = as_numpy(function(ops.convert_to_tensor(VALUES), ops.convert_to_tensor(
        np.float32(np.nan))))
    assert np.isnan(actual).all()


def test_a_step_written_twice_gives_the_same_numbers_in_both_places():
    # Schedule-free AdamW's normalised step, once plainly and once from
    # `unmerged(v)`, compiled together as in the optimizer's update.
    from keras import ops

    from keras_optlab.optimizers import _numerics

    def both(gradient, velocity, correction, rate):
        return [
            gradient / (ops.sqrt(velocity / correction) + 1e-8),
            gradient / (ops.sqrt(_numerics.unmerged(velocity, rate) / correction) + 1e-8),
        ]

    rng = np.random.default_rng(0)
    gradient = rng.normal(size=4096).astype(np.float32)
    velocity = (rng.random(4096) * 1e-3).astype(np.float32)
    velocity[:3] = [0.0, 1e-40, 3e38]
    first, second = as_numpy(compiled(both)(
        ops.convert_to_tensor(gradient), ops.convert_to_tensor(velocity),
        ops.convert_to_tensor(np.float32(0.0951)), ops.convert_to_tensor(np.float32(2.5e-3)),
    ))
    assert np.array_equal(first.view(np.uint32), second.view(np.uint32))
