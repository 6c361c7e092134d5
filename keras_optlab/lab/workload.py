"""The workload a comparison or a tuning study trains: a model-building
function, training and validation data, a loss and the metric to watch.

The model and the data are the user's (`keras_optlab.lab.inputs` says what
forms they may take). Loss and metric follow from the labels unless given:
integer labels are classes (sparse categorical cross-entropy, or binary
cross-entropy when the model has one output), float rows of zeros and a
single one are one-hot classes (categorical cross-entropy), both watched by
validation accuracy; any other float labels are a regression (mean squared
error), watched by validation loss. A classifier whose outputs are not
probabilities (not in [0, 1], or not summing to 1 over classes) gets its
loss with `from_logits=True`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from keras_optlab.lab import no_tensorflow
from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.inputs import (
    ARRAY_KEYS,
    TEST_KEYS,
    count_batches,
    one_line,
    resolve_data,
    resolve_model,
    sample_of,
    to_numpy,
)
from keras_optlab.lab.records import weights_fingerprint


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
        data_sha256: Fingerprint of the training and validation arrays
            (`None` for a loader).
        num_batches: For a loader, its batches per epoch.
        test: As `validation`, or `None`: data that only the evaluation
            runs are scored on, after training; no trial and no choice
            sees it.
        test_examples: Number of test examples, or `None`.
        test_sha256: Fingerprint of the test arrays, or `None`.
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
    test: Any = None
    test_examples: int | None = None
    test_sha256: str | None = None

    @property
    def arrays(self) -> bool:
        """Whether the data are in-memory arrays (shuffled by the lab)."""
        return self.num_batches is None

    def steps_per_epoch(self, batch_size: int) -> int:
        if self.num_batches is not None:
            return self.num_batches
        return math.ceil(self.train_examples / batch_size)

    @property
    def batch_order(self) -> str | None:
        """How `fit_data` orders the training batches where that is not
        Keras' own order (`None` where it is). It is part of a study's
        settings: a study continued with batches in another order would mix
        two kinds of trials."""
        import keras

        if self.arrays and keras.backend.backend() == "tensorflow":
            return "tf.data shuffle seeded per run"
        return None

    def fit_data(self, batch_size: int, seed: int = 0) -> dict[str, Any]:
        """Keyword arguments of `fit` for the data: the training data
        shuffled each epoch, in an order that `seed` fixes.

        On TensorFlow, arrays go to `fit` as `tf.data` pipelines built here:
        given the arrays themselves, Keras builds a pipeline that costs
        about 0.08 s an epoch to iterate (an 8-epoch fit of the digits MLP
        with validation took 1.02 s, against 0.35 s on these pipelines,
        medians of 5). The same batches, the last one short, in another
        shuffled order than Keras' own. Other backends take the arrays.

        Validation data go in batches of `scoring_batch_size`."""
        if not self.arrays:
            return dict(x=self.train, validation_data=self.validation)
        (x, y), (x_val, y_val) = self.train, self.validation
        if self.batch_order is None:  # Keras' own order: the arrays themselves
            return dict(
                x=x, y=y, validation_data=(x_val, y_val), batch_size=batch_size, shuffle=True,
                validation_batch_size=scoring_batch_size(len(x_val), batch_size),
            )
        import keras
        import tensorflow as tf

        def floatx(array):
            # As Keras' own array adapter: floating arrays in `floatx`.
            array = np.asarray(array)
            return array.astype(keras.config.floatx()) if array.dtype.kind == "f" else array

        x, y, x_val, y_val = (floatx(a) for a in (x, y, x_val, y_val))
        train = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
        )
        validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(
            scoring_batch_size(len(x_val), batch_size)
        )
        # shuffle=False: the pipeline shuffles (Keras' own shuffle would
        # only warn that it ignores a dataset).
        return dict(x=train, validation_data=validation, shuffle=False)

    def test_data(self, batch_size: int) -> dict[str, Any]:
        """Keyword arguments of `evaluate` for the test data."""
        if self.arrays:
            x, y = self.test
            return dict(x=x, y=y, batch_size=scoring_batch_size(len(x), batch_size))
        return dict(x=self.test)

    def scoring_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """One batch `(x, y)` of the shape `fit` scores validation data in
        (arrays), or up to 256 training examples (loaders)."""
        if not self.arrays:
            return sample(self)
        x, y = self.validation
        rows = scoring_batch_size(len(x), batch_size)
        return np.asarray(x[:rows]), np.asarray(y[:rows])

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
            "test_data": self.test is not None,
            "test_examples": self.test_examples,
            "test_sha256": self.test_sha256,
        }

    def template(self, seed: int) -> Any:
        """A model built after seeding Keras' global generator with `seed`
        (so its initial weights follow the seed), built if it was not."""
        import keras

        no_tensorflow.set_random_seed(seed)
        model = self.build_model()
        if not model.built or not model.weights:
            x = sample_of(self.train)[0]
            model(x[:2])
        return model


# Validation and test data of at most this many examples are scored in one
# batch (see `scoring_batch_size`).
ONE_BATCH_SCORING = 1024


def scoring_batch_size(examples: int, batch_size: int) -> int:
    """Batch size of validation and test data: all `examples` in one batch
    where there are at most `ONE_BATCH_SCORING` (or at most `batch_size`),
    else the training batch size.

    In batches of the training size, data whose count is not a multiple of
    it end with a short batch, and each shape compiles its own evaluation
    step: on JAX the digits MLP's 360 validation examples took 12 steps
    per epoch and two compiles per optimizer. Scores do not depend on the
    batching (a loss mean differs in rounding only), and the evaluation
    step keeps no activations for a gradient."""
    return examples if examples <= max(ONE_BATCH_SCORING, batch_size) else batch_size


def sample(work: Workload) -> tuple[np.ndarray, np.ndarray]:
    """Up to 256 training examples `(x, y)` of `work`."""
    return sample_of(work.train)


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
        arrays = {key: getattr(dataset, key) for key in ARRAY_KEYS + TEST_KEYS}
    elif isinstance(dataset, dict):
        arrays = dataset
    else:
        arrays = None
    test = test_examples = test_sha = None
    if arrays is not None:
        train, validation = (arrays["x_train"], arrays["y_train"]), (arrays["x_val"], arrays["y_val"])
        num_batches, sha = None, weights_fingerprint([arrays[k] for k in ARRAY_KEYS])
        counts = (len(arrays["x_train"]), len(arrays["x_val"]))
        if arrays.get("x_test") is not None:
            test = (arrays["x_test"], arrays["y_test"])
            test_examples, test_sha = len(test[0]), weights_fingerprint([arrays[k] for k in TEST_KEYS])
    else:
        train, validation, *rest = dataset
        num_batches, sha, counts = count_batches(train), None, (None, None)
        test = rest[0] if rest else None
    x_sample, y_sample = sample_of(train)
    try:
        no_tensorflow.set_random_seed(seed)
        network = build()
    except Exception as error:  # noqa: BLE001 - the user's function failed
        raise UsageError(f"The model {model_name!r} does not build: {one_line(error)}") from None
    if not isinstance(network, keras.Model):
        raise UsageError(
            f"The model function {model_name!r} must return a keras.Model. "
            f"Received: {type(network).__name__}"
        )
    try:
        outputs = to_numpy(keras.ops.convert_to_numpy(network(x_sample[:8])))
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"The model {model_name!r} does not accept the data: {one_line(error)}") from None
    inferred_loss, loss_name, metrics, monitor = infer_task(y_sample, outputs)
    if loss is not None:
        try:
            inferred_loss = keras.losses.get(loss)
        except Exception as error:  # noqa: BLE001
            raise UsageError(f"Unknown loss {loss!r}: {one_line(error)}") from None
        loss_name = loss if isinstance(loss, str) else type(loss).__name__
    if metric is not None:
        if metric == "loss":
            metrics, monitor = [], "val_loss"
        else:
            try:
                keras.metrics.get(metric)
            except Exception as error:  # noqa: BLE001
                raise UsageError(f"Unknown metric {metric!r}: {one_line(error)}") from None
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
            f"and the labels: {one_line(error)}"
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
        test=test,
        test_examples=test_examples,
        test_sha256=test_sha,
    )
