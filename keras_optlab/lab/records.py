"""What the lab measures, as plain records: one training run, and a set of
runs with their settings. Nothing here draws or writes files, so that the
modules that do (`plots`, `report`, `tune_report`) and the modules that run
training (`runs`, `tune`) all import this one, and none of them each other
in a circle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
from typing import Any, Sequence

import numpy as np

SUMMARY_KEYS = (
    "best_val_accuracy", "best_epoch", "final_val_accuracy",
    "best_val_loss", "final_val_loss", "test_accuracy", "test_loss", "seconds_per_epoch",
)


def weights_fingerprint(weights: Sequence[np.ndarray]) -> str:
    """SHA-256 of the weights' shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for array in weights:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def finite_or_none(value: float | None) -> float | None:
    """`value` if it is a finite number, else `None` (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def best_index(values: Sequence[float], minimise: bool) -> int:
    """Index of the best finite value (the first if tied); 0 if none is finite."""
    array = np.asarray(values, dtype=float)
    clean = np.where(np.isfinite(array), array, np.inf if minimise else -np.inf)
    return int(np.argmin(clean) if minimise else np.argmax(clean))


def first_reaching(values: Sequence[float], target: float, minimise: bool) -> int | None:
    """1-based epoch at whose end `values` first reached `target` (at or
    below it when minimising, at or above otherwise); `None` if never."""
    for index, value in enumerate(values):
        if math.isfinite(value) and (value <= target if minimise else value >= target):
            return index + 1
    return None


@dataclasses.dataclass
class RunRecord:
    """One candidate trained with one seed.

    Attributes:
        optimizer: The candidate: an optimizer's registry name, or a name
            with a schedule and callbacks such as `adam+step`.
        seed: The seed of the initial weights and of the batch order.
        learning_rate: The initial (or peak) learning rate it was built with.
        history: Per-epoch lists: `loss`, `val_loss`, the metrics (such as
            `accuracy`, `val_accuracy`), `learning_rate` (the effective rate
            at the end of the epoch) and, for optimizers that switch method,
            `optimizer_phase`.
        epoch_seconds: Wall time of each epoch, validation included.
        initial_weights_sha256: Fingerprint of the weights the model held
            when training began.
        hyperparameters: Every tuned or tunable value it was built with,
            by name (empty for a plain `compare` run).
        test: The trained model's scores on the test data, keyed as the
            validation logs with `test_` for `val_` (`test_loss`,
            `test_accuracy`); empty where the run was not scored on test
            data.
    """

    optimizer: str
    seed: int
    learning_rate: float
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    initial_weights_sha256: str
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    test: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history.get("val_loss") or self.history.get("loss") or [])

    @property
    def switch_epochs(self) -> list[int]:
        """1-based epochs at whose end the optimizer's phase had changed."""
        phases = self.history.get("optimizer_phase")
        if not phases:
            return []
        previous = [0] + list(phases[:-1])
        return [i + 1 for i, (a, b) in enumerate(zip(previous, phases)) if a != b]

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time without the first epoch, which also pays for
        tracing and compiling."""
        timed = self.epoch_seconds[1:] or self.epoch_seconds
        return float(statistics.median(timed)) if timed else math.nan

    def summary(self) -> dict[str, float]:
        """Best and final validation numbers, the test scores where the run
        has them, and the time per epoch.

        The best epoch is the one of highest validation accuracy (the first
        if tied); `best_val_loss` is the lowest validation loss of any
        epoch. Keys whose history is missing (no accuracy for a regression)
        are left out.
        """
        out: dict[str, float] = {}
        if "val_accuracy" in self.history:
            accuracy = np.asarray(self.history["val_accuracy"], dtype=float)
            best = best_index(accuracy, minimise=False)
            out.update(
                best_val_accuracy=float(np.nan_to_num(accuracy[best], nan=-np.inf)),
                best_epoch=best + 1,
                final_val_accuracy=float(accuracy[-1]),
            )
        if "val_loss" in self.history:
            loss = np.asarray(self.history["val_loss"], dtype=float)
            out.update(
                best_val_loss=float(np.where(np.isfinite(loss), loss, np.inf).min()),
                final_val_loss=float(loss[-1]),
            )
        for key in ("test_accuracy", "test_loss"):
            if key in self.test:
                out[key] = self.test[key]
        out["seconds_per_epoch"] = self.seconds_per_epoch
        return out

    def metric_summary(
        self, monitor: str, minimise: bool, target: float | None = None
    ) -> dict[str, float | int | None]:
        """Best and final value of the monitored metric, epoch of the best,
        seconds per epoch, and the epochs (and seconds: epochs times the
        median epoch time) to reach `target`, `None` if never reached."""
        values = np.asarray(self.history[monitor], dtype=float)
        best = best_index(values, minimise)
        reached = None if target is None else first_reaching(values, target, minimise)
        return {
            "best": float(values[best]),
            "best_epoch": best + 1,
            "final": float(values[-1]),
            "seconds_per_epoch": self.seconds_per_epoch,
            "epochs_to_target": reached,
            "seconds_to_target": None if reached is None else reached * self.seconds_per_epoch,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "seed": self.seed,
            "learning_rate": self.learning_rate,
            "hyperparameters": self.hyperparameters,
            "initial_weights_sha256": self.initial_weights_sha256,
            "switch_epochs": self.switch_epochs,
            "summary": {k: finite_or_none(v) for k, v in self.summary().items()},
            "epoch_seconds": self.epoch_seconds,
            "test": {k: finite_or_none(v) for k, v in self.test.items()},
            "history": {
                key: [finite_or_none(float(v)) for v in values]
                for key, values in self.history.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        """The record `to_dict` wrote (a diverged `null` becomes NaN)."""
        return cls(
            optimizer=data["optimizer"],
            seed=int(data["seed"]),
            learning_rate=float(data["learning_rate"]),
            history={
                key: [math.nan if v is None else float(v) for v in values]
                for key, values in data["history"].items()
            },
            epoch_seconds=[float(v) for v in data["epoch_seconds"]],
            initial_weights_sha256=data["initial_weights_sha256"],
            hyperparameters=dict(data.get("hyperparameters", {})),
            test={k: math.nan if v is None else float(v) for k, v in data.get("test", {}).items()},
        )


@dataclasses.dataclass
class Comparison:
    """Runs of several candidates on one workload.

    Attributes:
        runs: One `RunRecord` per candidate and seed, in the order run.
        settings: Workload, epochs, batch size, seeds, backend and the
            other choices the runs share.
        wall_seconds: Wall time of the whole comparison.
    """

    runs: list[RunRecord]
    settings: dict[str, Any]
    wall_seconds: float = 0.0

    @property
    def optimizers(self) -> list[str]:
        """Candidate names in the order first run."""
        return list(dict.fromkeys(run.optimizer for run in self.runs))

    def runs_of(self, optimizer: str) -> list[RunRecord]:
        return [run for run in self.runs if run.optimizer == optimizer]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per candidate and summary key: `mean` and `std` (population
        standard deviation, 0 for one seed) over seeds."""
        table = {}
        for name in self.optimizers:
            per_run = [run.summary() for run in self.runs_of(name)]
            table[name] = {}
            for key in SUMMARY_KEYS:
                if key not in per_run[0]:
                    continue
                values = np.asarray([s[key] for s in per_run], dtype=float)
                table[name][key] = {"mean": float(values.mean()), "std": float(values.std())}
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "keras_optlab.compare/1",
            "settings": self.settings,
            "wall_seconds": self.wall_seconds,
            "summary": self.summary(),
            "runs": [run.to_dict() for run in self.runs],
        }


