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
finished. Several processes pointed at one storage share the work: each
starts a trial only while fewer than `trials` are finished, so a candidate
ends with between `trials` and `trials + workers − 1` finished trials;
evaluation runs are taken in a different order by each process and skipped
when another already stored them. Before its evaluation a process waits for
trials still running elsewhere, so every process picks the same best trial.

A study remembers the settings it was made with (workload fingerprint,
epochs, batch size, metric, search space, backend); a command that differs
is refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import random
import shutil
import tempfile
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

from keras_optlab.lab import plots, report, tune_report
from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError, as_usage_error
from keras_optlab.lab.records import (
    CandidateOutcome,
    RunRecord,
    TrialRecord,
    TuneRecords,
    best_index,
)


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
STORAGE_FILE = "study.sqlite3"
HEARTBEAT_INTERVAL = 10
# A trial is stale after this many heartbeat intervals without one.
GRACE_INTERVALS = 3
SETTINGS_ATTR = "optlab_settings"
RUN_ATTR_PREFIX = "run:"
FORMAT = "keras_optlab.tune/1"
ONE_MINUS = "1-"


class TuneResults(TuneRecords):
    """What `tune` measured (see `TuneRecords` for the numbers), with its
    tables, pictures and report."""

    def table(self) -> str:
        """One row per candidate: tuned hyperparameters, mean ± 95 % CI of
        the best and final validation metric, gain over the default, time."""
        return tune_report.results_table(self)

    def pairwise_table(self) -> str:
        """Which candidates the seeds can tell apart (Welch's t-test, 5 %)."""
        return tune_report.pairwise_table(self)

    def plot_sensitivity(self, path: str | None = None) -> Any:
        """Validation metric against learning rate, every trial, per candidate."""
        return plots.plot_sensitivity(self, path)

    def plot_progress(self, path: str | None = None) -> Any:
        """Best value so far against trial number, per candidate."""
        return plots.plot_progress(self, path)

    def plot_seeds(self, path: str | None = None) -> Any:
        """Validation metric per epoch of the tuned setting over the
        evaluation seeds: mean and the band between the lowest and highest."""
        return plots.plot_seeds(self, path)

    def save(self, folder: str) -> str:
        """Writes `report.md`, `results.json` and the pictures into `folder`
        (created if needed; other files there, such as the study, are kept).
        Each file is written in full beside the folder first, then moved in."""
        return publish(self, folder)


def publish(results: TuneRecords, folder: str | os.PathLike) -> str:
    target = pathlib.Path(folder).expanduser().absolute()
    target.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".report.partial-", dir=target))
    try:
        tune_report.write_tune_report(results, staging)
        # results.json last: a folder whose results.json is new has every file new.
        names = sorted(p.name for p in staging.iterdir())
        names.sort(key=lambda n: n == "results.json")
        for name in names:
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


# --- search space <-> Optuna ---------------------------------------------

def _suggest(trial, name: str, dimension) -> Any:
    from keras_optlab import search_space as space

    if isinstance(dimension, space.IntUniform):
        return trial.suggest_int(name, int(dimension.low), int(dimension.high))
    if isinstance(dimension, space.OneMinusLogUniform):
        complement = trial.suggest_float(ONE_MINUS + name, 1 - dimension.high, 1 - dimension.low, log=True)
        return 1.0 - complement
    return trial.suggest_float(
        name, dimension.low, dimension.high, log=isinstance(dimension, space.LogUniform)
    )


def _to_optuna(space_: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    from keras_optlab import search_space as space

    out = {}
    for name, dimension in space_.items():
        value = values[name]
        if isinstance(dimension, space.OneMinusLogUniform):
            out[ONE_MINUS + name] = 1.0 - value
        else:
            out[name] = value
    return out


def _from_optuna(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if name.startswith(ONE_MINUS):
            out[name[len(ONE_MINUS):]] = 1.0 - value
        else:
            out[name] = value
    return out


# --- storage ----------------------------------------------------------------

def redact(url: str) -> str:
    """The URL with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown as given
        return url


def check_storage_url(url: str) -> str:
    """Checks that SQLAlchemy can parse `url` and knows its dialect."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"Argument `storage` must be a database URL. Received: storage={url!r}")
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except Exception as error:  # noqa: BLE001 - ArgumentError, NoSuchModuleError, ImportError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(
            f"Bad storage URL {redact(url)!r}: {reason}. Give a database URL such as "
            "sqlite:///study.sqlite3 or postgresql://user@host/db."
        ) from None
    return url


def open_storage(url: str, heartbeat_interval: int):
    """An Optuna `RDBStorage` with heartbeats (see the module)."""
    import optuna

    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several processes write one file: wait for the lock instead of
        # failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=GRACE_INTERVALS * heartbeat_interval,
                heartbeat_stale_trial_callback=retry,
            )
        except sqlalchemy.exc.DBAPIError as error:
            # Workers starting together on a new database race to create
            # its tables; the loser finds them made on the next attempt.
            if attempt == 4 or not isinstance(
                error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)
            ):
                failure = error
                break
            time.sleep(0.5 + random.random())
        except Exception as error:  # noqa: BLE001 - no driver, not a database
            failure = error
            break
    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise UsageError(f"Cannot open storage {redact(url)!r}: {reason}")


