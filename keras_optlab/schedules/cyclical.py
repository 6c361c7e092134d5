"""Cyclical learning rates and the one-cycle policy (Leslie N. Smith)."""

from __future__ import annotations

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.schedules import _steps
from keras_optlab.schedules._base import NamedSchedule


@keras.saving.register_keras_serializable(package="keras_optlab")
class CyclicalLearningRate(NamedSchedule):
    r"""A learning rate that goes up and down between two bounds (CLR).

    With half-cycle length $S$:

    $$
    c = \left\lfloor 1 + \frac{t}{2S} \right\rfloor, \qquad
    x = \left| \frac{t}{S} - 2c + 1 \right|, \qquad
    \eta(t) = \eta_{\min} + (\eta_{\max} - \eta_{\min})\,
        \max(0, 1 - x)\, g(t)
    $$

    where $g(t) = 1$ (`"triangular"`), $g(t) = 2^{-(c - 1)}$
    (`"triangular2"`: the amplitude halves each cycle) or $g(t) =
    \gamma^{t}$ (`"exp_range"`). Symbols map to arguments: $\eta_{\min}$ is
    `initial_learning_rate`, $\eta_{\max}$ `maximal_learning_rate`, $S$
    `step_size`, $\gamma$ `gamma`, the choice of $g$ `mode`. The rate starts
    at $\eta_{\min}$ at step 0, peaks at $S$, is back at $\eta_{\min}$ at
    $2S$.

    Reference: Leslie N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", WACV 2017, arXiv:1506.01186 (section 3.1 gives the
    equations above; the paper suggests $S$ of 2 to 10 epochs).

    `step_size` is the paper's name for $S$ (TensorFlow Addons'
    `CyclicalLearningRate` kept it too); Keras has no cyclical schedule to
    follow.

    Departures: none. At very large steps the `"triangular2"` and
    `"exp_range"` amplitudes underflow to 0 (the rate stays at
    $\eta_{\min}$); nothing becomes NaN.

    Args:
        initial_learning_rate: $\eta_{\min}$, the lower bound, >= 0.
            Defaults to `0.001`.
        maximal_learning_rate: $\eta_{\max}$, the upper bound, >=
            `initial_learning_rate`. Defaults to `0.006`.
        step_size: $S$, steps in half a cycle, a positive integer. Defaults
            to `2000`.
        mode: `"triangular"`, `"triangular2"` or `"exp_range"`. Defaults to
            `"triangular"`.
        gamma: $\gamma$ of `"exp_range"`, in (0, 1]. Defaults to `1.0`.
        name: Name of the schedule's operations. Defaults to
            `"CyclicalLearningRate"`.
    """

    def __init__(
        self,
        initial_learning_rate: float = 0.001,
        maximal_learning_rate: float = 0.006,
        step_size: int = 2000,
        mode: str = "triangular",
        gamma: float = 1.0,
        name: str = "CyclicalLearningRate",
    ) -> None:
        super().__init__(name)
        self.initial_learning_rate = _validation.check_float(
            "initial_learning_rate", initial_learning_rate, low=0.0
        )
        self.maximal_learning_rate = _validation.check_float(
            "maximal_learning_rate", maximal_learning_rate, low=self.initial_learning_rate
        )
        self.step_size = _validation.check_int("step_size", step_size, low=1)
        self.mode = _validation.check_choice(
            "mode", mode, ("triangular", "triangular2", "exp_range")
        )
        self.gamma = _validation.check_float("gamma", gamma, low=0.0, high=1.0, low_open=True)

    def rate(self, step):
        step = _steps.as_float_step(step)
        size = float(self.step_size)
        cycle = ops.floor(1.0 + step / (2.0 * size))
        x = ops.abs(step / size - 2.0 * cycle + 1.0)
        if self.mode == "triangular":  # Python strings from the config.
            amplitude_scale = ops.ones_like(step)
        elif self.mode == "triangular2":
            amplitude_scale = _steps.power_of_constant(0.5, cycle - 1.0)
        else:
            amplitude_scale = _steps.power_of_constant(self.gamma, step)
        span = self.maximal_learning_rate - self.initial_learning_rate
        return self.initial_learning_rate + span * ops.maximum(0.0, 1.0 - x) * amplitude_scale

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "maximal_learning_rate": self.maximal_learning_rate,
            "step_size": self.step_size,
            "mode": self.mode,
            "gamma": self.gamma,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_optlab")
