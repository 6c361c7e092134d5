"""Composition of schedules, written once: a warmup in front of any schedule
and a join of several schedules one after the other."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.schedules import _steps
from keras_optlab.schedules._base import NamedSchedule

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def _check_schedule(name: str, value: Any) -> _Schedule:
    if not isinstance(value, _Schedule):
        raise TypeError(
            f"Argument `{name}` must be a "
            "keras.optimizers.schedules.LearningRateSchedule. "
            f"Received: {name}={value!r}"
        )
    return value


@keras.saving.register_keras_serializable(package="keras_optlab")
class Warmup(NamedSchedule):
    r"""A warmup in front of any learning-rate schedule.

    For `warmup_steps` steps the rate rises from `initial_learning_rate` to
    the wrapped schedule's value at its own step 0; from then on it is the
    wrapped schedule, **which sees the step counted from the end of the
    warmup**:

    $$
    \eta(t) =
    \begin{cases}
    \eta_0 + (s(0) - \eta_0)\,\dfrac{t}{W} & t < W \quad\text{(linear)}\\[4pt]
    \eta_0 \left(\dfrac{s(0)}{\eta_0}\right)^{t / W} & t < W
        \quad\text{(exponential)}\\[4pt]
    s(t - W) & t \ge W
    \end{cases}
    $$

    Symbols map to arguments: $s$ is `schedule`, $W$ `warmup_steps`,
    $\eta_0$ `initial_learning_rate`; the case is chosen by `mode`.

    Because the wrapped schedule's clock starts at the end of the warmup,
    `Warmup(CosineDecay(target, decay_steps, alpha), W, initial_learning_rate=a)`
    equals Keras' `CosineDecay(a, decay_steps, alpha, warmup_target=target,
    warmup_steps=W)` at every step: the decay lasts `decay_steps` *after*
    the warmup. The warmup is the first piece of a `Join` (the same code
    selects the piece), so a warmup in front of a `Join` is also a join.

    The linear warmup is the "gradual warmup" of Goyal et al., "Accurate,
    Large Minibatch SGD: Training ImageNet in 1 Hour", 2017,
    arXiv:1706.02677. The exponential (geometric) warmup multiplies the rate
    by the same factor at each step; it needs `initial_learning_rate > 0`.

    Departures: none from the equations above. Unlike `CosineDecay`'s own
    warmup, the target is not an argument: it is whatever the wrapped
    schedule starts at, so the two never disagree.

    Example:

    ```python
    import keras
    from keras_optlab.schedules import Warmup

    decay = keras.optimizers.schedules.ExponentialDecay(1e-3, 1000, 0.5)
    schedule = Warmup(decay, warmup_steps=500)   # 0 -> 1e-3 in 500 steps
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    ```

    Args:
        schedule: The `keras.optimizers.schedules.LearningRateSchedule` that
            follows the warmup (Keras' own, keras_optlab's or yours).
        warmup_steps: Length $W$ of the warmup in steps, an integer >= 0;
            0 means no warmup. Defaults to `1000`.
        initial_learning_rate: The rate at step 0, >= 0 (> 0 for
            `mode="exponential"`). Defaults to `0.0`.
        mode: `"linear"` or `"exponential"`. Defaults to `"linear"`.
        name: Name of the schedule's operations. Defaults to
            `"Warmup"`.
    """

    def __init__(
        self,
        schedule: _Schedule,
        warmup_steps: int = 1000,
        initial_learning_rate: float = 0.0,
        mode: str = "linear",
        name: str = "Warmup",
    ) -> None:
        super().__init__(name)
        self.schedule = _check_schedule("schedule", schedule)
        self.warmup_steps = _validation.check_int("warmup_steps", warmup_steps, low=0)
        self.mode = _validation.check_choice("mode", mode, ("linear", "exponential"))
        if self.mode == "exponential":
            self.initial_learning_rate = _validation.check_float(
                "initial_learning_rate", initial_learning_rate, low=0.0, low_open=True
            )
        else:
            self.initial_learning_rate = _validation.check_float(
                "initial_learning_rate", initial_learning_rate, low=0.0
            )

    def _ramp(self, step):
        target = ops.cast(self.schedule(ops.zeros((), _steps.DTYPE)), _steps.DTYPE)
        start = ops.cast(self.initial_learning_rate, _steps.DTYPE)
        return _steps.interpolate(start, target, step / float(self.warmup_steps), self.mode)

    def rate(self, step):
        step = _steps.as_float_step(step)
        if self.warmup_steps == 0:  # A Python int from the config, not a tensor.
            return ops.cast(self.schedule(step), _steps.DTYPE)
        return _steps.select_piece(step, [self._ramp, self.schedule], [self.warmup_steps])

    def get_config(self) -> dict:
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "warmup_steps": self.warmup_steps,
            "initial_learning_rate": self.initial_learning_rate,
            "mode": self.mode,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Warmup":
        config = dict(config)
        config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_optlab")
class Join(NamedSchedule):
    r"""Several schedules one after the other, each with its own clock.

    With schedules $s_0, \dots, s_n$ and boundaries $b_1 < \dots < b_n$:

    $$
    \eta(t) = s_i(t - b_i) \quad \text{for } b_i \le t < b_{i+1},
    \qquad b_0 = 0,\; b_{n+1} = \infty .
    $$

    Symbols map to arguments: $s_i$ is `schedules[i]`, $b_i$
    `boundaries[i-1]`. Each later schedule sees the step counted from its
    boundary, as `optax.join_schedules` does, so a schedule written for a
    fresh run (a warm restart, a second decay) can be appended unchanged.

    Departures: none. Boundaries must be positive and strictly increasing
    (a boundary of 0 or a repeated boundary would make a schedule never
    used).

    Example:

    ```python
    import keras
    from keras_optlab.schedules import Join, StepDecay

    schedule = Join(
        [keras.optimizers.schedules.CosineDecay(1e-3, 2000),
         StepDecay(1e-4, decay_steps=500, decay_rate=0.5)],
        boundaries=[2000],
    )
    ```

    Args:
        schedules: A non-empty list of
            `keras.optimizers.schedules.LearningRateSchedule`s. Required.
        boundaries: The steps at which the next schedule takes over: positive
            integers, strictly increasing, one fewer than `schedules`.
            Required (an empty list for a single schedule).
        name: Name of the schedule's operations. Defaults to `"Join"`.
    """

    def __init__(
        self, schedules: Sequence[_Schedule], boundaries: Sequence[int], name: str = "Join"
    ) -> None:
        super().__init__(name)
        if isinstance(schedules, _Schedule) or not isinstance(schedules, (list, tuple)) or not schedules:
            raise TypeError(
                "Argument `schedules` must be a non-empty list of "
                "keras.optimizers.schedules.LearningRateSchedule. "
                f"Received: schedules={schedules!r}"
            )
        self.schedules = [
            _check_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)
        ]
        if not isinstance(boundaries, (list, tuple)):
            raise TypeError(
                "Argument `boundaries` must be a list of integers. "
                f"Received: boundaries={boundaries!r}"
            )
        if len(boundaries) != len(self.schedules) - 1:
            raise ValueError(
                "Argument `boundaries` must have one entry fewer than "
                f"`schedules` ({len(self.schedules) - 1} for "
                f"{len(self.schedules)} schedules). Received: "
                f"boundaries={list(boundaries)!r}"
            )
        self.boundaries = [
            _validation.check_int(f"boundaries[{i}]", b, low=1)
            for i, b in enumerate(boundaries)
        ]
        if any(a >= b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(
                "Argument `boundaries` must be strictly increasing. "
                f"Received: boundaries={self.boundaries!r}"
            )

    def rate(self, step):
        step = _steps.as_float_step(step)
        pieces = [lambda t, s=s: ops.cast(s(t), _steps.DTYPE) for s in self.schedules]
        return _steps.select_piece(step, pieces, self.boundaries)

    def get_config(self) -> dict:
        return {
            "schedules": [keras.optimizers.schedules.serialize(s) for s in self.schedules],
            "boundaries": list(self.boundaries),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Join":
        config = dict(config)
        config["schedules"] = [
            keras.optimizers.schedules.deserialize(s) for s in config["schedules"]
        ]
        return cls(**config)
