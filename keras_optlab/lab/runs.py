"""`compare`: train one model with several candidates from the same
initial weights and the same batch order, and keep every number.

A candidate is an optimizer's registry name, optionally with a schedule and
callbacks (`adam+step`, `adam+plateau`; see `keras_optlab.lab.candidates`).
Every run starts from the state a fresh build with its seed has and sees
the same batches (`keras_optlab.lab.engine`, which also compiles each
candidate once for all seeds). A fingerprint (SHA-256) of the weights each
run really started from is recorded, so the claim can be checked from
`results.json`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from keras_optlab.lab import plots, report
from keras_optlab.lab.errors import UsageError, as_usage_error
from keras_optlab.lab.records import (  # noqa: F401 - part of this module's API
    SUMMARY_KEYS,
    Comparison,
    RunRecord,
    weights_fingerprint,
)
from keras_optlab.lab.engine import DEFAULT_STEPS_PER_EXECUTION  # noqa: F401

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
        `folder`, whole or not at all (see `keras_optlab.lab.report`).

        Returns:
            The folder's path.
        """
        return str(report.publish(folder, self.write))

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
    data: Any = "digits",
    model: Any = "mlp",
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
    *,
    dataset: Any = None,
) -> CompareResults:
    """Trains the same model from the same initial weights with each candidate.

    Args:
        optimizers: Candidates: registry names, optionally with a schedule
            and callbacks (`"adam+step"`, `"adam+plateau"`, see
            `keras_optlab.lab.candidates`). Each runs with its registry
            defaults. Defaults to `None`: `default_optimizers()`.
        data: `"digits"`, `"mnist1d"`, a `Dataset` (such as
            `load_dataset("mnist1d").hold_out(800)`, to choose settings on
            data held out of the training set), a `.npz` file with
            `x_train`, `y_train`, `x_val`, `y_val`,
            `"package.module:function"`, or the data itself, as `tune`
            takes it (see `keras_optlab.lab.workload`). Defaults to
            `"digits"`.
        model: `"logistic"`, `"mlp"`, `"cnn"` or `"gru"` (the lab's
            architectures for the dataset, see `keras_optlab.lab.models`),
            `"package.module:function"` or a callable returning an
            uncompiled `keras.Model`. Defaults to `"mlp"`.
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
            would be plain Adam for the whole run. Defaults to `None`:
            `keras_optlab.lab.candidates.default_switch_epoch(epochs)`, the
            middle epoch.
        dataset: The former name of `data`. Defaults to `None`.

    Returns:
        A `CompareResults`.

    Raises:
        UsageError: For an unknown candidate, dataset or model, data or a
            model that cannot be used, a value out of range, or an output
            folder that cannot be written.
    """
    started = time.perf_counter()
    from keras_optlab import _validation
    from keras_optlab.lab import candidates as candidate_parser
    from keras_optlab.lab import settings as shared
    from keras_optlab.lab import workload

    with as_usage_error():
        chosen = candidate_parser.parse_candidates(
            default_optimizers() if optimizers is None else list(optimizers), "optimizers"
        )
        rates = {c.name: c.defaults()["learning_rate"] for c in chosen}
        rates.update(shared.per_candidate(learning_rates, chosen, "learning rate", shared.check_rate))
        run = shared.check_run_settings(
            epochs=epochs, batch_size=check_batch_size(batch_size), seed=seed,
            jit_compile=jit_compile, steps_per_execution=steps_per_execution,
            verbose=verbose, log=log, full_batch=True,
        )
        seeds = _validation.check_int("seeds", seeds, low=1)
        switch_epoch = (
            candidate_parser.default_switch_epoch(run.epochs) if switch_epoch is None
            else _validation.check_int("switch_epoch", switch_epoch, low=1, high=run.epochs)
        )
        folder = None if out is None else report.check_out_folder(out)
    # The output folder is checked before any training, so a bad --out
    # fails in a second, not a minute.
    work = workload.make_workload(model, data if dataset is None else dataset, seed=run.seed)
    results = _run_all(work, chosen, rates, run, seeds, switch_epoch)
    results.wall_seconds = time.perf_counter() - started
    if folder is not None:
        report.publish(folder, results.write)
    return results


def _run_all(work, chosen, rates, run, seeds, switch_epoch) -> CompareResults:
    from keras_optlab.lab import settings as shared
    from keras_optlab.lab.engine import Engine

    if not work.arrays and run.batch_size == "full":
        raise UsageError("Argument `batch_size` cannot be 'full' with data loaders: they batch themselves.")
    batch = work.train_examples if run.batch_size == "full" else run.batch_size
    engine = Engine(
        work, epochs=run.epochs, batch_size=batch, jit_compile=run.jit_compile,
        steps_per_execution=run.steps_per_execution, verbose=run.verbose,
    )
    runs: list[RunRecord] = []
    total = len(chosen) * seeds
    for run_seed in range(run.seed, run.seed + seeds):
        for candidate in chosen:
            rate = rates[candidate.name]
            if run.verbose:
                run.say(
                    f"run {len(runs) + 1} of {total}: {candidate.name} "
                    f"(learning rate {rate:g}, seed {run_seed})"
                )
            record = engine.run(
                candidate, {"learning_rate": rate}, run_seed, switch_epoch=switch_epoch, test=True
            )
            # compare runs each candidate at its defaults: record only the rate.
            record.hyperparameters = {}
            runs.append(record)
    settings = {
        **shared.describe(work, run, batch if work.arrays else None, engine),
        "batch_size_argument": run.batch_size,
        "seed": run.seed,
        "seeds": seeds,
        "switch_epoch": switch_epoch,
    }
    return CompareResults(runs=runs, settings=settings)
