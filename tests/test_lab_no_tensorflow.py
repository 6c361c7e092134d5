"""Keras without a TensorFlow import where TensorFlow is neither the
backend nor imported: the lab seeds and reads configs as Keras does."""

import sys

import keras
import numpy as np

from conftest import BACKEND
from keras_optlab.lab import live, no_tensorflow


def draws():
    from keras.src.utils import rng_utils

    return (
        np.random.rand(3),
        keras.ops.convert_to_numpy(keras.random.uniform((3,))),
        rng_utils.get_random_seed(),
    )


def as_in_a_process_without_tensorflow(monkeypatch):
    """Keras' lazy TensorFlow module as it is before anything asked for it,
    and, except on TensorFlow, no TensorFlow imported."""
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    monkeypatch.setattr(lazy, "_available", None)
    if BACKEND != "tensorflow":
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    return lazy


def test_keras_hears_tensorflow_absent_only_where_it_is_not_in_use(monkeypatch):
    lazy = as_in_a_process_without_tensorflow(monkeypatch)
    with no_tensorflow.unless_in_use():
        inside = lazy._available
    if BACKEND == "tensorflow":
        assert inside is None  # not touched: Keras asks as always
    else:
        assert inside is False
    # Keras asks again afterwards, as it would have.
    assert lazy._available is None


def test_seeds_as_keras_does(monkeypatch):
    keras.utils.set_random_seed(5)
    expected = draws()
    keras.utils.set_random_seed(6)
    as_in_a_process_without_tensorflow(monkeypatch)
    no_tensorflow.set_random_seed(5)
    for value, wanted in zip(draws(), expected):
        np.testing.assert_array_equal(value, wanted)


def test_an_optimizer_config_reads_as_keras_serializes_it(monkeypatch):
    from keras_optlab.optimizers import RAdam
    from keras_optlab.schedules import StepDecay

    optimizer = RAdam(StepDecay(0.01, 2, 0.5), beta_1=0.8)
    as_in_a_process_without_tensorflow(monkeypatch)
    leaves = live.config_of(optimizer)
    assert 0.8 in leaves.values() and 0.01 in leaves.values()
    assert leaves == live._leaves(keras.saving.serialize_keras_object(optimizer))
