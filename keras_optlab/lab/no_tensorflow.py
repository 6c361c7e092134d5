"""Keras without a TensorFlow import where nothing uses TensorFlow.

Keras asks whether TensorFlow is installed in a few places that run on
every backend, and asking imports it: `keras.utils.set_random_seed` (to seed
TensorFlow's generator) and `keras.saving.serialize_keras_object` (to tell
a `tf.TensorShape` from other objects). On JAX and PyTorch that import is
all their cost (about 2.5 s of a 24 s `optlab tune` on 2 cores) and serves
nothing the lab runs: Keras shuffles arrays with NumPy on JAX and with
PyTorch's sampler on PyTorch; no TensorFlow object exists in a process that
has not imported TensorFlow, and a `tf.data` pipeline passed by the user
means it is imported already.

Within `unless_in_use()` Keras hears that TensorFlow is not installed,
exactly where TensorFlow is neither the backend nor imported; elsewhere,
and outside, Keras asks as it always does.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


def in_use() -> bool:
    """Whether TensorFlow is this process' backend or imported."""
    import keras

    return keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules


@contextlib.contextmanager
def unless_in_use() -> Iterator[None]:
    """Keras reads TensorFlow as not installed within, unless it is in use
    or Keras has already looked (see the module)."""
    from keras.src.utils import module_utils

    # The one lazy module that every part of Keras asks; its answer is
    # cached in `_available` (None: not asked yet).
    lazy = module_utils.tensorflow
    if in_use() or lazy._available is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`, which seeds Python's, NumPy's,
    Keras' and PyTorch's generators, and TensorFlow's where it is in use."""
    import keras

    with unless_in_use():
        keras.utils.set_random_seed(seed)
