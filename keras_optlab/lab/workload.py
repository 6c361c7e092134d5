"""The workload a comparison or a tuning study trains: a model-building
function, training and validation data, a loss and the metric to watch.

A model is one of the lab's own (`"mlp"`, `"cnn"`), a `"package.module:function"`
text, or a callable; the function is called with no argument and returns an
uncompiled `keras.Model`. The current directory is searched first when
importing `package.module`, as `python -m` does.

Data is one of the lab's datasets (`"digits"`, `"mnist1d"`), a `.npz` file
with arrays `x_train`, `y_train`, `x_val`, `y_val`, a
`"package.module:function"` text whose function returns such data, or, from
Python, the data itself: a mapping with those four keys, or a pair
`(train, validation)` where each is an `(x, y)` pair of arrays or a
`tf.data.Dataset`, a PyTorch `DataLoader` or a `keras.utils.PyDataset`
yielding `(x, y)` batches, as Keras' `fit` takes them.

Loss and metric follow from the labels unless given: integer labels are
classes (sparse categorical cross-entropy, or binary cross-entropy when the
model has one output), float rows of zeros and a single one are one-hot
classes (categorical cross-entropy), both watched by validation accuracy;
any other float labels are a regression (mean squared error), watched by
validation loss. A classifier whose outputs are not probabilities (not in
[0, 1], or not summing to 1 over classes) gets its loss with
`from_logits=True`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import pathlib
import re
import sys
from typing import Any, Callable, Mapping

import numpy as np

from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.records import weights_fingerprint

ARRAY_KEYS = ("x_train", "y_train", "x_val", "y_val")
_OBJECT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_object_path(text: Any) -> bool:
    """Whether `text` has the form `package.module:function`."""
    return isinstance(text, str) and bool(_OBJECT_PATH.match(text))


def load_object(path: str, what: str) -> Any:
    """Imports `package.module` and returns its attribute `function` (dots
    allowed after the colon). `what` names the option in messages."""
    if not is_object_path(path):
        raise UsageError(
            f"Argument `{what}` must be package.module:function. Received: {what}={path!r}"
        )
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is the user's
        raise UsageError(f"Cannot import {module_name!r} for {what} {path!r}: {_one_line(error)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"Module {module_name!r} has no {attribute!r} (from {what} {path!r}).")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{what} {path!r} is not a function.")
    return target


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def minimised(metric: str) -> bool:
    """Whether a metric is better low (losses and errors) or high: the rule
    of the monitoring callbacks, `keras_optlab.callbacks._monitor`."""
    from keras_optlab.callbacks._monitor import is_minimised

    return is_minimised(metric)


@dataclasses.dataclass
class Workload:
    """Everything a run needs besides the candidate.

    Attributes:
        model_name: How the model was given, for reports.
        data_name: How the data was given, for reports.
        build_model: Returns a fresh, uncompiled `keras.Model`.
        train: `(x, y)` arrays, or a dataset object yielding batches.
        validation: As `train`.
        loss: Passed to `compile`.
        loss_name: The loss in words, for reports.
        metrics: Passed to `compile`.
        monitor: The log key watched: `val_accuracy`, `val_loss`, ...
        minimise: Whether `monitor` is better low.
        train_examples: Number of training examples (`None` for a loader).
        validation_examples: Number of validation examples, or `None`.
        data_sha256: Fingerprint of the arrays (`None` for a loader).
        num_batches: For a loader, its batches per epoch.
    """

    model_name: str
    data_name: str
    build_model: Callable[[], Any]
    train: Any
    validation: Any
    loss: Any
    loss_name: str
    metrics: list[Any]
    monitor: str
    minimise: bool
    train_examples: int | None
    validation_examples: int | None
    data_sha256: str | None
    num_batches: int | None = None

    @property
    def arrays(self) -> bool:
        """Whether the data are in-memory arrays (shuffled by the lab)."""
        return self.num_batches is None

    def steps_per_epoch(self, batch_size: int) -> int:
        if self.num_batches is not None:
            return self.num_batches
        return math.ceil(self.train_examples / batch_size)

    def fit_data(self, batch_size: int) -> dict[str, Any]:
        """Keyword arguments of `fit` for the data."""
        if self.arrays:
            x, y = self.train
            return dict(x=x, y=y, validation_data=self.validation, batch_size=batch_size, shuffle=True)
        return dict(x=self.train, validation_data=self.validation)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "data": self.data_name,
            "loss": self.loss_name,
            "monitor": self.monitor,
            "mode": "min" if self.minimise else "max",
            "train_examples": self.train_examples,
            "validation_examples": self.validation_examples,
            "data_sha256": self.data_sha256,
        }

    def template(self, seed: int) -> Any:
        """A model built after seeding Keras' global generator with `seed`
        (so its initial weights follow the seed), built if it was not."""
        import keras

        keras.utils.set_random_seed(seed)
        model = self.build_model()
        if not model.built or not model.weights:
            x = _sample(self.train)[0]
            model(x[:2])
        return model


def sample(work: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Up to 256 training examples `(x, y)` of `work`."""
    return _sample(work.train)


