"""`tune`: a fair optimizer benchmark on the user's own model, stored in an
Optuna study so that it can be stopped, resumed and shared by many workers.

The protocol, per candidate:

1. **Search.** An Optuna study `<study>/<candidate>` draws the candidate's
   hyperparameters from the ranges its registries declare (the learning rate
   log-uniform around the registry's suggestion; momentum, β's, schedule and
   callback parameters where the candidate has them) with a TPE sampler.
   The first trial is the untuned setting. Every trial trains from the
   initial weights of the tuning seed `seed`, with that seed's batch order,
   so trials differ only in their hyperparameters; a median pruner stops a
   trial whose validation metric, reported after each epoch, is worse than
   the median of earlier trials at that epoch; a trial whose metric is not
   finite stops as diverged. The search ends when the study holds `trials`
   finished (complete or pruned) trials.
2. **Evaluation.** The best trial's setting and the untuned setting are each
   trained again with the evaluation seeds `seed + 1, ..., seed + seeds`:
   seeds the search never saw, so the best trial's luck with its seed does
   not inflate the result. Seed `s` gives every candidate the same initial
   weights and the same batches.

Storage and resumption. By default the studies live in `study.sqlite3` in
the report folder; `storage` takes any database URL Optuna accepts. Trials
are written as they finish and evaluation runs as each ends (as study user
attributes), so running the same command again continues where the last one
stopped. The storage runs Optuna's heartbeat: a trial whose process died
(SIGKILL, a lost machine) stops sending it and is marked failed after
`3 × heartbeat_interval` seconds, then retried once; it does not count as
finished (`keras_optlab.lab.study`). Several processes pointed at one storage share the work: each
starts a trial only while fewer than `trials` are finished, so a candidate
ends with between `trials` and `trials + workers − 1` finished trials;
evaluation runs are taken in a different order by each process and skipped
when another already stored them. Before its evaluation a process waits for
trials still running elsewhere, so every process picks the same best trial.

A study remembers the settings it was made with (workload fingerprint,
epochs, batch size, metric, search space, backend, and on TensorFlow the
batch order); a command that differs is refused before anything is
written.

Every run trains through one `keras_optlab.lab.engine.Engine`: each
candidate is compiled once and its trials and seeds reuse the compiled
step, starting from exactly the state a fresh build would have.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

from keras_optlab.lab import report, study as studies_
from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError, as_usage_error
from keras_optlab.lab.protocol import Protocol, wanted_settings
from keras_optlab.lab.settings import RunSettings
from keras_optlab.lab.study import HEARTBEAT_INTERVAL  # noqa: F401 - part of this module's API
from keras_optlab.lab.tune_report import TuneResults


@dataclasses.dataclass(frozen=True)
class Budget:
    """Trials per candidate, evaluation seeds and epochs per run."""

    trials: int
    seeds: int
    epochs: int


# `quick` is sized to finish the default candidates on digits within four
# minutes on 2 CPU cores (docs/tune.md has the measured time).
BUDGETS = {
    "quick": Budget(trials=8, seeds=3, epochs=8),
    "standard": Budget(trials=25, seeds=5, epochs=20),
    "thorough": Budget(trials=60, seeds=10, epochs=30),
}
DEFAULT_CANDIDATES = ("adam", "radam", "nag")
DEFAULT_BATCH_SIZE = 32
DEFAULT_OUT = "optlab-tune"
DEFAULT_STUDY = "optlab"


@dataclasses.dataclass
class _Plan:
    """The checked arguments of one `tune` call."""

    run: RunSettings
    candidates: list[Candidate]
    spaces: dict[str, dict[str, Any]]
    trials: int
    seeds: int
    study: str
    storage_url: str | None
    out: pathlib.Path | None
    target: float | None
    heartbeat_interval: int

    @property
    def evaluation_seeds(self) -> list[int]:
        return [self.run.seed + 1 + k for k in range(self.seeds)]


def tune(
    candidates: Sequence[str] | None = None,
    *,
    model: Any = "mlp",
    data: Any = "digits",
    loss: Any = None,
    metric: Any = None,
    budget: str = "quick",
    trials: int | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    out: str | None = DEFAULT_OUT,
    storage: str | None = None,
    study: str = DEFAULT_STUDY,
    target: float | None = None,
    learning_rate_ranges: Mapping[str, tuple[float, float]] | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    verbose: int = 1,
    log: Callable[[str], None] | None = None,
) -> TuneResults:
    """Tunes each candidate on a budget, then retrains its best and its
    default setting over several seeds (the protocol is in the module's
    documentation).

    Args:
        candidates: Optimizer names, optionally with a schedule and
            callbacks (`"adam"`, `"adam+step"`, `"adam+plateau"`,
            `"nag+one_cycle"`; see `keras_optlab.lab.candidates`). Defaults
            to `None`: `adam, radam, nag`.
        model: `"mlp"`, `"cnn"`, `"package.module:function"` or a callable
            returning an uncompiled `keras.Model` (see
            `keras_optlab.lab.workload`). Defaults to `"mlp"`.
        data: `"digits"`, `"mnist1d"`, a `.npz` path,
            `"package.module:function"`, a mapping of arrays `x_train`,
            `y_train`, `x_val`, `y_val`, or `(train, validation)` pairs of
            arrays or data loaders (`tf.data`, PyTorch, `PyDataset`).
            Defaults to `"digits"`.
        loss: A Keras loss. Defaults to `None`: from the labels.
        metric: The validation metric to optimise (a Keras metric name, or
            `"loss"`). Defaults to `None`: accuracy for classes, the loss
            for a regression.
        budget: `"quick"` (8 trials, 3 seeds, 8 epochs), `"standard"`
            (25, 5, 20) or `"thorough"` (60, 10, 30). Defaults to `"quick"`.
        trials: Finished trials per candidate, overriding the budget.
        seeds: Evaluation seeds, overriding the budget.
        epochs: Epochs per run, overriding the budget.
        batch_size: Examples per step with array data (a loader batches
            itself). Defaults to 32.
        seed: The tuning seed; evaluation uses `seed + 1 ...`. Defaults to 0.
        out: Report folder; also holds the default storage. `None` writes no
            report (and, without `storage`, keeps the study in memory).
            Defaults to `"optlab-tune"`.
        storage: A database URL Optuna accepts (`sqlite:///file`,
            `postgresql://...`, `mysql://...`). Defaults to `None`:
            `sqlite:///<out>/study.sqlite3`.
        study: Name of the study; candidate `c` is the Optuna study
            `<study>/<c>`. Defaults to `"optlab"`.
        target: Value of the metric whose epochs-to-reach are reported.
            Defaults to `None`: the worst candidate's tuned mean best value.
        learning_rate_ranges: `{candidate: (low, high)}` replacing a
            candidate's learning-rate range. Defaults to `None`.
        jit_compile: Passed to `compile`. Defaults to `"auto"`.
        steps_per_execution: Steps per compiled call. Defaults to `None`:
            16, or 1 on PyTorch.
        heartbeat_interval: Seconds between a running trial's heartbeats,
            an integer >= 1; a trial silent for three intervals is failed.
            Defaults to 10.
        verbose: 0 silent, 1 a progress line after each trial and run.
            Defaults to 1.
        log: Called with each progress line. Defaults to `None` (stdout).

    Returns:
        A `TuneResults`.

    Raises:
        UsageError: Bad input, found before the storage or the report
            folder is touched: an unknown candidate or budget, a value out
            of range, a bad storage URL, data that cannot be read, a model
            that does not build, a study made with other settings.
    """
    started = time.perf_counter()
    plan = _check_arguments(
        candidates=candidates, budget=budget, trials=trials, seeds=seeds, epochs=epochs,
        batch_size=batch_size, seed=seed, out=out, storage=storage, study=study,
        target=target, learning_rate_ranges=learning_rate_ranges, jit_compile=jit_compile,
        steps_per_execution=steps_per_execution, heartbeat_interval=heartbeat_interval,
        verbose=verbose, log=log,
    )
    from keras_optlab.lab import workload as workloads
    from keras_optlab.lab.engine import Engine

    work = workloads.make_workload(model, data, loss, metric, seed=plan.run.seed)
    _quiet_optuna()
    storage, shown = _open_storage(plan)
    opened = studies_.open_studies(
        storage, shown, plan.study, plan.candidates, plan.spaces, wanted_settings(plan, work),
        minimise=work.minimise, trials=plan.trials, epochs=plan.run.epochs,
    )
    engine = Engine(
        work, epochs=plan.run.epochs, batch_size=plan.run.batch_size,
        jit_compile=plan.run.jit_compile, steps_per_execution=plan.run.steps_per_execution,
    )
    results = Protocol(plan, work, engine, opened, storage).run()
    results.settings["storage"] = shown
    results.wall_seconds = time.perf_counter() - started
    if plan.out is not None:
        results.save(str(plan.out))
    return results


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _check_arguments(
    *, candidates, budget, trials, seeds, epochs, batch_size, seed, out, storage,
    study, target, learning_rate_ranges, jit_compile, steps_per_execution,
    heartbeat_interval, verbose, log,
) -> _Plan:
    from keras_optlab import _validation
    from keras_optlab.lab import candidates as parser
    from keras_optlab.lab import settings as shared

    with as_usage_error():
        chosen = parser.parse_candidates(
            list(DEFAULT_CANDIDATES) if candidates is None else candidates, "candidates"
        )
        if budget not in BUDGETS:
            raise UsageError(f"Unknown budget {budget!r}. Known budgets: {', '.join(BUDGETS)}.")
        plan_budget = BUDGETS[budget]
        run = shared.check_run_settings(
            epochs=plan_budget.epochs if epochs is None else epochs, batch_size=batch_size,
            seed=seed, jit_compile=jit_compile, steps_per_execution=steps_per_execution,
            verbose=verbose, log=log,
        )
        trials = plan_budget.trials if trials is None else _validation.check_int("trials", trials, low=1)
        seeds = plan_budget.seeds if seeds is None else _validation.check_int("seeds", seeds, low=1)
        heartbeat_interval = _validation.check_int("heartbeat_interval", heartbeat_interval, low=1)
        if target is not None:
            target = _validation.check_float("target", target)
        if not isinstance(study, str) or not study.strip():
            raise UsageError(f"Argument `study` must be a non-empty name. Received: study={study!r}")
        ranges = shared.per_candidate(learning_rate_ranges, chosen, "learning-rate range", shared.check_range)
        spaces = {c.name: c.search_space(ranges.get(c.name)) for c in chosen}
        folder = None if out is None else report.check_out_folder(out, study=True)
        if storage is None and folder is not None:
            storage_url = f"sqlite:///{folder / report.STUDY_FILE}"
        else:
            storage_url = None if storage is None else studies_.check_storage_url(storage)
    return _Plan(
        run=run, candidates=chosen, spaces=spaces, trials=trials, seeds=seeds,
        study=study.strip(), storage_url=storage_url, out=folder, target=target,
        heartbeat_interval=heartbeat_interval,
    )


def _open_storage(plan: _Plan) -> tuple[Any, str]:
    import optuna

    if plan.storage_url is None:
        return optuna.storages.InMemoryStorage(), "memory"
    if plan.out is not None and plan.storage_url == f"sqlite:///{plan.out / report.STUDY_FILE}":
        plan.out.mkdir(parents=True, exist_ok=True)
    storage = studies_.open_storage(plan.storage_url, plan.heartbeat_interval)
    return storage, studies_.redact(plan.storage_url)


