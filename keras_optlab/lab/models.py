"""Models for the lab's datasets: `logistic`, `mlp`, `cnn` and `gru`.

On MNIST-1D every name builds the architecture that the dataset's paper
benchmarks (Greydanus, "Scaling Down Deep Learning", 2020, arXiv:2011.14439;
the `LinearBase`, `MLPBase`, `ConvBase` and `GRUBase` models of its
repository), so that a comparison there runs on the published reference
workloads:

| name | MNIST-1D (the paper's model) | parameters |
|---|---|---|
| `logistic` | one dense softmax layer on the 40 values | 410 |
| `mlp` | dense 100 ReLU, then a residual dense 100 ReLU (`h + relu(W h + b)`), dense softmax | 15,210 |
| `cnn` | three 1-D convolutions of 25 channels (widths 5, 3, 3; stride 2; one zero of padding on each side; ReLU), flattened (5 positions x 25 channels), dense softmax | 5,210 |
| `gru` | bidirectional GRU of 6 units per direction over the 40 values, every step's output flattened (40 x 12), dense softmax | 5,134 |

On digits (8x8 images), `mlp` and `cnn` are the lab's small models, kept as
they were so that the default comparison does not change:

- `mlp`: one hidden layer of 64 ReLU units, softmax output.
- `cnn`: two 2-D convolutions (16 and 32 filters of 3x3, ReLU, the first
  followed by 2x2 max pooling), global average pooling, softmax output.
- `logistic` and `gru` are the paper's models applied to the image: the
  GRU reads it as a sequence of 8 rows of 8 pixels.

Weights start from Keras' default initializers (Glorot-uniform kernels,
orthogonal recurrent kernels, zero biases), not PyTorch's, which the paper's
code used; the parameter counts are the same.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from keras_optlab.lab import no_tensorflow
from keras_optlab.lab.data import Dataset
from keras_optlab.lab.errors import UsageError

MODELS = ("logistic", "mlp", "cnn", "gru")

# The paper's architectures (its repository's notebooks/models.py defaults).
PAPER_MLP_UNITS = 100
PAPER_CNN_CHANNELS = 25
# (kernel width, stride, zeros of padding on each side) of each convolution.
PAPER_CNN_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))
PAPER_GRU_UNITS = 6

# The lab's small digits models.
DIGITS_MLP_UNITS = 64
DIGITS_CNN_FILTERS = (16, 32)


def check_model_name(name: str) -> str:
    """Returns `name` if it is one of `MODELS`; `UsageError` listing them if not."""
    if name not in MODELS:
        raise UsageError(
            f"Unknown model name {name!r}. Known names: {', '.join(MODELS)}."
        )
    return name


def build_model(name: str, dataset: Dataset, seed: int | None = None) -> Any:
    """Builds a fresh, uncompiled model for `dataset`.

    Which architecture a name builds depends on the dataset: on MNIST-1D,
    the ones the MNIST-1D paper benchmarks (Greydanus, "Scaling Down Deep
    Learning", 2020, arXiv:2011.14439; tabled in this module's docstring
    and in the "Compare optimizers" guide); on digits, the lab's small
    `mlp` and `cnn`, and the paper's `logistic` and `gru` applied to the
    image; on any other data (a user's arrays), the MNIST-1D ones, reading
    each row as a 1-D signal.

    Args:
        name: `"logistic"`, `"mlp"`, `"cnn"` or `"gru"`.
        dataset: The data it will train on; gives its name (which selects
            the architecture), the input size, the signal shape and the
            number of classes.
        seed: Seeds Keras' global generator before the weights are drawn,
            if given. Defaults to `None` (use the generator as it is).

    Returns:
        A `keras.Model` from flat float32 rows to class probabilities.

    Raises:
        UsageError: If `name` is not one of `MODELS`.
    """
    import keras

    check_model_name(name)
    if seed is not None:
        no_tensorflow.set_random_seed(seed)
    # Other data (a user's arrays) is read as a 1-D signal, as MNIST-1D is.
    builders = _ARCHITECTURES.get(dataset.name, _PAPER)
    inputs = keras.Input((dataset.num_features,))
    features = builders[name](keras.layers, inputs, dataset)
    outputs = keras.layers.Dense(dataset.num_classes, activation="softmax")(features)
    return keras.Model(inputs, outputs, name=f"{dataset.name}_{name}")


# Each builder maps the flat inputs to the features that the softmax layer
# reads.


def _logistic(layers, inputs, dataset: Dataset):
    return inputs


def _paper_mlp(layers, inputs, dataset: Dataset):
    hidden = layers.Dense(PAPER_MLP_UNITS, activation="relu")(inputs)
    return layers.Add()([hidden, layers.Dense(PAPER_MLP_UNITS, activation="relu")(hidden)])


def _paper_cnn(layers, inputs, dataset: Dataset):
    # PyTorch pads both sides by one; Keras' "same" would pad 1 and 2 for a
    # width of 5 at stride 2 and change the output lengths (40 -> 19 -> 10
    # -> 5 here), so the zeros are added explicitly.
    hidden = layers.Reshape((math.prod(dataset.signal_shape[:-1]), dataset.signal_shape[-1]))(inputs)
    for width, stride, padding in PAPER_CNN_LAYERS:
        hidden = layers.ZeroPadding1D(padding)(hidden)
        hidden = layers.Conv1D(PAPER_CNN_CHANNELS, width, strides=stride, activation="relu")(hidden)
    return layers.Flatten()(hidden)


def _gru(layers, inputs, dataset: Dataset):
    # A sequence along the signal's first axis: 40 steps of one value on
    # MNIST-1D, 8 rows of 8 pixels on digits. `reset_after=True` (Keras'
    # default) is the formulation PyTorch's GRU uses, two bias vectors
    # included.
    shape = dataset.signal_shape
    sequence = layers.Reshape((shape[0], math.prod(shape[1:])))(inputs)
    outputs = layers.Bidirectional(
        layers.GRU(PAPER_GRU_UNITS, return_sequences=True)
    )(sequence)
    return layers.Flatten()(outputs)


def _digits_mlp(layers, inputs, dataset: Dataset):
    return layers.Dense(DIGITS_MLP_UNITS, activation="relu")(inputs)


def _digits_cnn(layers, inputs, dataset: Dataset):
    hidden = layers.Reshape(dataset.signal_shape)(inputs)
    hidden = layers.Conv2D(DIGITS_CNN_FILTERS[0], 3, padding="same", activation="relu")(hidden)
    hidden = layers.MaxPooling2D(2)(hidden)
    hidden = layers.Conv2D(DIGITS_CNN_FILTERS[1], 3, padding="same", activation="relu")(hidden)
    return layers.GlobalAveragePooling2D()(hidden)


_Builder = Callable[[Any, Any, Dataset], Any]
_PAPER: dict[str, _Builder] = {
    "logistic": _logistic, "mlp": _paper_mlp, "cnn": _paper_cnn, "gru": _gru,
}
_DIGITS: dict[str, _Builder] = {
    "logistic": _logistic, "mlp": _digits_mlp, "cnn": _digits_cnn, "gru": _gru,
}
_ARCHITECTURES = {"digits": _DIGITS, "mnist1d": _PAPER}
