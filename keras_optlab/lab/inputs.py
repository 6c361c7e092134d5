"""The user's own model and data, as `compare` and `tune` take them.

A model is one of the lab's own (`"mlp"`, `"cnn"`), a `"package.module:function"`
text, or a callable; the function is called with no argument and returns an
uncompiled `keras.Model`. The current directory is searched first when
importing `package.module`, as `python -m` does.

Data is one of the lab's datasets (`"digits"`, `"mnist1d"`), a `.npz` file
with arrays `x_train`, `y_train`, `x_val`, `y_val` and optionally `x_test`,
`y_test`, a `"package.module:function"` text whose function returns such
data, or, from Python, the data itself: a mapping with those keys, or
`(train, validation)` or `(train, validation, test)` where each is an
`(x, y)` pair of arrays or a `tf.data.Dataset`, a PyTorch `DataLoader` or a
`keras.utils.PyDataset` yielding `(x, y)` batches, as Keras' `fit` takes
them. Test data is optional: without it, reports give validation numbers
only.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import sys
from typing import Any, Callable, Mapping

import numpy as np

from keras_optlab.lab.errors import UsageError

ARRAY_KEYS = ("x_train", "y_train", "x_val", "y_val")
TEST_KEYS = ("x_test", "y_test")
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
        raise UsageError(f"Cannot import {module_name!r} for {what} {path!r}: {one_line(error)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"Module {module_name!r} has no {attribute!r} (from {what} {path!r}).")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{what} {path!r} is not a function.")
    return target


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def sample_of(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Up to 256 examples `(x, y)` of arrays or of the first batch."""
    if isinstance(data, tuple) and len(data) == 2 and not _is_loader(data[0]):
        x, y = data
        return np.asarray(x[:256]), np.asarray(y[:256])
    batch = _first_batch(data)
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise UsageError("A data loader must yield (x, y) batches.")
    return to_numpy(batch[0]), to_numpy(batch[1])


def to_numpy(value: Any) -> np.ndarray:
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


def count_batches(data: Any) -> int:
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
    """The arrays of `ARRAY_KEYS`, and of `TEST_KEYS` where both are given,
    checked; floating features as float32."""
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise UsageError(
            f"Data {source} lacks {', '.join(missing)}; it needs arrays {', '.join(ARRAY_KEYS)}."
        )
    given_test = [key for key in TEST_KEYS if key in arrays]
    if len(given_test) == 1:
        raise UsageError(
            f"Data {source} has {given_test[0]} without "
            f"{next(k for k in TEST_KEYS if k not in given_test)}; test data needs both."
        )
    keys = ARRAY_KEYS + (TEST_KEYS if given_test else ())
    out = {}
    for key in keys:
        try:
            out[key] = np.asarray(arrays[key])
        except Exception as error:  # noqa: BLE001
            raise UsageError(f"Data {source}: {key} is not an array ({one_line(error)}).") from None
        if out[key].dtype == object or out[key].ndim == 0:
            raise UsageError(f"Data {source}: {key} is not a numeric array.")
    parts = ("train", "val", "test") if given_test else ("train", "val")
    for part in parts:
        x, y = out[f"x_{part}"], out[f"y_{part}"]
        if len(x) != len(y) or len(x) == 0:
            raise UsageError(
                f"Data {source}: x_{part} and y_{part} must hold the same, non-zero number "
                f"of examples. Received: {len(x)} and {len(y)}."
            )
    for part in parts[1:]:
        if out["x_train"].shape[1:] != out[f"x_{part}"].shape[1:]:
            raise UsageError(
                f"Data {source}: x_train and x_{part} differ in shape per example: "
                f"{out['x_train'].shape[1:]} and {out[f'x_{part}'].shape[1:]}."
            )
    if np.issubdtype(out["x_train"].dtype, np.floating) and out["x_train"].dtype != np.float32:
        for part in parts:
            out[f"x_{part}"] = out[f"x_{part}"].astype("float32")
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
        raise UsageError(f"Cannot read data {path!r}: {one_line(error)}.") from None


def _from_returned(value: Any, source: str):
    """Arrays (a dict), or `(train, validation)` or `(train, validation,
    test)` data objects."""
    if isinstance(value, Mapping):
        return _check_arrays(value, source)
    if isinstance(value, (tuple, list)) and len(value) in (4, 6) and not any(map(_is_loader, value)):
        return _check_arrays(dict(zip(ARRAY_KEYS + TEST_KEYS, value)), source)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        if all(map(_is_loader, value)):
            return tuple(value)
        if all(isinstance(v, (tuple, list)) and len(v) == 2 for v in value):
            return _check_arrays(
                dict(zip(ARRAY_KEYS + TEST_KEYS, [a for pair in value for a in pair])), source
            )
    raise UsageError(
        f"Data {source} must be a mapping with {', '.join(ARRAY_KEYS)} (and optionally "
        f"{', '.join(TEST_KEYS)}), or (train, validation) or (train, validation, test) "
        "of (x, y) arrays or of data loaders."
    )


def _builtin_dataset(arrays: Mapping[str, np.ndarray], name: str):
    from keras_optlab.lab.data import Dataset

    x_train = arrays["x_train"]
    if not np.issubdtype(arrays["y_train"].dtype, np.integer) or x_train.ndim != 2:
        raise UsageError(
            "The lab's own models need flat features and integer class labels; "
            "for other data give --model package.module:function."
        )
    labels = [arrays[key] for key in ("y_train", "y_val", "y_test") if key in arrays]
    classes = int(max(y.max() for y in labels)) + 1
    return Dataset(
        name, x_train, arrays["y_train"], arrays["x_val"], arrays["y_val"], classes,
        (x_train.shape[1], 1), arrays.get("x_test"), arrays.get("y_test"),
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
                raise UsageError(f"The data function {data!r} failed: {one_line(error)}") from None
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
