"""The tune protocol's two phases, for one process: the searches, then the
evaluation runs (see `keras_optlab.lab.tuning` for the protocol), with a
progress line after each trial and run.

Several processes may share the studies: each finished trial and each
stored run is read back from the storage, so every process sees what the
others did; a process starts a trial only while its candidate lacks
finished ones, skips an evaluation run another process stored, and waits
for trials running elsewhere before it picks a best setting.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any, Mapping, Sequence

from keras_optlab.lab import claims, study as studies_
from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.records import CandidateOutcome, RunRecord, best_index
from keras_optlab.lab.tune_report import TuneResults

FORMAT = "keras_optlab.tune/1"


def wanted_settings(plan, work) -> dict[str, dict[str, Any]]:
    """What each candidate's study must have been made with."""
    import keras

    from keras_optlab.lab.records import weights_fingerprint

    weights_sha = weights_fingerprint(work.template(plan.run.seed).get_weights())
    # Test data is part of a study's settings only where given, so that a
    # study made without it reads as before; its stored runs carry no test
    # scores, and adding test data to it is refused.
    test = {} if work.test is None else {"test_sha256": work.test_sha256, "test_examples": work.test_examples}
    # Likewise the batch order, where it is not Keras' own (TensorFlow): a
    # study made before the order changed is refused rather than continued.
    order = {} if work.batch_order is None else {"batch_order": work.batch_order}
    return {
        candidate.name: {
            **test,
            **order,
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
            "epochs": plan.run.epochs,
            "batch_size": plan.run.batch_size if work.arrays else None,
            "tuning_seed": plan.run.seed,
            "backend": keras.backend.backend(),
        }
        for candidate in plan.candidates
    }


class _Diverged(Exception):
    pass


