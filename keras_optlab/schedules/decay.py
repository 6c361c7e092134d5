"""The classic decays Keras lacks: step decay and capped exponential decay.

Time-based decay, $\eta_0 / (1 + k t)$, is Keras' own
`keras.optimizers.schedules.InverseTimeDecay`; the schedule registry hands
it out as `"time_based"` rather than writing it again.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.schedules import _steps


@keras.saving.register_keras_serializable(package="keras_optlab")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    r"""Multiplies the learning rate by `factor` every `step_size` steps or
    epochs.

    $$
    \eta(t) = \eta_0 \,\gamma^{\lfloor t / (S\,E) \rfloor}
    $$

    Symbols map to arguments: $\eta_0$ is `initial_learning_rate`, $\gamma$
    `factor`, $S$ `step_size`, $E$ `steps_per_epoch` (1 when `None`: then
    `step_size` counts optimizer steps). With `steps_per_epoch` set,
    `StepDecay(0.001, factor=0.1, step_size=10, steps_per_epoch=N)` is the
    textbook per-epoch rule `0.001 * 0.1 ** (epoch // 10)` evaluated at
    `epoch = step // N`, but it runs inside the compiled step instead of in
    a `LearningRateScheduler` callback.

    Reference: the "step" schedule of Krizhevsky, Sutskever & Hinton,
    "ImageNet Classification with Deep Convolutional Neural Networks", NIPS
    2012, and of He et al., "Deep Residual Learning for Image Recognition",
    2015, arXiv:1512.03385.

    Departures: none. At very large steps the rate underflows to 0; it never
    becomes NaN.

    Args:
        initial_learning_rate: $\eta_0$, >= 0. Defaults to `0.001`.
        factor: $\gamma$, in (0, 1]. Defaults to `0.1`.
        step_size: $S$, a positive integer: steps (or epochs, with
            `steps_per_epoch`) between two drops. Defaults to `10`.
        steps_per_epoch: $E$, a positive integer, or `None` for
            `step_size` in steps. Defaults to `None`.
    """

    def __init__(
        self,
        initial_learning_rate: float = 0.001,
        factor: float = 0.1,
        step_size: int = 10,
        steps_per_epoch: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.initial_learning_rate = _validation.check_float(
            "initial_learning_rate", initial_learning_rate, low=0.0
        )
        self.factor = _validation.check_float("factor", factor, low=0.0, high=1.0, low_open=True)
        self.step_size = _validation.check_int("step_size", step_size, low=1)
        self.steps_per_epoch = (
            None
            if steps_per_epoch is None
            else _validation.check_int("steps_per_epoch", steps_per_epoch, low=1)
        )

    def __call__(self, step):
        step = _steps.as_float_step(step)
        period = float(self.step_size * (self.steps_per_epoch or 1))
        drops = ops.floor(step / period)
        return self.initial_learning_rate * _steps.power_of_constant(self.factor, drops)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "factor": self.factor,
            "step_size": self.step_size,
            "steps_per_epoch": self.steps_per_epoch,
        }


@keras.saving.register_keras_serializable(package="keras_optlab")
class CappedExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    r"""Exponential decay that holds the initial rate first and never exceeds it.

    $$
    \eta(t) = \eta_0 \min\!\left(1,\; d^{\,p(t)}\right), \qquad
    p(t) = \frac{t - H}{T} \quad(\text{or } \lfloor (t - H)/T \rfloor
    \text{ with `staircase`})
    $$

    Symbols map to arguments: $\eta_0$ is `initial_learning_rate`, $d$
    `decay_rate`, $T$ `decay_steps`, $H$ `hold_steps`. With $H = 0$ this is
    the textbook $\eta_0 \min(1, d^t)$; with $H > 0$ the cap keeps the rate
    at $\eta_0$ for the first $H$ steps, where $d^{p}$ would exceed 1.

    Departures: the exponent is clamped to $[0, \infty)$ before the power
    is taken, which the cap makes invisible but which keeps $d^{p}$ finite
    for any step (no overflow, no NaN).

    Args:
        initial_learning_rate: $\eta_0$, >= 0. Defaults to `0.001`.
        decay_rate: $d$, in (0, 1]. Defaults to `0.96`.
        decay_steps: $T$, steps per unit of the exponent, a positive integer.
            Defaults to `1`.
        hold_steps: $H$, steps at $\eta_0$ before the decay starts, an
            integer >= 0. Defaults to `0`.
        staircase: Take the floor of the exponent (decay in discrete jumps).
            Defaults to `False`.
    """

    def __init__(
        self,
        initial_learning_rate: float = 0.001,
        decay_rate: float = 0.96,
        decay_steps: int = 1,
        hold_steps: int = 0,
        staircase: bool = False,
    ) -> None:
        super().__init__()
        self.initial_learning_rate = _validation.check_float(
            "initial_learning_rate", initial_learning_rate, low=0.0
        )
        self.decay_rate = _validation.check_float(
            "decay_rate", decay_rate, low=0.0, high=1.0, low_open=True
        )
        self.decay_steps = _validation.check_int("decay_steps", decay_steps, low=1)
        self.hold_steps = _validation.check_int("hold_steps", hold_steps, low=0)
        self.staircase = _validation.check_bool("staircase", staircase)

    def __call__(self, step):
        step = _steps.as_float_step(step)
        exponent = (step - float(self.hold_steps)) / float(self.decay_steps)
        if self.staircase:  # A Python bool from the config, not a tensor.
            exponent = ops.floor(exponent)
        exponent = ops.maximum(exponent, 0.0)
        decayed = _steps.power_of_constant(self.decay_rate, exponent)
        return self.initial_learning_rate * ops.minimum(1.0, decayed)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
            "hold_steps": self.hold_steps,
            "staircase": self.staircase,
        }