class OneCycle(NamedSchedule):
    r"""The one-cycle policy: warm up to a peak, then anneal far below the start.

    With $\eta_{\text{start}} = \eta_{\max} / a$, $\eta_{\text{end}} =
    \eta_{\text{start}} / b$ and $W = f\,T$:

    $$
    \eta(t) =
    \begin{cases}
    I(\eta_{\text{start}}, \eta_{\max}, t / W) & t < W \\
    I(\eta_{\max}, \eta_{\text{end}}, (t - W) / (T - W)) & W \le t < T \\
    \eta_{\text{end}} & t \ge T
    \end{cases}
    $$

    with $I(u, v, p) = u + (v - u)\,p$ (`anneal="linear"`) or $I(u, v, p) =
    v + (u - v)(1 + \cos \pi p)/2$ (`anneal="cosine"`). Symbols map to
    arguments: $\eta_{\max}$ is `maximal_learning_rate`, $T$ `total_steps`,
    $f$ `warmup_fraction`, $a$ `initial_divisor`, $b$ `final_divisor`.

    References: Leslie N. Smith & Nicholay Topin, "Super-Convergence: Very
    Fast Training of Neural Networks Using Large Learning Rates", 2018,
    arXiv:1708.07120; Leslie N. Smith, "A disciplined approach to neural
    network hyper-parameters: Part 1", 2018, arXiv:1803.09820 (section 4.1:
    one cycle, then an annihilation "several orders of magnitude" below the
    start).

    Departures: the papers use linear ramps and an annihilation phase of
    their own; here the two phases share one shape (`anneal`) and the
    second phase ends at $\eta_{\text{end}}$ directly, as fastai's and
    PyTorch's `OneCycleLR` do (their defaults $a = 25$, $b = 10^4$, $f =
    0.3$ are taken). $W$ is not rounded to a whole step. Momentum is not
    cycled: a Keras schedule can only drive the learning rate.

    Args:
        maximal_learning_rate: $\eta_{\max}$, the peak, > 0. Defaults to
            `0.01`.
        total_steps: $T$, length of the cycle in steps, an integer >= 2.
            Defaults to `10000`.
        warmup_fraction: $f$, the fraction of the cycle spent rising, in
            (0, 1). Defaults to `0.3`.
        initial_divisor: $a$, the start is the peak divided by it, >= 1.
            Defaults to `25.0`.
        final_divisor: $b$, the end is the start divided by it, >= 1.
            Defaults to `1e4`.
        anneal: `"cosine"` or `"linear"`. Defaults to `"cosine"`.
        name: Name of the schedule's operations. Defaults to
            `"OneCycle"`.
    """

    def __init__(
        self,
        maximal_learning_rate: float = 0.01,
        total_steps: int = 10000,
        warmup_fraction: float = 0.3,
        initial_divisor: float = 25.0,
        final_divisor: float = 1e4,
        anneal: str = "cosine",
        name: str = "OneCycle",
    ) -> None:
        super().__init__(name)
        self.maximal_learning_rate = _validation.check_float(
            "maximal_learning_rate", maximal_learning_rate, low=0.0, low_open=True
        )
        self.total_steps = _validation.check_int("total_steps", total_steps, low=2)
        self.warmup_fraction = _validation.check_float(
            "warmup_fraction", warmup_fraction, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.initial_divisor = _validation.check_float("initial_divisor", initial_divisor, low=1.0)
        self.final_divisor = _validation.check_float("final_divisor", final_divisor, low=1.0)
        self.anneal = _validation.check_choice("anneal", anneal, ("cosine", "linear"))

    def rate(self, step):
        step = _steps.as_float_step(step)
        peak = self.maximal_learning_rate
        start = peak / self.initial_divisor
        end = start / self.final_divisor
        rise = self.warmup_fraction * self.total_steps
        fall = self.total_steps - rise
        pieces = [
            lambda t: _steps.interpolate(start, peak, t / rise, self.anneal),
            # interpolate clips the fraction at 1, so after T the rate stays at `end`.
            lambda t: _steps.interpolate(peak, end, t / fall, self.anneal),
        ]
        return _steps.select_piece(step, pieces, [rise])

    def get_config(self) -> dict:
        return {
            "maximal_learning_rate": self.maximal_learning_rate,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "initial_divisor": self.initial_divisor,
            "final_divisor": self.final_divisor,
            "anneal": self.anneal,
            "name": self.name,
        }