class Protocol:
    """Runs the searches, then the evaluation runs, reporting progress."""

    def __init__(self, plan, work, engine, studies: Mapping[str, Any], storage: Any):
        self.plan = plan
        self.work = work
        self.engine = engine
        self.studies = studies
        self.storage = storage
        self.seconds: dict[str, list[float]] = {}
        self.units_done = 0
        self.units: list[tuple[Candidate, str, int | None, int]] | None = None

    def _budget(self, candidate: Candidate) -> int:
        """Trials for `candidate`: none for one run at its defaults
        (`@default`)."""
        return 0 if candidate.untuned else self.plan.trials

    # progress ---------------------------------------------------------
    def _left(self) -> tuple[int, int]:
        trials_left = sum(
            max(0, self._budget(c) - studies_.finished(self.studies[c.name]))
            for c in self.plan.candidates
        )
        runs_left = 0
        for name, study in self.studies.items():
            stored = studies_.stored_runs(study)
            if self.units is not None:
                runs_left += sum(
                    1 for c, role, number, seed in self.units
                    if c.name == name and (role, number, seed) not in stored
                )
                continue
            # Before the best settings are known: the default and a tuned
            # run for each seed.
            for seed in self.plan.evaluation_seeds:
                runs_left += ("default", None, seed) not in stored
                runs_left += not any(r == "tuned" and s == seed for r, _, s in stored)
        return trials_left, runs_left

    def _progress(self, what: str, seconds: float, kind: str) -> None:
        """Prints one line: what finished, what is left, and the time left
        (trials left at the mean trial time, seed runs at the mean time of a
        run of every epoch)."""
        self.seconds.setdefault(kind, []).append(seconds)
        self.units_done += 1
        if not self.plan.run.verbose:
            return
        trials_left, runs_left = self._left()
        trial_times = self.seconds.get("trial") or self.seconds.get("full") or [seconds]
        full_times = self.seconds.get("full") or trial_times
        estimate = trials_left * _mean(trial_times) + runs_left * _mean(full_times)
        eta = f"about {_duration(estimate)} to go" if trials_left + runs_left else "nothing left"
        self.plan.run.say(
            f"[tune] {what}; {self.units_done} done here, {trials_left} trial"
            f"{'' if trials_left == 1 else 's'} and {runs_left} seed run{'' if runs_left == 1 else 's'} "
            f"left, {eta}"
        )

    # runs -------------------------------------------------------------
    def _train(self, candidate: Candidate, params, seed: int, on_epoch=None, test=False) -> RunRecord:
        return self.engine.run(candidate, params, seed, on_epoch=on_epoch, test=test)

    def _objective(self, candidate: Candidate):
        import optuna

        space_ = self.plan.spaces[candidate.name]
        monitor = self.work.monitor

        def objective(trial) -> float:
            params = {name: studies_.suggest(trial, name, d) for name, d in space_.items()}
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
                self._train(candidate, params, self.plan.run.seed, on_epoch)
            except _Diverged:
                trial.set_user_attr("diverged", True)
                raise optuna.TrialPruned() from None
            return float(values[best_index(values, self.work.minimise)])

        return objective

    def _search(self, candidate: Candidate) -> None:
        study = self.studies[candidate.name]
        objective = self._objective(candidate)
        while studies_.finished(study) < self._budget(candidate):
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
            if not announced and self.plan.run.verbose:
                self.plan.run.say(
                    f"[tune] {study.study_name}: waiting for {len(running)} trial(s) running elsewhere"
                )
                announced = True
            optuna.storages.fail_stale_trials(study)
            studies_.fail_silent_trials(
                study, self.storage, running, studies_.GRACE_INTERVALS * self.plan.heartbeat_interval
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
            best[candidate.name] = studies_.best_setting(study, candidate, self.plan.spaces[candidate.name])
            number = best[candidate.name][0]
            for seed in self.plan.evaluation_seeds:
                units.append((candidate, "default", None, seed))
                if number is not None and not studies_.is_default_trial(study, number):
                    units.append((candidate, "tuned", number, seed))
        self.units = units
        self._evaluate(units, best)
        return self._collect(best)

    def _evaluate(self, units, best) -> None:
        """Trains every evaluation run not stored yet, each claimed first
        (`keras_optlab.lab.claims`), then waits for those other workers
        hold, so that every worker's report has every run."""
        import optuna

        evaluations = claims.open_evaluations(self.storage, self.plan.study)
        grace = studies_.GRACE_INTERVALS * self.plan.heartbeat_interval
        # Each process starts at its own place in the list, so that workers
        # sharing a storage meet rarely on the same run.
        offset = random.Random(os.getpid()).randrange(len(units)) if units else 0
        pending = units[offset:] + units[:offset]
        announced = False
        while True:
            pending = [
                u for u in pending
                if (u[1], u[2], u[3]) not in studies_.stored_runs(self.studies[u[0].name])
            ]
            if not pending:
                return
            progressed = False
            for candidate, role, number, seed in pending:
                key = f"{candidate.name}|{studies_.run_key(role, number, seed)}"
                trial_id = claims.claim(evaluations, self.storage, key)
                if trial_id is None:
                    continue
                progressed = True
                params = candidate.defaults() if role == "default" else best[candidate.name][1]
                self._evaluation_run(candidate, role, number, seed, params, evaluations, trial_id)
            if progressed:
                continue
            if not announced and self.plan.run.verbose:
                self.plan.run.say(f"[tune] waiting for {len(pending)} seed run(s) running elsewhere")
                announced = True
            optuna.storages.fail_stale_trials(evaluations)
            studies_.fail_silent_trials(evaluations, self.storage, claims.running(evaluations), grace)
            time.sleep(1.0)

    def _evaluation_run(self, candidate, role, number, seed, params, evaluations, trial_id) -> None:
        study = self.studies[candidate.name]
        began = time.perf_counter()
        value = None
        try:
            with claims.heartbeat(self.storage, trial_id, self.plan.heartbeat_interval):
                # Scored on the test data only here, after the choice of
                # `params`: no trial and no choice reads a test score.
                record = self._train(candidate, params, seed, test=True)
            study.set_user_attr(studies_.run_key(role, number, seed), record.to_dict())
            value = record.metric_summary(self.work.monitor, self.work.minimise)["best"]
        finally:
            claims.finish(self.storage, trial_id, value)
        self._progress(
            f"{candidate.name} {role} seed {seed}: best {self.work.monitor} {value:.4g}",
            time.perf_counter() - began,
            "full",
        )

    def _collect(self, best) -> TuneResults:
        outcomes = []
        for candidate in self.plan.candidates:
            study = self.studies[candidate.name]
            number, params = best[candidate.name]
            stored = studies_.stored_runs(study)
            default_runs = [stored[("default", None, s)] for s in self.plan.evaluation_seeds if ("default", None, s) in stored]
            if candidate.untuned or (number is not None and studies_.is_default_trial(study, number)):
                tuned_runs = default_runs
            else:
                tuned_runs = [stored[("tuned", number, s)] for s in self.plan.evaluation_seeds if ("tuned", number, s) in stored]
            outcomes.append(
                CandidateOutcome(
                    name=candidate.name,
                    space={k: d.to_dict() for k, d in self.plan.spaces[candidate.name].items()},
                    default_params=candidate.defaults(),
                    best_params=params,
                    best_trial=number,
                    trials=studies_.trial_records(study),
                    default_runs=default_runs,
                    tuned_runs=tuned_runs,
                )
            )
        from keras_optlab.lab import settings as shared

        run = self.plan.run
        settings = {
            **shared.describe(self.work, run, run.batch_size if self.work.arrays else None, self.engine),
            "trials": self.plan.trials,
            "seeds": self.plan.seeds,
            "tuning_seed": run.seed,
            "evaluation_seeds": self.plan.evaluation_seeds,
            "target": self.plan.target,
            "study": self.plan.study,
            "sampler": "TPE (Optuna), first trial at the defaults",
            "pruner": (
                f"median (Optuna), after {max(2, self.plan.trials // 4)} trials and "
                f"{max(1, run.epochs // 4)} epochs"
            ),
        }
        return TuneResults(candidates=outcomes, settings=settings)


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
