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
    "best_val_loss", "final_val_loss", "seconds_per_epoch",
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
    """

    optimizer: str
    seed: int
    learning_rate: float
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    initial_weights_sha256: str
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)

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
        """Best and final validation numbers and the time per epoch.

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
