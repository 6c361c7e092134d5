"""`compare`: train one model with several candidates from the same
initial weights and the same batch order, and keep every number.

A candidate is an optimizer's registry name, optionally with a schedule and
callbacks (`adam+step`, `adam+plateau`; see `keras_optlab.lab.candidates`).
Each run builds a fresh model and loads the weights of a template built
from the seed; Keras' global generator is reseeded before each fit, so
shuffling gives every candidate the same batches. A fingerprint (SHA-256) of
the weights each run really started from is recorded, so the claim can be
checked from `results.json`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from keras_optlab.lab import plots, report
from keras_optlab.lab.errors import UsageError, as_usage_error
from keras_optlab.lab.records import (  # noqa: F401 - part of this module's API
    SUMMARY_KEYS,
    Comparison,
    RunRecord,
    weights_fingerprint,
)
from keras_optlab.lab.training import DEFAULT_STEPS_PER_EXECUTION  # noqa: F401

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


def default_optimizers() -> list[str]:
    """The optimizers `compare` runs when none are named: the seed family
    (`sgd, momentum, nag, adagrad, adadelta, rmsprop, adam, radam`), plus
    `adam_then_sgd` when the registry has it."""
    from keras_optlab.optimizers import list_optimizers

    names = list(SEED_FAMILY)
    if SWITCHING_DEFAULT in list_optimizers():
        names.append(SWITCHING_DEFAULT)
    return names




class CompareResults(Comparison):
    """Everything `compare` measured.

    Attributes:
        runs: One `RunRecord` per candidate and seed, in the order run.
        settings: Dataset, model, epochs, batch size, seeds, backend and
            the other choices the runs share.
        wall_seconds: Wall time of the whole comparison.
    """

    def table(self) -> str:
        """The summary as a Markdown table, one row per candidate."""
        return report.markdown_table(self)

    def plot(self, path: str | None = None) -> Any:
        """Training and validation loss and accuracy per epoch, one line per
        candidate (mean over seeds, with a band of one standard deviation).

        Args:
            path: Where to save the figure as PNG. Defaults to `None` (not
                saved).

        Returns:
            The matplotlib `Figure`.
        """
        return plots.plot_curves(self, path)

    def plot_learning_rates(self, path: str | None = None) -> Any:
        """The effective learning rate per epoch, switch epochs marked.

        Args:
            path: Where to save the figure as PNG. Defaults to `None`.

        Returns:
            The matplotlib `Figure`.
        """
        return plots.plot_learning_rates(self, path)

    def save(self, folder: str) -> str:
        """Writes `report.md`, `curves.png`, `lr.png` and `results.json` to
        `folder`, all or nothing (see `keras_optlab.lab.report`).

        Returns:
            The folder's path.
        """
        staging = report.ReportFolder(folder)
        try:
            self.write(staging.path)
            staging.commit()
        finally:
            staging.discard()
        return str(staging.target)

    def write(self, folder: str) -> None:
        """Writes the report files into an existing `folder`, in place."""
        report.write_compare_report(self, folder)


def check_batch_size(batch_size: int | str) -> int | str:
    """An int >= 1 or `"full"`."""
    if batch_size == "full":
        return batch_size
    from keras_optlab import _validation

    return _validation.check_int("batch_size", batch_size, low=1)


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
    """Trains the same model from the same initial weights with each candidate.

    Args:
        optimizers: Candidates: registry names, optionally with a schedule
            and callbacks (`"adam+step"`, `"adam+plateau"`, see
            `keras_optlab.lab.candidates`). Each runs with its registry
            defaults. Defaults to `None`: `default_optimizers()`.
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
        learning_rates: Learning rate per candidate, overriding the
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
        UsageError: For an unknown candidate, dataset or model name, a value
            out of range, or an output folder that cannot be written.
    """
    started = time.perf_counter()
    from keras_optlab import _validation
    from keras_optlab.lab import candidates as candidate_parser
    from keras_optlab.lab import data, models, training

    with as_usage_error():
        chosen = candidate_parser.parse_candidates(
            default_optimizers() if optimizers is None else list(optimizers), "optimizers"
        )
        by_name = {c.name: c for c in chosen}
        rates = {c.name: c.defaults()["learning_rate"] for c in chosen}
        for name, rate in dict(learning_rates or {}).items():
            key = candidate_parser.parse_candidate(name).name
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
        steps_per_execution = training.steps_per_execution(steps_per_execution)
        verbose = _validation.check_int("verbose", verbose, low=0, high=2)
        switch_epoch = (
            max(1, epochs // 2) if switch_epoch is None
            else _validation.check_int("switch_epoch", switch_epoch, low=1, high=epochs)
        )
        batch_size = check_batch_size(batch_size)
        if jit_compile != "auto":
            _validation.check_bool("jit_compile", jit_compile)
    say = log or (lambda line: print(line, flush=True))

    # The output folder is checked (and a staging folder made next to it)
    # before any training, so a bad --out fails in a second, not a minute.
    staging = None if out is None else report.ReportFolder(out)
    try:
        results = _run_all(
            by_name, rates, dataset, model, epochs, batch_size, seed, seeds,
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


def _run_all(
    candidates, rates, dataset_name, model_name, epochs, batch_size, seed, seeds,
    jit_compile, steps_per_execution, verbose, say, switch_epoch,
) -> CompareResults:
    import keras

    from keras_optlab.lab import training, workload

    work = workload.make_workload(model_name, dataset_name, seed=seed)
    batch = work.train_examples if batch_size == "full" else batch_size
    runs: list[RunRecord] = []
    total = len(candidates) * seeds
    for seed_index in range(seeds):
        run_seed = seed + seed_index
        initial_weights = work.template(run_seed).get_weights()
        for name, candidate in candidates.items():
            if verbose:
                say(
                    f"run {len(runs) + 1} of {total}: {name} "
                    f"(learning rate {rates[name]:g}, seed {run_seed})"
                )
            record = training.run(
                work, candidate, {"learning_rate": rates[name]}, run_seed, initial_weights,
                epochs, batch, jit_compile, steps_per_execution, verbose, switch_epoch,
            )
            # compare runs each candidate at its defaults: record only the rate.
            record.hyperparameters = {}
            runs.append(record)
    settings = {
        "dataset": work.data_name,
        "model": model_name,
        "epochs": epochs,
        "batch_size": batch,
        "batch_size_argument": batch_size,
        "seed": seed,
        "seeds": seeds,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "jit_compile": jit_compile,
        "steps_per_execution": min(steps_per_execution, work.steps_per_epoch(batch)),
        "switch_epoch": switch_epoch,
        "train_examples": int(work.train_examples),
        "validation_examples": int(work.validation_examples),
    }
    return CompareResults(runs=runs, settings=settings)