def _sample(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Up to 256 examples `(x, y)` of arrays or of the first batch."""
    if isinstance(data, tuple) and len(data) == 2 and not _is_loader(data[0]):
        x, y = data
        return np.asarray(x[:256]), np.asarray(y[:256])
    batch = _first_batch(data)
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise UsageError("A data loader must yield (x, y) batches.")
    return _to_numpy(batch[0]), _to_numpy(batch[1])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def _is_loader(value: Any) -> bool:
    kind = type(value)
    module = kind.__module__
    import keras

    return (
        isinstance(value, keras.utils.PyDataset)
        or (module.startswith("tensorflow") and hasattr(value, "element_spec"))
        or module.startswith("torch.utils.data")
    )


def _first_batch(data: Any) -> Any:
    import keras

    if isinstance(data, keras.utils.PyDataset):
        return data[0]
    return next(iter(data))


def _count_batches(data: Any) -> int:
    import keras

    if isinstance(data, keras.utils.PyDataset):
        return int(data.num_batches)
    if hasattr(data, "cardinality"):
        count = int(data.cardinality())
        if count >= 0:
            return count
        return sum(1 for _ in data)
    return len(data)


def _check_arrays(arrays: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise UsageError(
            f"Data {source} lacks {', '.join(missing)}; it needs arrays {', '.join(ARRAY_KEYS)}."
        )
    out = {}
    for key in ARRAY_KEYS:
        try:
            out[key] = np.asarray(arrays[key])
        except Exception as error:  # noqa: BLE001
            raise UsageError(f"Data {source}: {key} is not an array ({_one_line(error)}).") from None
        if out[key].dtype == object or out[key].ndim == 0:
            raise UsageError(f"Data {source}: {key} is not a numeric array.")
    for part in ("train", "val"):
        x, y = out[f"x_{part}"], out[f"y_{part}"]
        if len(x) != len(y) or len(x) == 0:
            raise UsageError(
                f"Data {source}: x_{part} and y_{part} must hold the same, non-zero number "
                f"of examples. Received: {len(x)} and {len(y)}."
            )
    if out["x_train"].shape[1:] != out["x_val"].shape[1:]:
        raise UsageError(
            f"Data {source}: x_train and x_val differ in shape per example: "
            f"{out['x_train'].shape[1:]} and {out['x_val'].shape[1:]}."
        )
    if np.issubdtype(out["x_train"].dtype, np.floating) and out["x_train"].dtype != np.float32:
        out["x_train"] = out["x_train"].astype("float32")
        out["x_val"] = out["x_val"].astype("float32")
    return out


def _load_npz(path: str) -> dict[str, np.ndarray]:
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"Cannot read data {path!r}: no such file.")
    try:
        with np.load(file, allow_pickle=False) as archive:
            return _check_arrays({key: archive[key] for key in archive.files}, repr(path))
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - not an npz, truncated, pickled
        raise UsageError(f"Cannot read data {path!r}: {_one_line(error)}.") from None


def _from_returned(value: Any, source: str):
    """Arrays (a dict) or `(train, validation)` data objects."""
    if isinstance(value, Mapping):
        return _check_arrays(value, source)
    if isinstance(value, (tuple, list)) and len(value) == 4 and not any(map(_is_loader, value)):
        return _check_arrays(dict(zip(ARRAY_KEYS, value)), source)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        train, validation = value
        if _is_loader(train) and _is_loader(validation):
            return (train, validation)
        if all(isinstance(v, (tuple, list)) and len(v) == 2 for v in value):
            return _check_arrays(
                dict(zip(ARRAY_KEYS, (*train, *validation))), source
            )
    raise UsageError(
        f"Data {source} must be a mapping with {', '.join(ARRAY_KEYS)}, "
        "or (train, validation) of (x, y) arrays or of data loaders."
    )


def _builtin_dataset(arrays: Mapping[str, np.ndarray], name: str):
    from keras_optlab.lab.data import Dataset

    x_train = arrays["x_train"]
    if not np.issubdtype(arrays["y_train"].dtype, np.integer) or x_train.ndim != 2:
        raise UsageError(
            "The lab's own models need flat features and integer class labels; "
            "for other data give --model package.module:function."
        )
    classes = int(max(arrays["y_train"].max(), arrays["y_val"].max())) + 1
    return Dataset(
        name, x_train, arrays["y_train"], arrays["x_val"], arrays["y_val"], classes,
        (x_train.shape[1], 1),
    )


def resolve_data(data: Any) -> tuple[Any, str]:
    """Data as a built-in `Dataset`, checked arrays (a dict) or a pair of
    loaders, with a name for reports."""
    from keras_optlab.lab import data as datasets

    if isinstance(data, datasets.Dataset):
        return data, data.name
    if isinstance(data, str):
        if data in datasets.DATASETS:
            return datasets.load_dataset(data), data
        if data.endswith(".npz"):
            return _load_npz(data), data
        if is_object_path(data):
            function = load_object(data, "--data")
            try:
                value = function()
            except Exception as error:  # noqa: BLE001
                raise UsageError(f"The data function {data!r} failed: {_one_line(error)}") from None
            return _from_returned(value, repr(data)), data
        raise UsageError(
            f"Unknown data {data!r}. Give {', '.join(datasets.DATASETS)}, a .npz file "
            "or package.module:function."
        )
    return _from_returned(data, "given"), type(data).__name__


def resolve_model(model: Any, dataset: Any) -> tuple[Callable[[], Any], str]:
    """A function that builds a fresh model, and a name for reports."""
    from keras_optlab.lab import models
    from keras_optlab.lab.data import Dataset

    if isinstance(model, str) and model in models.MODELS:
        if not isinstance(dataset, Dataset):
            if isinstance(dataset, dict):
                dataset = _builtin_dataset(dataset, "data")
            else:
                raise UsageError(
                    f"The lab's model {model!r} needs arrays; for data loaders give "
                    "--model package.module:function."
                )
        return (lambda: models.build_model(model, dataset)), model
    if isinstance(model, str) and is_object_path(model):
        return load_object(model, "--model"), model
    if isinstance(model, str):
        raise UsageError(
            f"Unknown model {model!r}. Give {', '.join(models.MODELS)} or package.module:function."
        )
    if callable(model):
        return model, getattr(model, "__qualname__", type(model).__name__)
    raise UsageError(f"Argument `model` must be a name, package.module:function or a callable. Received: {model!r}")


def _looks_like_probabilities(outputs: np.ndarray) -> bool:
    if outputs.size == 0 or np.any(outputs < 0) or np.any(outputs > 1):
        return False
    if outputs.ndim >= 2 and outputs.shape[-1] > 1:
        return bool(np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))
    return True


def infer_task(y: np.ndarray, outputs: np.ndarray) -> tuple[Any, str, list[Any], str]:
    """`(loss, loss name, metrics, monitor)` from labels and model outputs."""
    import keras

    losses = keras.losses
    logits = not _looks_like_probabilities(outputs)
    suffix = " (from logits)" if logits else ""
    width = outputs.shape[-1] if outputs.ndim >= 2 else 1
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        if width == 1:
            return (losses.BinaryCrossentropy(from_logits=logits),
                    "binary cross-entropy" + suffix, ["accuracy"], "val_accuracy")
        return (losses.SparseCategoricalCrossentropy(from_logits=logits),
                "sparse categorical cross-entropy" + suffix, ["accuracy"], "val_accuracy")
    if (
        y.ndim == 2 and y.shape[-1] > 1 and y.shape[-1] == width
        and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=-1) == 1)
    ):
        return (losses.CategoricalCrossentropy(from_logits=logits),
                "categorical cross-entropy" + suffix, ["accuracy"], "val_accuracy")
    return losses.MeanSquaredError(), "mean squared error", [], "val_loss"


def make_workload(
    model: Any = "mlp",
    data: Any = "digits",
    loss: Any = None,
    metric: Any = None,
    seed: int = 0,
) -> Workload:
    """Loads the data, builds the model once from `seed` and checks that
    the loss can be computed on a few examples.

    Args:
        model: See the module.
        data: See the module.
        loss: A Keras loss (name or object). Defaults to `None`: from the
            labels.
        metric: A Keras metric name (or object) to watch on the validation
            data, or `"loss"` for the validation loss. Defaults to `None`:
            from the labels.
        seed: Seed of the check build. Defaults to 0.

    Raises:
        UsageError: Data that cannot be read, a model that does not build
            or does not fit the data, an unknown loss or metric.
    """
    import keras

    dataset, data_name = resolve_data(data)
    build, model_name = resolve_model(model, dataset)
    if hasattr(dataset, "x_train"):
        arrays = {key: getattr(dataset, key) for key in ARRAY_KEYS}
    elif isinstance(dataset, dict):
        arrays = dataset
    else:
        arrays = None
    if arrays is not None:
        train, validation = (arrays["x_train"], arrays["y_train"]), (arrays["x_val"], arrays["y_val"])
        num_batches, sha = None, weights_fingerprint([arrays[k] for k in ARRAY_KEYS])
        counts = (len(arrays["x_train"]), len(arrays["x_val"]))
    else:
        train, validation = dataset
        num_batches, sha, counts = _count_batches(train), None, (None, None)
    x_sample, y_sample = _sample(train)
    try:
        keras.utils.set_random_seed(seed)
        network = build()
    except Exception as error:  # noqa: BLE001 - the user's function failed
        raise UsageError(f"The model {model_name!r} does not build: {_one_line(error)}") from None
    if not isinstance(network, keras.Model):
        raise UsageError(
            f"The model function {model_name!r} must return a keras.Model. "
            f"Received: {type(network).__name__}"
        )
    try:
        outputs = _to_numpy(keras.ops.convert_to_numpy(network(x_sample[:8])))
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"The model {model_name!r} does not accept the data: {_one_line(error)}") from None
    inferred_loss, loss_name, metrics, monitor = infer_task(y_sample, outputs)
    if loss is not None:
        try:
            inferred_loss = keras.losses.get(loss)
        except Exception as error:  # noqa: BLE001
            raise UsageError(f"Unknown loss {loss!r}: {_one_line(error)}") from None
        loss_name = loss if isinstance(loss, str) else type(loss).__name__
    if metric is not None:
        if metric == "loss":
            metrics, monitor = [], "val_loss"
        else:
            try:
                keras.metrics.get(metric)
            except Exception as error:  # noqa: BLE001
                raise UsageError(f"Unknown metric {metric!r}: {_one_line(error)}") from None
            metrics = [metric]
            monitor = "val_" + (metric if isinstance(metric, str) else metric.name)
    try:
        value = keras.ops.convert_to_numpy(
            inferred_loss(keras.ops.convert_to_tensor(y_sample[:8]), network(x_sample[:8]))
        )
        if not np.all(np.isfinite(value)):
            raise ValueError("the loss of the untrained model is not finite")
    except Exception as error:  # noqa: BLE001
        raise UsageError(
            f"The loss ({loss_name}) cannot be computed from the model {model_name!r} "
            f"and the labels: {_one_line(error)}"
        ) from None
    return Workload(
        model_name=model_name,
        data_name=data_name,
        build_model=build,
        train=train,
        validation=validation,
        loss=inferred_loss,
        loss_name=loss_name,
        metrics=metrics,
        monitor=monitor,
        minimise=minimised(monitor),
        train_examples=counts[0],
        validation_examples=counts[1],
        data_sha256=sha,
        num_batches=num_batches,
    )
