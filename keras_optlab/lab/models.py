"""Small models for the lab's datasets.

- `mlp`: one hidden layer of 64 ReLU units, softmax output.
- `cnn`: two convolutions (16 and 32 filters of width 3, ReLU, the first
  followed by max pooling), global average pooling, softmax output; 2-D on
  signals shaped like images (digits, 8x8), 1-D on sequences (MNIST-1D).
"""

from __future__ import annotations

from typing import Any

from keras_optlab.lab.data import Dataset
from keras_optlab.lab.errors import UsageError

MODELS = ("mlp", "cnn")


def check_model_name(name: str) -> str:
    """Returns `name` if it is one of `MODELS`; `UsageError` listing them if not."""
    if name not in MODELS:
        raise UsageError(
            f"Unknown model name {name!r}. Known names: {', '.join(MODELS)}."
        )
    return name


def build_model(name: str, dataset: Dataset, seed: int | None = None) -> Any:
    """Builds a fresh, uncompiled model for `dataset`.

    Args:
        name: `"mlp"` or `"cnn"`.
        dataset: The data it will train on; gives the input size, the signal
            shape and the number of classes.
        seed: Seeds Keras' global generator before the weights are drawn,
            if given. Defaults to `None` (use the generator as it is).

    Returns:
        A `keras.Model` from flat float32 rows to class probabilities.
    """
    import keras

    check_model_name(name)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((dataset.num_features,))
    if name == "mlp":
        hidden = layers.Dense(64, activation="relu")(inputs)
    else:
        shape = dataset.signal_shape
        hidden = layers.Reshape(shape)(inputs)
        if len(shape) == 3:
            conv, pool, average = layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D
        else:
            conv, pool, average = layers.Conv1D, layers.MaxPooling1D, layers.GlobalAveragePooling1D
        hidden = conv(16, 3, padding="same", activation="relu")(hidden)
        hidden = pool(2)(hidden)
        hidden = conv(32, 3, padding="same", activation="relu")(hidden)
        hidden = average()(hidden)
    outputs = layers.Dense(dataset.num_classes, activation="softmax")(hidden)
    return keras.Model(inputs, outputs, name=f"{dataset.name}_{name}")
