"""The improvement test shared by callbacks that watch a metric.

Same meaning as Keras' own monitor callbacks (`EarlyStopping`,
`ReduceLROnPlateau`): `mode="auto"` minimises names ending in `loss` (and
`error`, `mse`, `mae` and the other losses and errors of `MINIMISED_SUFFIXES`)
and maximises the others; an improvement must beat the
best value by more than `min_delta`. Unlike Keras, an unknown `mode` is an
error, not a warning.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

from keras_optlab import _validation

# Metric names that are better low: losses and errors. The lab reads the
# same list to tell which way a tuned metric goes.
MINIMISED_SUFFIXES = (
    "loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge",
    "divergence", "poisson", "logcosh",
)


def is_minimised(metric: str) -> bool:
    """Whether a logged metric (`val_` prefix or not) is better low."""
    return metric.removeprefix("val_").lower().endswith(MINIMISED_SUFFIXES)


class Monitor:
    """Tracks the best value of one logged metric and epochs without gain.

    Args:
        monitor: Key in the epoch logs, such as `"val_loss"`.
        mode: `"min"`, `"max"` or `"auto"` (from the name).
        min_delta: Smallest change that counts as an improvement, >= 0.
        owner: Name used in the warning when the metric is missing.
    """

    def __init__(self, monitor: str, mode: str, min_delta: float, owner: str) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                "Argument `monitor` must be a non-empty string. "
                f"Received: monitor={monitor!r}"
            )
        self.monitor = monitor
        self.mode = _validation.check_choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = _validation.check_float("min_delta", min_delta, low=0.0)
        self.owner = owner
        if mode == "auto":
            self.minimise = is_minimised(monitor)
        else:
            self.minimise = mode == "min"
        self._warned = False
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.minimise else -math.inf
        self.wait = 0

    def value(self, logs: Mapping[str, Any] | None) -> float | None:
        """The monitored value in `logs`; warns once and returns None if absent."""
        logs = logs or {}
        if self.monitor not in logs:
            if not self._warned:
                warnings.warn(
                    f"{self.owner} is conditioned on metric `{self.monitor}` "
                    "which is not available. Available metrics are: "
                    f"{', '.join(sorted(logs))}.",
                    stacklevel=3,
                )
                self._warned = True
            return None
        return float(logs[self.monitor])

    def is_improvement(self, current: float) -> bool:
        if self.minimise:
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def update(self, current: float) -> bool:
        """Records `current`; returns whether it improved on the best."""
        if self.is_improvement(current):
            self.best = current
            self.wait = 0
            return True
        self.wait += 1
        return False