def _study_names(storage) -> set[str]:
    return {s.study_name for s in storage.get_all_studies()}


def _check_out_folder(out: str) -> pathlib.Path:
    """The folder may be new, empty, or hold an earlier tune (its study or
    its report); a file or a folder of other things is refused."""
    folder = pathlib.Path(out).expanduser().absolute()
    if folder.is_file():
        raise UsageError(f"Output folder {out!r} is an existing file.")
    if folder.is_dir():
        names = {p.name for p in folder.iterdir()}
        ours = STORAGE_FILE in names or report.is_report_folder(folder)
        if names and not ours:
            raise UsageError(
                f"Output folder {out!r} exists and is not an optlab report; choose another --out."
            )
        if not os.access(folder, os.W_OK):
            raise UsageError(f"Cannot write output folder {out!r}: permission denied.")
    else:
        parent = folder.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UsageError(f"Cannot write output folder {out!r}: {parent} is not a writable folder.")
    return folder


# --- the driver -----------------------------------------------------------

@dataclasses.dataclass
class _Plan:
    candidates: list[Candidate]
    spaces: dict[str, dict[str, Any]]
    trials: int
    seeds: int
    epochs: int
    batch_size: int
    seed: int
    study: str
    storage_url: str | None
    out: pathlib.Path | None
    target: float | None
    jit_compile: bool | str
    steps_per_execution: int
    heartbeat_interval: int
    verbose: int
    say: Callable[[str], None]
    storage_shown: str = "memory"
    storage: Any = None


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
        candidates, budget, trials, seeds, epochs, batch_size, seed, out, storage,
        study, target, learning_rate_ranges, jit_compile, steps_per_execution,
        heartbeat_interval, verbose, log,
    )
    from keras_optlab.lab import workload as workloads

    work = workloads.make_workload(model, data, loss, metric, seed=plan.seed)
    _quiet_optuna()
    studies = _open_studies(plan, work)
    runner = _Runner(plan, work, studies, started)
    results = runner.run()
    results.wall_seconds = time.perf_counter() - started
    if plan.out is not None:
        results.save(str(plan.out))
    return results


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _check_arguments(
    candidates, budget, trials, seeds, epochs, batch_size, seed, out, storage,
    study, target, learning_rate_ranges, jit_compile, steps_per_execution,
    heartbeat_interval, verbose, log,
) -> _Plan:
    from keras_optlab import _validation
    from keras_optlab.lab import candidates as parser
    from keras_optlab.lab import training

    with as_usage_error():
        chosen = parser.parse_candidates(
            list(DEFAULT_CANDIDATES) if candidates is None else candidates, "candidates"
        )
        if budget not in BUDGETS:
            raise UsageError(
                f"Unknown budget {budget!r}. Known budgets: {', '.join(BUDGETS)}."
            )
        plan_budget = BUDGETS[budget]
        trials = plan_budget.trials if trials is None else _validation.check_int("trials", trials, low=1)
        seeds = plan_budget.seeds if seeds is None else _validation.check_int("seeds", seeds, low=1)
        epochs = plan_budget.epochs if epochs is None else _validation.check_int("epochs", epochs, low=1)
        batch_size = _validation.check_int("batch_size", batch_size, low=1)
        seed = _validation.check_int("seed", seed, low=0)
        heartbeat_interval = _validation.check_int("heartbeat_interval", heartbeat_interval, low=1)
        verbose = _validation.check_int("verbose", verbose, low=0, high=2)
        steps_per_execution = training.steps_per_execution(steps_per_execution)
        if jit_compile != "auto":
            _validation.check_bool("jit_compile", jit_compile)
        if target is not None:
            target = _validation.check_float("target", target)
        if not isinstance(study, str) or not study.strip():
            raise UsageError(f"Argument `study` must be a non-empty name. Received: study={study!r}")
        ranges = {}
        for name, pair in dict(learning_rate_ranges or {}).items():
            key = parser.parse_candidate(name).name
            if key not in {c.name for c in chosen}:
                raise UsageError(f"A learning-rate range is given for {name!r}, which is not tuned.")
            try:
                low, high = (float(v) for v in pair)
            except (TypeError, ValueError):
                raise UsageError(
                    f"The learning-rate range of {name!r} must be two numbers LOW,HIGH. Received: {pair!r}"
                ) from None
            if not (0 < low < high and math.isfinite(high)):
                raise UsageError(
                    f"The learning-rate range of {name!r} must satisfy 0 < LOW < HIGH. "
                    f"Received: {low:g},{high:g}"
                )
            ranges[key] = (low, high)
        spaces = {c.name: c.search_space(ranges.get(c.name)) for c in chosen}
        folder = None if out is None else _check_out_folder(out)
        if storage is None and folder is not None:
            storage_url = f"sqlite:///{folder / STORAGE_FILE}"
        else:
            storage_url = None if storage is None else check_storage_url(storage)
    return _Plan(
        candidates=chosen, spaces=spaces, trials=trials, seeds=seeds, epochs=epochs,
        batch_size=batch_size, seed=seed, study=study.strip(), storage_url=storage_url,
        out=folder, target=target, jit_compile=jit_compile,
        steps_per_execution=steps_per_execution, heartbeat_interval=heartbeat_interval,
        verbose=verbose, say=log or (lambda line: print(line, flush=True)),
    )