@dataclasses.dataclass
class TrialRecord:
    """One trial of a tuning study.

    Attributes:
        number: Optuna's trial number within the candidate's study.
        state: `"complete"`, `"pruned"`, `"fail"`, `"running"` or `"waiting"`.
        params: The hyperparameters, by the candidate's names (real values).
        values: The monitored validation metric at the end of each epoch run.
        seconds: Wall time of the trial (`None` while unfinished).
        diverged: Whether it stopped on a non-finite metric.
        is_default: Whether it is the candidate's untuned setting.
    """

    number: int
    state: str
    params: dict[str, Any]
    values: list[float]
    seconds: float | None
    diverged: bool = False
    is_default: bool = False

    def best(self, minimise: bool) -> float:
        """Best monitored value of any epoch run (NaN if none)."""
        if not self.values:
            return math.nan
        return float(self.values[best_index(self.values, minimise)])

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["values"] = [finite_or_none(v) for v in self.values]
        return data


@dataclasses.dataclass
class CandidateOutcome:
    """A candidate's study: its trials, and its default and tuned settings
    retrained over the evaluation seeds.

    Attributes:
        name: The candidate.
        space: The search space: per hyperparameter, its `to_dict()`.
        default_params: The untuned setting.
        best_params: The best trial's setting (`default_params` if the
            default trial was best).
        best_trial: The best trial's number, or `None` before any finished.
        trials: Every trial of the study.
        default_runs: The default setting, one run per evaluation seed.
        tuned_runs: The best setting, one run per evaluation seed.
    """

    name: str
    space: dict[str, dict[str, Any]]
    default_params: dict[str, Any]
    best_params: dict[str, Any]
    best_trial: int | None
    trials: list[TrialRecord]
    default_runs: list[RunRecord]
    tuned_runs: list[RunRecord]

    def count(self, state: str) -> int:
        return sum(trial.state == state for trial in self.trials)

    def tuning_cost(self) -> dict[str, float]:
        """What the search cost: its finished trials (complete, pruned or
        failed) and their summed wall time in seconds, whichever process
        ran them. Zero for a candidate run at its defaults (`@default`)."""
        finished = [t for t in self.trials if t.state in ("complete", "pruned", "fail")]
        return {
            "trials": len(finished),
            "trial_seconds": float(sum(t.seconds for t in finished if t.seconds is not None)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "space": self.space,
            "default_params": self.default_params,
            "best_params": self.best_params,
            "best_trial": self.best_trial,
            "trials": [trial.to_dict() for trial in self.trials],
            "default_runs": [run.to_dict() for run in self.default_runs],
            "tuned_runs": [run.to_dict() for run in self.tuned_runs],
        }


@dataclasses.dataclass
class TuneRecords:
    """Everything a tuning study measured, one `CandidateOutcome` each.

    Attributes:
        candidates: In the order asked for.
        settings: Workload, budget, seeds, storage and the other choices.
        wall_seconds: Wall time of this process's work.
    """

    candidates: list[CandidateOutcome]
    settings: dict[str, Any]
    wall_seconds: float = 0.0

    @property
    def monitor(self) -> str:
        return self.settings["monitor"]

    @property
    def minimise(self) -> bool:
        return self.settings["mode"] == "min"

    def candidate(self, name: str) -> CandidateOutcome:
        return next(c for c in self.candidates if c.name == name)

    @property
    def test_metric(self) -> str | None:
        """The test score of the monitored metric (`test_accuracy` for
        `val_accuracy`), or `None` where some evaluation run has none (the
        workload had no test data)."""
        if not self.monitor.startswith("val_"):
            return None
        key = "test_" + self.monitor[len("val_"):]
        runs = [r for c in self.candidates for r in (*c.tuned_runs, *c.default_runs)]
        return key if runs and all(key in r.test for r in runs) else None

    def _values(self, runs: Sequence[RunRecord], on: str) -> list[float]:
        """Per run: its best monitored validation value, or its test score."""
        if on == "test":
            return [r.test[self.test_metric] for r in runs]
        return [r.metric_summary(self.monitor, self.minimise)["best"] for r in runs]

    def target(self) -> float | None:
        """The target of "epochs to reach": the one given, or else the
        worst candidate's tuned mean best value (so that every candidate
        reaches it on average)."""
        if self.settings.get("target") is not None:
            return float(self.settings["target"])
        means = []
        for outcome in self.candidates:
            values = [run.metric_summary(self.monitor, self.minimise)["best"] for run in outcome.tuned_runs]
            if values and all(math.isfinite(v) for v in values):
                means.append(float(np.mean(values)))
        if not means:
            return None
        return max(means) if self.minimise else min(means)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per candidate: mean and 95 % confidence interval over seeds of
        the best and final monitored value (tuned, and default), the gain
        of tuning (tuned − default per seed, paired by seed; for a minimised
        metric default − tuned, so a positive gain is an improvement),
        seconds per epoch, epochs and seconds to the target (over the seeds
        that reached it), trial counts, and the search's cost (its trials
        and their summed seconds)."""
        from keras_optlab.lab import stats

        target = self.target()
        table = {}
        for outcome in self.candidates:
            tuned = [r.metric_summary(self.monitor, self.minimise, target) for r in outcome.tuned_runs]
            default = [r.metric_summary(self.monitor, self.minimise, target) for r in outcome.default_runs]
            entry: dict[str, Any] = {
                "best_params": outcome.best_params,
                "trials": {s: outcome.count(s) for s in ("complete", "pruned", "fail")},
                "tuning_cost": outcome.tuning_cost(),
            }
            for label, rows in (("tuned", tuned), ("default", default)):
                entry[f"{label}_best"] = stats.mean_interval([r["best"] for r in rows]).to_dict()
                entry[f"{label}_final"] = stats.mean_interval([r["final"] for r in rows]).to_dict()
            if self.test_metric is not None:
                for label, runs in (("tuned", outcome.tuned_runs), ("default", outcome.default_runs)):
                    entry[f"{label}_test"] = stats.mean_interval(self._values(runs, "test")).to_dict()
            by_seed_default = {r.seed: s["best"] for r, s in zip(outcome.default_runs, default)}
            sign = -1.0 if self.minimise else 1.0
            gains = [
                sign * (s["best"] - by_seed_default[r.seed])
                for r, s in zip(outcome.tuned_runs, tuned) if r.seed in by_seed_default
            ]
            entry["gain"] = stats.mean_interval(gains).to_dict()
            entry["seconds_per_epoch"] = stats.mean_interval([r["seconds_per_epoch"] for r in tuned]).to_dict()
            reached = [r for r in tuned if r["epochs_to_target"] is not None]
            entry["target"] = target
            entry["reached_target"] = f"{len(reached)}/{len(tuned)}"
            entry["epochs_to_target"] = stats.mean_interval([r["epochs_to_target"] for r in reached]).to_dict()
            entry["seconds_to_target"] = stats.mean_interval([r["seconds_to_target"] for r in reached]).to_dict()
            table[outcome.name] = entry
        return table

    def pairwise(self, on: str = "validation") -> dict[str, dict[str, Any]]:
        """Welch's t-test (`keras_optlab.lab.stats`) between every two
        candidates' tuned settings over seeds; keys `"a|b"`. Empty with
        fewer than 2 seeds, or on test data that the runs were not scored on.

        Args:
            on: `"validation"`: the best validation values (the data that
                chose the settings); `"test"`: the test scores.
        """
        from keras_optlab.lab import stats

        if on not in ("validation", "test"):
            raise ValueError(f"Argument `on` must be 'validation' or 'test'. Received: on={on!r}")
        if on == "test" and self.test_metric is None:
            return {}
        out = {}
        values = {c.name: self._values(c.tuned_runs, on) for c in self.candidates}
        names = list(values)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if len(values[a]) < 2 or len(values[b]) < 2:
                    continue
                if not all(map(math.isfinite, values[a] + values[b])):
                    continue
                out[f"{a}|{b}"] = stats.welch_test(values[a], values[b]).to_dict()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "keras_optlab.tune/1",
            "settings": self.settings,
            "wall_seconds": self.wall_seconds,
            "summary": self.summary(),
            "pairwise": self.pairwise(),
            "test_metric": self.test_metric,
            "pairwise_test": self.pairwise("test"),
            "candidates": [c.to_dict() for c in self.candidates],
        }
