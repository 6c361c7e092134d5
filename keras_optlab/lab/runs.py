"""`compare`: train one model with several optimizers from the same initial
weights and the same batch order, and keep every number.

Each optimizer gets its own copy of one template model, with the template's
weights copied in; Keras' global generator is reseeded before each fit, so
shuffling gives every optimizer the same batches. A fingerprint (SHA-256) of
the weights each run really started from is recorded, so the claim can be
checked from `results.json`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from keras_optlab.lab.errors import UsageError, as_usage_error

if TYPE_CHECKING:
    from keras_optlab.lab.data import Dataset

SEED_FAMILY = (
    "sgd", "momentum", "nag", "adagrad", "adadelta", "rmsprop", "adam", "radam",
)
# Registered by the switching-optimizer work; used when present.
SWITCHING_DEFAULT = "adam_then_sgd"

# Measured on a 2-core CPU with TensorFlow: 20 epochs of batch 32 on digits
# train every default optimizer to >95 % validation accuracy and keep the
# default command under 90 s (see docs/compare.md for the timing).
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 32
# Steps run per call of the compiled train function. On a small model the
# time goes into the per-call Python overhead, not the arithmetic: 16 steps
# per call make the default comparison about 1.6 times faster on TensorFlow.
# The progress bar then moves in jumps of 16 steps.
DEFAULT_STEPS_PER_EXECUTION = 16

SUMMARY_KEYS = (
    "best_val_accuracy", "best_epoch", "final_val_accuracy",
    "best_val_loss", "final_val_loss", "seconds_per_epoch",
)


def default_optimizers() -> list[str]:
    """The optimizers `compare` runs when none are named: the seed family
    (`sgd, momentum, nag, adagrad, adadelta, rmsprop, adam, radam`), plus
    `adam_then_sgd` when the registry has it."""
    from keras_optlab.optimizers import list_optimizers

    names = list(SEED_FAMILY)
    if SWITCHING_DEFAULT in list_optimizers():
        names.append(SWITCHING_DEFAULT)
    return names


def weights_fingerprint(weights: Sequence[np.ndarray]) -> str:
    """SHA-256 of the weights' shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for array in weights:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclasses.dataclass
