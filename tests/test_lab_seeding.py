"""The lab's seeding: Keras' own, without importing TensorFlow where
TensorFlow is neither the backend nor imported."""

import sys

import keras
import numpy as np

from conftest import BACKEND
from keras_optlab.lab import seeding


class _Recorder:
    """Stands in for Keras' lazy TensorFlow module and records its use."""

    available = True

    def __init__(self):
        self.seeds = []
        self.random = self

    def set_seed(self, seed):
        self.seeds.append(seed)


def draws():
    from keras.src.utils import rng_utils

    return (
        np.random.rand(3),
        keras.ops.convert_to_numpy(keras.random.uniform((3,))),
        rng_utils.get_random_seed(),
    )


def test_seeds_as_keras_does_and_tensorflow_only_where_it_is_in_use(monkeypatch):
    from keras.src.utils import rng_utils

    keras.utils.set_random_seed(5)
    expected = draws()
    recorder = _Recorder()
    monkeypatch.setattr(rng_utils, "tf", recorder)
    if BACKEND != "tensorflow":
        # As in a process that has not imported TensorFlow.
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    seeding.set_random_seed(5)
    got = draws()
    for value, wanted in zip(got, expected):
        np.testing.assert_array_equal(value, wanted)
    assert recorder.seeds == ([5] if BACKEND == "tensorflow" else [])
    # Keras' lazy module is put back.
    assert rng_utils.tf is recorder
