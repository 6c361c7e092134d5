r"""The classic decays Keras lacks: step decay and capped exponential decay.

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
from keras_optlab.schedules._base import NamedSchedule


@keras.saving.register_keras_serializable(package="keras_optlab")
class StepDecay(NamedSchedule):
    r"""Multiplies the learning rate by `decay_rate` every `decay_steps` steps
    or epochs.

    $$
    \eta(t) = \eta_0 \,\gamma^{\lfloor t / (S\,E) \rfloor}
    $$

    Symbols map to arguments: $\eta_0$ is `initial_learning_rate`, $\gamma$
    `decay_rate`, $S$ `decay_steps`, $E$ `steps_per_epoch` (1 when `None`:
    then `decay_steps` counts optimizer steps). The arguments have the names
    and order of Keras' `ExponentialDecay`: `StepDecay(lr, S, gamma)` is
    `ExponentialDecay(lr, S, gamma, staircase=True)` when `steps_per_epoch`
    is `None`. With `steps_per_epoch` set,
    `StepDecay(0.001, decay_steps=10, decay_rate=0.1, steps_per_epoch=N)` is
    the textbook per-epoch rule `0.001 * 0.1 ** (epoch // 10)` evaluated at
    `epoch = step // N`, but it runs inside the compiled step instead of in
    a `LearningRateScheduler` callback.

    Reference: the "step" schedule of Krizhevsky, Sutskever & Hinton,
    "ImageNet Classification with Deep Convolutional Neural Networks", NIPS
    2012, and of He et al., "Deep Residual Learning for Image Recognition",
    2015, arXiv:1512.03385.

    Departures: none. At very large steps the rate underflows to 0; it never
    becomes NaN. The former spellings `factor` (for `decay_rate`) and
    `step_size` (for `decay_steps`) and the former positional order
    `(initial_learning_rate, factor, step_size)` still work, with a
    `DeprecationWarning`; saved configs use the new names, and configs saved
    with the old ones still load.

    Example:

    ```python
    from keras_optlab.schedules import StepDecay

    schedule = StepDecay(0.1, decay_steps=100, decay_rate=0.5)
    float(schedule(250))  # 0.1 * 0.5 ** 2 = 0.025
    ```

    Args:
        initial_learning_rate: $\eta_0$, >= 0. Defaults to `0.001`.
        decay_steps: $S$, a positive integer: steps (or epochs, with
            `steps_per_epoch`) between two drops. Defaults to `10`.
        decay_rate: $\gamma$, in (0, 1]. Defaults to `0.1`.
        steps_per_epoch: $E$, a positive integer, or `None` for
            `decay_steps` in steps. Defaults to `None`.
        name: Name of the schedule's operations. Defaults to `"StepDecay"`.
    """

    _RENAMED = {"factor": "decay_rate", "step_size": "decay_steps"}

    def __init__(
        self,
        initial_learning_rate: float = 0.001,
        decay_steps: int = 10,
        decay_rate: float = 0.1,
        steps_per_epoch: Optional[int] = None,
        name: str = "StepDecay",
        **deprecated,
    ) -> None:
        super().__init__(name)
        renamed = _validation.renamed_arguments("StepDecay", deprecated, self._RENAMED)
        decay_steps = renamed.get("decay_steps", decay_steps)
        decay_rate = renamed.get("decay_rate", decay_rate)
        decay_steps, decay_rate = _validation.swapped_decay_order("StepDecay", decay_steps, decay_rate)
        self.initial_learning_rate = _validation.check_float(
            "initial_learning_rate", initial_learning_rate, low=0.0
        )
        self.decay_steps = _validation.check_int("decay_steps", decay_steps, low=1)
        self.decay_rate = _validation.check_float(
            "decay_rate", decay_rate, low=0.0, high=1.0, low_open=True
        )
        self.steps_per_epoch = (
            None
            if steps_per_epoch is None
            else _validation.check_int("steps_per_epoch", steps_per_epoch, low=1)
        )

    def rate(self, step):
        step = _steps.as_float_step(step)
        # In the graph: the lab may hold `decay_steps` in a variable.
        period = ops.cast(self.decay_steps, "float32") * float(self.steps_per_epoch or 1)
        drops = ops.floor(step / period)
        return self.initial_learning_rate * _steps.power_of_constant(self.decay_rate, drops)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> "StepDecay":
        # Configs saved before the rename load silently, under the new names.
        config = {cls._RENAMED.get(key, key): value for key, value in config.items()}
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_optlab")
class CappedExponentialDecay(NamedSchedule):
    r"""Exponential decay that holds the initial rate first and never exceeds it.

    $$
    \eta(t) = \eta_0 \min\!\left(1,\; d^{\,p(t)}\right), \qquad
    p(t) = \frac{t - H}{T} \quad(\text{or } \lfloor (t - H)/T \rfloor
    \text{ with `staircase`})
    $$

    Symbols map to arguments: $\eta_0$ is `initial_learning_rate`, $T$
    `decay_steps`, $d$ `decay_rate`, $H$ `hold_steps`. With $H = 0$ this is
    Keras' `ExponentialDecay`, whose argument names and order it takes:
    `CappedExponentialDecay(lr, T, d, staircase)` equals
    `ExponentialDecay(lr, T, d, staircase)`. With $H > 0$ the cap keeps the
    rate at $\eta_0$ for the first $H$ steps, where $d^{p}$ would exceed 1.

    Departures: the exponent is clamped to $[0, \infty)$ before the power
    is taken, which the cap makes invisible but which keeps $d^{p}$ finite
    for any step (no overflow, no NaN). The former positional order
    `(initial_learning_rate, decay_rate, decay_steps, hold_steps)` still
    works, with a `DeprecationWarning`, when the values tell it apart (a
    `decay_rate` above 1 or a fractional `decay_steps`).

    Example:

    ```python
    from keras_optlab.schedules import CappedExponentialDecay

    schedule = CappedExponentialDecay(0.01, 100, 0.5, hold_steps=200)
    float(schedule(300))  # held for 200 steps, then 0.01 * 0.5 ** 1 = 0.005
    ```

    Args:
        initial_learning_rate: $\eta_0$, >= 0. Defaults to `0.001`.
        decay_steps: $T$, steps per unit of the exponent, a positive integer.
            Defaults to `1`.
        decay_rate: $d$, in (0, 1]. Defaults to `0.96`.
        staircase: Take the floor of the exponent (decay in discrete jumps).
            Defaults to `False`.
        hold_steps: $H$, steps at $\eta_0$ before the decay starts, an
            integer >= 0. Defaults to `0`.
        name: Name of the schedule's operations. Defaults to
            `"CappedExponentialDecay"`.
    """

    def __init__(
        self,
        initial_learning_rate: float = 0.001,
        decay_steps: int = 1,
        decay_rate: float = 0.96,
        staircase: bool = False,
        hold_steps: int = 0,
        name: str = "CappedExponentialDecay",
    ) -> None:
        super().__init__(name)
        swapped = _validation.swapped_decay_order("CappedExponentialDecay", decay_steps, decay_rate)
        if swapped != (decay_steps, decay_rate) and not isinstance(staircase, bool):
            # The former positional order had `hold_steps` fourth, where
            # `staircase` is now.
            staircase, hold_steps = (hold_steps if isinstance(hold_steps, bool) else False), staircase
        decay_steps, decay_rate = swapped
        self.initial_learning_rate = _validation.check_float(
            "initial_learning_rate", initial_learning_rate, low=0.0
        )
        self.decay_steps = _validation.check_int("decay_steps", decay_steps, low=1)
        self.decay_rate = _validation.check_float(
            "decay_rate", decay_rate, low=0.0, high=1.0, low_open=True
        )
        self.staircase = _validation.check_bool("staircase", staircase)
        self.hold_steps = _validation.check_int("hold_steps", hold_steps, low=0)

    def rate(self, step):
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
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "hold_steps": self.hold_steps,
            "name": self.name,
        }