class RunRecord:
    """One optimizer trained with one seed.

    Attributes:
        optimizer: Registry name.
        seed: The seed of the template model and of the batch order.
        learning_rate: The initial learning rate it was built with.
        history: Per-epoch lists: `loss`, `accuracy`, `val_loss`,
            `val_accuracy`, `learning_rate` (the effective rate at the end of
            the epoch) and, for optimizers that switch method,
            `optimizer_phase`.
        epoch_seconds: Wall time of each epoch, validation included.
        initial_weights_sha256: Fingerprint of the weights the model held
            when training began.
    """

    optimizer: str
    seed: int
    learning_rate: float
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    initial_weights_sha256: str

    @property
    def epochs(self) -> int:
        return len(self.history["val_accuracy"])

    @property
    def switch_epochs(self) -> list[int]:
        """1-based epochs at whose end the optimizer's phase had changed."""
        phases = self.history.get("optimizer_phase")
        if not phases:
            return []
        previous = [0] + list(phases[:-1])
        return [i + 1 for i, (a, b) in enumerate(zip(previous, phases)) if a != b]

    def summary(self) -> dict[str, float]:
        """Best and final validation numbers and the time per epoch.

        The best epoch is the one of highest validation accuracy (the first
        if tied); `best_val_loss` is the lowest validation loss of any epoch.
        `seconds_per_epoch` is the median epoch time without the first
        epoch, which also pays for tracing and compiling.
        """
        accuracy = np.asarray(self.history["val_accuracy"], dtype=float)
        loss = np.asarray(self.history["val_loss"], dtype=float)
        accuracy_clean = np.where(np.isfinite(accuracy), accuracy, -np.inf)
        loss_clean = np.where(np.isfinite(loss), loss, np.inf)
        timed = self.epoch_seconds[1:] or self.epoch_seconds
        return {
            "best_val_accuracy": float(accuracy_clean.max()),
            "best_epoch": int(np.argmax(accuracy_clean)) + 1,
            "final_val_accuracy": float(accuracy[-1]),
            "best_val_loss": float(loss_clean.min()),
            "final_val_loss": float(loss[-1]),
            "seconds_per_epoch": float(statistics.median(timed)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "seed": self.seed,
            "learning_rate": self.learning_rate,
            "initial_weights_sha256": self.initial_weights_sha256,
            "switch_epochs": self.switch_epochs,
            "summary": {k: _finite_or_none(v) for k, v in self.summary().items()},
            "epoch_seconds": self.epoch_seconds,
            "history": {
                key: [_finite_or_none(float(v)) for v in values]
                for key, values in self.history.items()
            },
        }


@dataclasses.dataclass
class CompareResults:
    """Everything `compare` measured.

    Attributes:
        runs: One `RunRecord` per optimizer and seed, in the order run.
        settings: Dataset, model, epochs, batch size, seeds, backend and
            the other choices the runs share.
        wall_seconds: Wall time of the whole comparison.
    """

    runs: list[RunRecord]
    settings: dict[str, Any]
    wall_seconds: float = 0.0

    @property
    def optimizers(self) -> list[str]:
        """Optimizer names in the order first run."""
        return list(dict.fromkeys(run.optimizer for run in self.runs))

    def runs_of(self, optimizer: str) -> list[RunRecord]:
        return [run for run in self.runs if run.optimizer == optimizer]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per optimizer and summary key: `mean` and `std` (population
        standard deviation, 0 for one seed) over seeds."""
        table = {}
        for name in self.optimizers:
            per_run = [run.summary() for run in self.runs_of(name)]
            table[name] = {}
            for key in SUMMARY_KEYS:
                values = np.asarray([s[key] for s in per_run], dtype=float)
                table[name][key] = {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                }
        return table

    def table(self) -> str:
        """The summary as a Markdown table, one row per optimizer."""
        from keras_optlab.lab.report import markdown_table

        return markdown_table(self)

    def plot(self, path: str | None = None) -> Any:
        """Training and validation loss and accuracy per epoch, one line per
        optimizer (mean over seeds, with a band of one standard deviation).

        Args:
            path: Where to save the figure as PNG. Defaults to `None` (not
                saved).

        Returns:
            The matplotlib `Figure`.
        """
        from keras_optlab.lab import plots

        return plots.plot_curves(self, path)

    def plot_learning_rates(self, path: str | None = None) -> Any:
        """The effective learning rate per epoch, switch epochs marked.

        Args:
            path: Where to save the figure as PNG. Defaults to `None`.

        Returns:
            The matplotlib `Figure`.
        """
        from keras_optlab.lab import plots

        return plots.plot_learning_rates(self, path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "keras_optlab.compare/1",
            "settings": self.settings,
            "wall_seconds": self.wall_seconds,
            "summary": self.summary(),
            "runs": [run.to_dict() for run in self.runs],
        }

    def save(self, folder: str) -> str:
        """Writes `report.md`, `curves.png`, `lr.png` and `results.json` to
        `folder`, all or nothing (see `keras_optlab.lab.report`).

        Returns:
            The folder's path.
        """
        from keras_optlab.lab.report import ReportFolder

        staging = ReportFolder(folder)
        try:
            self.write(staging.path)
            staging.commit()
        finally:
            staging.discard()
        return str(staging.target)

    def write(self, folder: str) -> None:
        """Writes the report files into an existing `folder`, in place."""
        from keras_optlab.lab.report import write_compare_report

        write_compare_report(self, folder)


def _check_batch_size(batch_size: int | str, num_examples: int) -> int:
    if batch_size == "full":
        return num_examples
    from keras_optlab import _validation

    return _validation.check_int("batch_size", batch_size, low=1)


class _RunProbe:
    """Builds the callbacks that time epochs and fingerprint the weights a
    run starts from (read from the model being trained, at train begin)."""

    def __init__(self):
        import keras

        probe = self

        class Probe(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                probe.fingerprint = weights_fingerprint(self.model.get_weights())

            def on_epoch_begin(self, epoch, logs=None):
                probe.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                probe.epoch_seconds.append(time.perf_counter() - probe.started)

        self.fingerprint = ""
        self.started = 0.0
        self.epoch_seconds: list[float] = []
        self.callback = Probe()


def compare(
    optimizers: Sequence[str] | None = None,
    dataset: str | Dataset = "digits",
    model: str = "mlp",
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int | str = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    seeds: int = 1,
    learning_rates: Mapping[str, float] | None = None,
    out: str | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int | None = None,
    verbose: int = 1,
    log: Callable[[str], None] | None = None,
    switch_epoch: int | None = None,
) -> CompareResults:
    """Trains the same model from the same initial weights with each optimizer.

    Args:
        optimizers: Registry names. Defaults to `None`: `default_optimizers()`.
        dataset: `"digits"` or `"mnist1d"`, or a `Dataset` (such as
            `load_dataset("mnist1d").hold_out(800)`, to choose settings
            on data held out of the training set). Defaults to `"digits"`.
        model: `"logistic"`, `"mlp"`, `"cnn"` or `"gru"`; which
            architecture each builds depends on the dataset (see
            `keras_optlab.lab.models`). Defaults to `"mlp"`.
        epochs: Epochs per run, >= 1. Defaults to 20.
        batch_size: Examples per step: an int >= 1 (1 is stochastic gradient
            descent) or `"full"` (batch gradient descent: one step per
            epoch). Defaults to 32.
        seed: First seed. Defaults to 0.
        seeds: Number of seeds, `seed, seed + 1, ...`; the report gives mean
            and spread. Defaults to 1.
        learning_rates: Learning rate per optimizer name, overriding the
            registry's `suggested_learning_rate`. Defaults to `None`.
        out: Folder to write the report to, all or nothing. Checked before
            training starts. Defaults to `None` (no report written).
        jit_compile: Passed to `model.compile`. `"auto"` is Keras' choice
            (on CPU-only TensorFlow, a graph without XLA, which compiles
            faster than it would save on these small models). Defaults to
            `"auto"`.
        steps_per_execution: Steps per call of the compiled train function,
            at most the steps of one epoch. Keras' PyTorch backend accepts
            only 1. Defaults to `None`: 16, or 1 on PyTorch.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch; above 0 also
            prints "run k of N" before each run. Defaults to 1.
        log: Called with each "run k of N" line. Defaults to `None` (print to
            stdout).
        switch_epoch: For a switching optimizer that has neither a
            `switch_step` nor a criterion of its own (`adam_then_sgd`): the
            1-based epoch at whose end the `SwitchOptimizer` callback moves
            it to its second phase, in [1, epochs]. Without a switch it
            would be plain Adam for the whole run. Defaults to `None`: the
            middle epoch, `max(1, epochs // 2)`.

    Returns:
        A `CompareResults`.

    Raises:
        UsageError: For an unknown optimizer, dataset or model name, a value
            out of range, or an output folder that cannot be written.
    """
    started = time.perf_counter()
    from keras_optlab import _validation
    from keras_optlab.lab import data, models
    from keras_optlab.optimizers import registry

    with as_usage_error():
        names = default_optimizers() if optimizers is None else list(optimizers)
        if not names:
            raise UsageError("Argument `optimizers` must name at least one optimizer.")
        names = [registry.info(name).name for name in names]
        if len(set(names)) != len(names):
            raise UsageError(f"Argument `optimizers` names one twice: {', '.join(names)}.")
        rates = {name: registry.info(name).suggested_learning_rate for name in names}
        for name, rate in dict(learning_rates or {}).items():
            key = registry.info(name).name
            if key not in rates:
                raise UsageError(
                    f"A learning rate is given for {name!r}, which is not compared."
                )
            rates[key] = _validation.check_float(f"learning_rate[{name}]", rate, low=0.0, low_open=True)
        data.check_dataset(dataset)  # raises, listing the names
        models.check_model_name(model)
        epochs = _validation.check_int("epochs", epochs, low=1)
        seed = _validation.check_int("seed", seed, low=0)
        seeds = _validation.check_int("seeds", seeds, low=1)
        steps_per_execution = _steps_per_execution(steps_per_execution)
        verbose = _validation.check_int("verbose", verbose, low=0, high=2)
        switch_epoch = (
            max(1, epochs // 2) if switch_epoch is None
            else _validation.check_int("switch_epoch", switch_epoch, low=1, high=epochs)
        )
        if batch_size != "full":
            _check_batch_size(batch_size, 0)
        if jit_compile != "auto":
            _validation.check_bool("jit_compile", jit_compile)
    say = log or (lambda line: print(line, flush=True))

    # The output folder is checked (and a staging folder made next to it)
    # before any training, so a bad --out fails in a second, not a minute.
    staging = None
    if out is not None:
        from keras_optlab.lab.report import ReportFolder

        staging = ReportFolder(out)
    try:
        results = _run_all(
            names, rates, dataset, model, epochs, batch_size, seed, seeds,
            jit_compile, steps_per_execution, verbose, say, switch_epoch,
        )
        results.wall_seconds = time.perf_counter() - started
        if staging is not None:
            results.write(staging.path)
            staging.commit()
    finally:
        if staging is not None:
            staging.discard()
    return results


def _steps_per_execution(value: int | None) -> int:
    import keras

    from keras_optlab import _validation

    torch = keras.backend.backend() == "torch"
    if value is None:
        return 1 if torch else DEFAULT_STEPS_PER_EXECUTION
    value = _validation.check_int("steps_per_execution", value, low=1)
    if torch and value != 1:
        raise UsageError(
            "Argument `steps_per_execution` must be 1 with the PyTorch backend. "
            f"Received: steps_per_execution={value}"
        )
    return value


def _switch_callbacks(optimizer, switch_epoch: int, callback_class) -> list:
    """A `SwitchOptimizer` for a `SwitchingOptimizer` that would otherwise
    never leave its first phase (no `switch_step`); nothing for the rest.
    It comes before `LearningRateLogger`, so the switch epoch's logs already
    show the new phase and rate."""
    from keras_optlab.optimizers import SwitchingOptimizer

    if isinstance(optimizer, SwitchingOptimizer) and optimizer.switch_step is None:
        return [callback_class(at_epoch=switch_epoch - 1)]
    return []


def _run_all(
    names, rates, dataset_name, model_name, epochs, batch_size, seed, seeds,
    jit_compile, steps_per_execution, verbose, say, switch_epoch,
) -> CompareResults:
    import keras

    from keras_optlab.callbacks import LearningRateLogger, SwitchOptimizer
    from keras_optlab.lab import data, models
    from keras_optlab.optimizers import registry

    dataset = data.resolve_dataset(dataset_name)
    batch = _check_batch_size(batch_size, len(dataset.x_train))
    # More steps per call than an epoch has would make Keras warn that the
    # data ran out.
    steps_per_execution = min(steps_per_execution, math.ceil(len(dataset.x_train) / batch))
    runs: list[RunRecord] = []
    total = len(names) * seeds
    for seed_index in range(seeds):
        run_seed = seed + seed_index
        template = models.build_model(model_name, dataset, seed=run_seed)
        initial_weights = template.get_weights()
        for name in names:
            if verbose:
                say(
                    f"run {len(runs) + 1} of {total}: {name} "
                    f"(learning rate {rates[name]:g}, seed {run_seed})"
                )
            network = keras.models.clone_model(template)
            network.set_weights(initial_weights)
            optimizer = registry.get(name, learning_rate=rates[name])
            network.compile(
                optimizer=optimizer,
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=jit_compile,
                steps_per_execution=steps_per_execution,
            )
            probe = _RunProbe()
            # Same seed before every fit: the same shuffled batches for all.
            keras.utils.set_random_seed(run_seed)
            history = network.fit(
                dataset.x_train, dataset.y_train,
                validation_data=(dataset.x_val, dataset.y_val),
                batch_size=batch, epochs=epochs, shuffle=True,
                verbose=verbose,
                callbacks=_switch_callbacks(optimizer, switch_epoch, SwitchOptimizer)
                + [LearningRateLogger(), probe.callback],
            )
            runs.append(
                RunRecord(
                    optimizer=name,
                    seed=run_seed,
                    learning_rate=float(rates[name]),
                    history={k: [float(v) for v in vs] for k, vs in history.history.items()},
                    epoch_seconds=probe.epoch_seconds,
                    initial_weights_sha256=probe.fingerprint,
                )
            )
    settings = {
        "dataset": dataset.name,
        "model": model_name,
        "epochs": epochs,
        "batch_size": batch,
        "batch_size_argument": batch_size,
        "seed": seed,
        "seeds": seeds,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "jit_compile": jit_compile,
        "steps_per_execution": steps_per_execution,
        "switch_epoch": switch_epoch,
        "train_examples": int(len(dataset.x_train)),
        "validation_examples": int(len(dataset.x_val)),
    }
    return CompareResults(runs=runs, settings=settings)