def _settings_for(plan: _Plan, work, candidate: Candidate, weights_sha: str) -> dict[str, Any]:
    import keras

    return {
        "format": FORMAT,
        "candidate": candidate.name,
        "space": {k: d.to_dict() for k, d in plan.spaces[candidate.name].items()},
        "model": work.model_name,
        "data": work.data_name,
        "data_sha256": work.data_sha256,
        "initial_weights_sha256": weights_sha,
        "loss": work.loss_name,
        "monitor": work.monitor,
        "mode": "min" if work.minimise else "max",
        "epochs": plan.epochs,
        "batch_size": plan.batch_size if work.arrays else None,
        "tuning_seed": plan.seed,
        "backend": keras.backend.backend(),
    }


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [key for key in keys if stored.get(key) != wanted.get(key)]


def _open_studies(plan: _Plan, work) -> dict[str, Any]:
    """Checks every existing study against this command before creating
    anything, then creates the missing ones with their default trial."""
    import optuna

    from keras_optlab.lab.records import weights_fingerprint

    weights_sha = weights_fingerprint(work.template(plan.seed).get_weights())
    wanted = {c.name: _settings_for(plan, work, c, weights_sha) for c in plan.candidates}
    direction = "minimize" if work.minimise else "maximize"
    if plan.storage_url is None:
        storage = optuna.storages.InMemoryStorage()
        shown = "memory"
    else:
        if plan.out is not None and plan.storage_url == f"sqlite:///{plan.out / STORAGE_FILE}":
            plan.out.mkdir(parents=True, exist_ok=True)
        storage = open_storage(plan.storage_url, plan.heartbeat_interval)
        shown = redact(plan.storage_url)
    existing = _study_names(storage)
    for candidate in plan.candidates:
        name = f"{plan.study}/{candidate.name}"
        if name not in existing:
            continue
        loaded = optuna.load_study(study_name=name, storage=storage)
        stored = loaded.user_attrs.get(SETTINGS_ATTR)
        if not isinstance(stored, dict):
            raise UsageError(
                f"Study {name!r} in {shown} was not made by optlab tune; name another --study."
            )
        keys = _differences(stored, wanted[candidate.name])
        if keys:
            was = ", ".join(f"{k}={_short(stored.get(k))}" for k in keys)
            now = ", ".join(f"{k}={_short(wanted[candidate.name].get(k))}" for k in keys)
            raise UsageError(
                f"Study {name!r} in {shown} was made with {was}; this command has {now}. "
                "Use the study's settings, or name another --study."
            )
    studies = {}
    for candidate in plan.candidates:
        name = f"{plan.study}/{candidate.name}"
        created = optuna.create_study(
            study_name=name, storage=storage, direction=direction, load_if_exists=True,
            sampler=_sampler(plan), pruner=_pruner(plan),
        )
        if SETTINGS_ATTR not in created.user_attrs:
            created.set_user_attr(SETTINGS_ATTR, wanted[candidate.name])
            space_ = plan.spaces[candidate.name]
            defaults = {k: d.default for k, d in space_.items()}
            if all(d.contains(defaults[k]) for k, d in space_.items()):
                created.enqueue_trial(
                    _to_optuna(space_, defaults), user_attrs={"default": True}, skip_if_exists=True
                )
        studies[candidate.name] = created
    plan.storage_shown = shown
    plan.storage = storage
    return studies


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _sampler(plan: _Plan):
    import optuna

    return optuna.samplers.TPESampler(
        n_startup_trials=max(3, plan.trials // 4), constant_liar=True
    )


def _pruner(plan: _Plan):
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=max(2, plan.trials // 4), n_warmup_steps=max(1, plan.epochs // 4)
    )


class _Diverged(Exception):
    pass


class _Runner:
    """Runs the searches, then the evaluation runs, reporting progress."""

    def __init__(self, plan: _Plan, work, studies: Mapping[str, Any], started: float):
        self.plan = plan
        self.work = work
        self.studies = studies
        self.started = started
        self.seconds: dict[str, list[float]] = {}
        self.units_done = 0
        self.units: list[tuple[Candidate, str, int | None, int]] | None = None
        self.weights: dict[int, list] = {}

    # progress ---------------------------------------------------------
    def _finished(self, study) -> int:
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return len(study.get_trials(deepcopy=False, states=states))

    def _left(self) -> tuple[int, int]:
        trials_left = sum(max(0, self.plan.trials - self._finished(s)) for s in self.studies.values())
        runs_left = 0
        for name, study in self.studies.items():
            stored = _stored_runs(study)
            if self.units is not None:
                runs_left += sum(
                    1 for c, role, number, seed in self.units
                    if c.name == name and (role, number, seed) not in stored
                )
                continue
            # Before the best settings are known: the default and a tuned
            # run for each seed.
            for seed in self._eval_seeds():
                runs_left += ("default", None, seed) not in stored
                runs_left += not any(r == "tuned" and s == seed for r, _, s in stored)
        return trials_left, runs_left

    def _progress(self, what: str, seconds: float, kind: str) -> None:
        """Prints one line: what finished, what is left, and the time left
        (trials left at the mean trial time, seed runs at the mean time of a
        run of every epoch)."""
        self.seconds.setdefault(kind, []).append(seconds)
        self.units_done += 1
        if not self.plan.verbose:
            return
        trials_left, runs_left = self._left()
        trial_times = self.seconds.get("trial") or self.seconds.get("full") or [seconds]
        full_times = self.seconds.get("full") or trial_times
        estimate = trials_left * _mean(trial_times) + runs_left * _mean(full_times)
        eta = f"about {_duration(estimate)} to go" if trials_left + runs_left else "nothing left"
        self.plan.say(
            f"[tune] {what}; {self.units_done} done here, {trials_left} trial"
            f"{'' if trials_left == 1 else 's'} and {runs_left} seed run{'' if runs_left == 1 else 's'} "
            f"left, {eta}"
        )

    # runs -------------------------------------------------------------
    def _eval_seeds(self) -> list[int]:
        return [self.plan.seed + 1 + k for k in range(self.plan.seeds)]

    def _initial_weights(self, seed: int):
        if seed not in self.weights:
            self.weights[seed] = self.work.template(seed).get_weights()
        return self.weights[seed]

    def _train(self, candidate: Candidate, params, seed: int, on_epoch=None) -> RunRecord:
        from keras_optlab.lab import training

        return training.run(
            self.work, candidate, params, seed, self._initial_weights(seed),
            self.plan.epochs, self.plan.batch_size, self.plan.jit_compile,
            self.plan.steps_per_execution, 0, None, on_epoch,
        )

    def _objective(self, candidate: Candidate):
        import optuna

        space_ = self.plan.spaces[candidate.name]
        monitor = self.work.monitor

        def objective(trial) -> float:
            params = {name: _suggest(trial, name, d) for name, d in space_.items()}
            values: list[float] = []

            def on_epoch(epoch: int, logs: Mapping[str, float]) -> None:
                if monitor not in logs:
                    raise UsageError(
                        f"The metric {monitor!r} is not in the training logs "
                        f"({', '.join(sorted(logs))}); give another --metric."
                    )
                value = float(logs[monitor])
                if not math.isfinite(value):
                    raise _Diverged()
                values.append(value)
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            try:
                self._train(candidate, params, self.plan.seed, on_epoch)
            except _Diverged:
                trial.set_user_attr("diverged", True)
                raise optuna.TrialPruned() from None
            return float(values[best_index(values, self.work.minimise)])

        return objective

    def _search(self, candidate: Candidate) -> None:
        study = self.studies[candidate.name]
        objective = self._objective(candidate)
        while self._finished(study) < self.plan.trials:
            began = time.perf_counter()
            before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
            study.optimize(objective, n_trials=1, catch=())
            mine = [
                t for t in study.get_trials(deepcopy=False)
                if t.state.is_finished() and t.number not in before
            ]
            spent = time.perf_counter() - began
            self._progress(_trial_text(candidate.name, mine, self.work.monitor), spent, "trial")
            if mine and mine[-1].state.name == "COMPLETE":
                self.seconds.setdefault("full", []).append(spent)

    def _wait_for_running(self, study) -> None:
        import optuna

        announced = False
        while True:
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if not running:
                return
            if not announced and self.plan.verbose:
                self.plan.say(
                    f"[tune] {study.study_name}: waiting for {len(running)} trial(s) running elsewhere"
                )
                announced = True
            optuna.storages.fail_stale_trials(study)
            _fail_silent_trials(
                study, self.plan.storage, running, GRACE_INTERVALS * self.plan.heartbeat_interval
            )
            time.sleep(1.0)

    def run(self) -> TuneResults:
        for candidate in self.plan.candidates:
            self._search(candidate)
        units = []
        best: dict[str, tuple[int | None, dict[str, Any]]] = {}
        for candidate in self.plan.candidates:
            study = self.studies[candidate.name]
            self._wait_for_running(study)
            best[candidate.name] = _best_setting(study, candidate, self.plan.spaces[candidate.name])
            number = best[candidate.name][0]
            for seed in self._eval_seeds():
                units.append((candidate, "default", None, seed))
                if number is not None and not _is_default_trial(study, number):
                    units.append((candidate, "tuned", number, seed))
        self.units = units
        # Each process starts at its own place in the list, so that workers
        # sharing a storage meet rarely on the same run.
        offset = random.Random(os.getpid()).randrange(len(units)) if units else 0
        for candidate, role, number, seed in units[offset:] + units[:offset]:
            study = self.studies[candidate.name]
            if (role, number, seed) in _stored_runs(study):
                continue
            params = candidate.defaults() if role == "default" else best[candidate.name][1]
            began = time.perf_counter()
            record = self._train(candidate, params, seed)
            study.set_user_attr(_run_key(role, number, seed), record.to_dict())
            value = record.metric_summary(self.work.monitor, self.work.minimise)["best"]
            self._progress(
                f"{candidate.name} {role} seed {seed}: best {self.work.monitor} {value:.4g}",
                time.perf_counter() - began,
                "full",
            )
        return self._collect(best)

    def _collect(self, best) -> TuneResults:
        import keras

        outcomes = []
        for candidate in self.plan.candidates:
            study = self.studies[candidate.name]
            number, params = best[candidate.name]
            stored = _stored_runs(study)
            default_runs = [stored[("default", None, s)] for s in self._eval_seeds() if ("default", None, s) in stored]
            if number is not None and _is_default_trial(study, number):
                tuned_runs = default_runs
            else:
                tuned_runs = [stored[("tuned", number, s)] for s in self._eval_seeds() if ("tuned", number, s) in stored]
            outcomes.append(
                CandidateOutcome(
                    name=candidate.name,
                    space={k: d.to_dict() for k, d in self.plan.spaces[candidate.name].items()},
                    default_params=candidate.defaults(),
                    best_params=params,
                    best_trial=number,
                    trials=_trial_records(study),
                    default_runs=default_runs,
                    tuned_runs=tuned_runs,
                )
            )
        settings = {
            "model": self.work.model_name,
            "data": self.work.data_name,
            "loss": self.work.loss_name,
            "monitor": self.work.monitor,
            "mode": "min" if self.work.minimise else "max",
            "train_examples": self.work.train_examples,
            "validation_examples": self.work.validation_examples,
            "epochs": self.plan.epochs,
            "batch_size": self.plan.batch_size if self.work.arrays else None,
            "trials": self.plan.trials,
            "seeds": self.plan.seeds,
            "tuning_seed": self.plan.seed,
            "evaluation_seeds": self._eval_seeds(),
            "target": self.plan.target,
            "study": self.plan.study,
            "storage": self.plan.storage_shown,
            "sampler": "TPE (Optuna), first trial at the defaults",
            "pruner": (
                f"median (Optuna), after {max(2, self.plan.trials // 4)} trials and "
                f"{max(1, self.plan.epochs // 4)} epochs"
            ),
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "jit_compile": self.plan.jit_compile,
            "steps_per_execution": self.plan.steps_per_execution,
        }
        return TuneResults(candidates=outcomes, settings=settings)


def _fail_silent_trials(study, storage, running, grace_seconds: float) -> None:
    """Fails running trials that never sent a heartbeat and started more
    than `grace_seconds` ago: a process killed between creating a trial and
    its first heartbeat leaves one, and Optuna's stale-trial check only
    looks at trials that have a heartbeat."""
    import datetime

    import optuna

    engine = getattr(storage, "engine", None)
    if engine is None or not running:
        return
    import sqlalchemy

    try:
        with engine.connect() as connection:
            beating = {row[0] for row in connection.execute(
                sqlalchemy.text("SELECT trial_id FROM trial_heartbeats")
            )}
    except Exception:  # noqa: BLE001 - another schema: leave it to Optuna
        return
    now = datetime.datetime.now()
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial in running:
        started = trial.datetime_start
        if trial._trial_id in beating or started is None:
            continue
        if (now - started).total_seconds() <= grace_seconds:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another process failed it first
            continue
        if callback is not None:
            callback(study, study.get_trials(deepcopy=True)[trial.number])


def _run_key(role: str, number: int | None, seed: int) -> str:
    middle = "default" if role == "default" else f"tuned:{number}"
    return f"{RUN_ATTR_PREFIX}{middle}:seed={seed}"


def _stored_runs(study) -> dict[tuple[str, int | None, int], RunRecord]:
    out = {}
    for key, value in study.user_attrs.items():
        if not key.startswith(RUN_ATTR_PREFIX):
            continue
        parts = key[len(RUN_ATTR_PREFIX):].split(":")
        seed = int(parts[-1].removeprefix("seed="))
        if parts[0] == "default":
            out[("default", None, seed)] = RunRecord.from_dict(value)
        else:
            out[("tuned", int(parts[1]), seed)] = RunRecord.from_dict(value)
    return out


def _is_default_trial(study, number: int) -> bool:
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return bool(trial.user_attrs.get("default"))


def _best_setting(study, candidate: Candidate, space_) -> tuple[int | None, dict[str, Any]]:
    """The best finished trial (complete, or pruned by its best epoch:
    Optuna's own `best_trial` sees complete trials only) and its setting."""
    records = [t for t in _trial_records(study) if t.state in ("complete", "pruned") and t.values]
    minimise = study.direction.name == "MINIMIZE"
    complete = [t for t in records if t.state == "complete"] or records
    if not complete:
        return None, candidate.defaults()
    values = [t.best(minimise) for t in complete]
    chosen = complete[best_index(values, minimise)]
    if chosen.is_default:
        return chosen.number, candidate.defaults()
    return chosen.number, {**candidate.defaults(), **chosen.params}


def _trial_records(study) -> list[TrialRecord]:
    records = []
    for trial in study.get_trials(deepcopy=False):
        seconds = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        values = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        records.append(
            TrialRecord(
                number=trial.number,
                state=trial.state.name.lower(),
                params=_from_optuna(trial.params),
                values=[float(v) for v in values],
                seconds=seconds,
                diverged=bool(trial.user_attrs.get("diverged", False)),
                is_default=bool(trial.user_attrs.get("default", False)),
            )
        )
    return records


def _trial_text(name: str, trials, monitor: str) -> str:
    if not trials:
        return f"{name}: no new trial"
    trial = trials[-1]
    state = trial.state.name.lower()
    values = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
    if trial.user_attrs.get("diverged"):
        detail = f"diverged at epoch {len(values) + 1}"
    elif state == "pruned":
        detail = f"pruned after epoch {len(values)}"
    elif state == "complete":
        detail = f"best {monitor} {trial.value:.4g}"
    else:
        detail = state
    return f"{name} trial {trial.number}: {detail}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
