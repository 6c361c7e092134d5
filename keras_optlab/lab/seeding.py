"""One seed for every generator a run draws from, without importing
TensorFlow into a process that does not use it.

`keras.utils.set_random_seed` seeds Python's and NumPy's generators,
Keras' own global seed generator, PyTorch's on that backend, and
TensorFlow's wherever TensorFlow is installed, importing it if it is not
imported yet. On JAX and PyTorch that import is all its cost (about 2.5 s
of a 24 s `optlab tune` on 2 cores) and seeds nothing the run uses: Keras
shuffles arrays with NumPy on JAX and with PyTorch's sampler on PyTorch, and
a `tf.data` pipeline passed by the user means TensorFlow is imported
already. `set_random_seed` here is Keras' own function, with TensorFlow's
generator seeded exactly where TensorFlow is the backend or imported.
"""

from __future__ import annotations

import sys


class _NotInstalled:
    """Stands in for Keras' lazy TensorFlow module: reports it absent."""

    available = False


def tensorflow_in_use() -> bool:
    """Whether TensorFlow's generator can matter to this process."""
    import keras

    return keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`, leaving TensorFlow unimported
    where it is neither the backend nor imported (see the module)."""
    import keras

    if tensorflow_in_use():
        keras.utils.set_random_seed(seed)
        return
    from keras.src.utils import rng_utils

    lazy = rng_utils.tf
    rng_utils.tf = _NotInstalled()
    try:
        keras.utils.set_random_seed(seed)
    finally:
        rng_utils.tf = lazy
