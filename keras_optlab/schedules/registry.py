"""One table of every learning-rate schedule the package hands out by name.

Schedules that Keras ships are returned as Keras' own classes; the others are
keras_optlab's. The table drives `get`, `list_schedules`, the test suite
(every entry is built, called and round-tripped through serialization without
anyone listing it), the documentation's table and the lab.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Mapping

import keras

from keras_optlab import _registry
from keras_optlab import search_space as space
from keras_optlab.schedules.composition import Join, Warmup
from keras_optlab.schedules.cyclical import CyclicalLearningRate, OneCycle
from keras_optlab.schedules.decay import CappedExponentialDecay, StepDecay

_Schedule = keras.optimizers.schedules.LearningRateSchedule


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """What the registry knows about one schedule name.

    Attributes:
        name: The registry name, lowercase.
        factory: Called with the keyword arguments to build the schedule.
        family: `"decay"` (falls over time), `"cyclical"` (rises and falls)
            or `"composition"` (built from other schedules).
        formula: The rate at step `t` in one line of plain-text math.
        paper: Authors, title, year and arXiv id or venue, or `"-"`.
        keras_builtin: Whether the class is Keras' own.
        example: Returns keyword arguments that build a representative
            instance (used by the tests, the docs' pictures and the lab).
        fit_arguments: How a training run uses the schedule: called as
            `fit_arguments(learning_rate, steps_per_epoch, epochs, **params)`
            with `params` one value per `search_space` name, it returns the
            keyword arguments of `factory` for a run of `epochs` epochs that
            starts (or peaks, for cyclical schedules) at `learning_rate`.
            `None` for compositions, which need other schedules. The lab's
            candidates (`adam+step`, `nag+one_cycle`) are built with it.
        search_space: The run parameters worth tuning, each with its range
            and untuned default (`keras_optlab.search_space`); the keys are
            the `params` of `fit_arguments`, expressed in epochs or as
            fractions of the run, so that they mean the same for any
            length of training.
    """

    name: str
    factory: Callable[..., _Schedule]
    family: str
    formula: str
    paper: str
    keras_builtin: bool
    example: Callable[[], Mapping[str, Any]]
    fit_arguments: Callable[..., Mapping[str, Any]] | None = None
    search_space: Mapping[str, space.Dimension] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        checked = space.check_space(self.search_space, f"schedule {self.name!r}")
        object.__setattr__(self, "search_space", MappingProxyType(checked))


_REGISTRY: _registry.Registry[ScheduleInfo] = _registry.Registry("schedule")


def register(info: ScheduleInfo) -> ScheduleInfo:
    """Adds `info` to the registry; its name must not be taken."""
    return _REGISTRY.add(info)


def list_schedules(family: str | None = None, keras_builtin: bool | None = None) -> list[str]:
    """Names of the registered schedules, in registration order.

    Args:
        family: Keep only this family (`"decay"`, `"cyclical"`,
            `"composition"`). Defaults to `None` (all).
        keras_builtin: Keep only Keras' own classes (`True`) or only
            keras_optlab's (`False`). Defaults to `None` (both).
    """
    return _REGISTRY.names(family, keras_builtin)


def info(name: str) -> ScheduleInfo:
    """The `ScheduleInfo` of `name`; `ValueError` listing the names if unknown."""
    return _REGISTRY.lookup(name)


def get(name: str, /, **kwargs: Any) -> _Schedule:
    """Builds the schedule registered as `name` with `kwargs`.

    Example:

    ```python
    from keras_optlab import schedules
    decay = schedules.get("time_based", initial_learning_rate=0.1,
                          decay_steps=1, decay_rate=0.01)
    # keras.optimizers.schedules.InverseTimeDecay: 0.1 / (1 + 0.01 t)
    ```
    """
    return info(name).factory(**kwargs)


_K = keras.optimizers.schedules


def _epochs_between(fraction: float, epochs: int) -> int:
    """`fraction` of a run of `epochs` epochs, in whole epochs, at least 1."""
    return max(1, round(fraction * epochs))


def _fractions_of_run(fractions, steps_per_epoch: int, epochs: int) -> list[int]:
    """Steps at the given fractions of the run, strictly increasing."""
    total = steps_per_epoch * epochs
    steps = []
    for fraction in fractions:
        step = max(round(fraction * total), (steps[-1] + 1) if steps else 1)
        steps.append(step)
    return steps

for _entry in (
    ScheduleInfo(
        name="step",
        factory=StepDecay,
        family="decay",
        formula="η₀ γ^⌊t / (S E)⌋",
        paper="Krizhevsky et al., NIPS 2012; He et al., arXiv:1512.03385",
        keras_builtin=False,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=200, decay_rate=0.5),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, factor, drop_every: dict(
            initial_learning_rate=learning_rate, decay_rate=factor,
            decay_steps=_epochs_between(drop_every, epochs), steps_per_epoch=steps_per_epoch,
        ),
        search_space={
            "factor": space.Uniform(0.1, 0.7, default=0.5),
            # Epochs between two drops, as a fraction of the run.
            "drop_every": space.Uniform(0.1, 0.5, default=0.3),
        },
    ),
    ScheduleInfo(
        name="time_based",
        factory=_K.InverseTimeDecay,
        family="decay",
        formula="η₀ / (1 + k t / T)",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=100, decay_rate=1.0),
        # k counts epochs: the rate is η₀ / (1 + k e) after e epochs.
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, decay_rate: dict(
            initial_learning_rate=learning_rate, decay_steps=steps_per_epoch,
            decay_rate=decay_rate,
        ),
        search_space={"decay_rate": space.LogUniform(0.01, 1.0, default=0.1)},
    ),
    ScheduleInfo(
        name="capped_exponential",
        factory=CappedExponentialDecay,
        family="decay",
        formula="η₀ min(1, d^((t − H) / T))",
        paper="-",
        keras_builtin=False,
        example=lambda: dict(
            initial_learning_rate=0.01, decay_rate=0.5, decay_steps=100, hold_steps=200
        ),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, decay_rate, hold: dict(
            initial_learning_rate=learning_rate, decay_rate=decay_rate,
            decay_steps=steps_per_epoch, hold_steps=round(hold * epochs) * steps_per_epoch,
        ),
        search_space={
            # Factor per epoch once the hold is over.
            "decay_rate": space.Uniform(0.5, 0.99, default=0.8),
            "hold": space.Uniform(0.0, 0.5, default=0.2),
        },
    ),
    ScheduleInfo(
        name="exponential",
        factory=_K.ExponentialDecay,
        family="decay",
        formula="η₀ d^(t / T)",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=100, decay_rate=0.5),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, decay_rate: dict(
            initial_learning_rate=learning_rate, decay_steps=steps_per_epoch,
            decay_rate=decay_rate,
        ),
        # Factor per epoch.
        search_space={"decay_rate": space.Uniform(0.5, 0.99, default=0.9)},
    ),
    ScheduleInfo(
        name="piecewise_constant",
        factory=_K.PiecewiseConstantDecay,
        family="decay",
        formula="v_i for b_(i−1) < t ≤ b_i, b_(−1) = −∞, b_n = ∞",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(boundaries=[300, 600], values=[0.01, 0.005, 0.001]),
        # Drops by `factor` at half and at three quarters of the run.
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, factor: dict(
            boundaries=_fractions_of_run((0.5, 0.75), steps_per_epoch, epochs),
            values=[learning_rate, learning_rate * factor, learning_rate * factor**2],
        ),
        search_space={"factor": space.LogUniform(0.05, 0.5, default=0.1)},
    ),
    ScheduleInfo(
        name="polynomial",
        factory=_K.PolynomialDecay,
        family="decay",
        formula="(η₀ − η_end)(1 − min(t, T)/T)^p + η_end",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(
            initial_learning_rate=0.01, decay_steps=800, end_learning_rate=0.001, power=2.0
        ),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, end_fraction, power: dict(
            initial_learning_rate=learning_rate, decay_steps=max(1, steps_per_epoch * epochs),
            end_learning_rate=learning_rate * end_fraction, power=power,
        ),
        search_space={
            "end_fraction": space.LogUniform(1e-3, 0.1, default=0.01),
            "power": space.Uniform(0.5, 3.0, default=1.0),
        },
    ),
    ScheduleInfo(
        name="cosine",
        factory=_K.CosineDecay,
        family="decay",
        formula="η₀ ((1 − α)(1 + cos(π min(t, T)/T))/2 + α)",
        paper="Loshchilov & Hutter, 'SGDR: Stochastic Gradient Descent with Warm Restarts', ICLR 2017, arXiv:1608.03983",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=800, alpha=0.1),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, alpha: dict(
            initial_learning_rate=learning_rate, decay_steps=max(1, steps_per_epoch * epochs),
            alpha=alpha,
        ),
        search_space={"alpha": space.Uniform(0.0, 0.2, default=0.0)},
    ),
    ScheduleInfo(
        name="cosine_restarts",
        factory=_K.CosineDecayRestarts,
        family="cyclical",
        formula="cosine decay restarted with periods T, T t_mul, …, peaks × m_mul",
        paper="Loshchilov & Hutter, 'SGDR: Stochastic Gradient Descent with Warm Restarts', ICLR 2017, arXiv:1608.03983",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, first_decay_steps=200, m_mul=0.8),
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, first_period, m_mul: dict(
            initial_learning_rate=learning_rate,
            first_decay_steps=max(1, round(first_period * epochs * steps_per_epoch)),
            m_mul=m_mul,
        ),
        search_space={
            # The first period as a fraction of the run; later ones double.
            "first_period": space.Uniform(0.1, 0.5, default=0.25),
            "m_mul": space.Uniform(0.5, 1.0, default=1.0),
        },
    ),
    ScheduleInfo(
        name="cyclical",
        factory=CyclicalLearningRate,
        family="cyclical",
        formula="η_min + (η_max − η_min) max(0, 1 − |t/S − 2c + 1|) g(t)",
        paper="Smith, 'Cyclical Learning Rates for Training Neural Networks', WACV 2017, arXiv:1506.01186",
        keras_builtin=False,
        example=lambda: dict(
            initial_learning_rate=0.001, maximal_learning_rate=0.01, step_size=100,
            mode="triangular2",
        ),
        # The tuned rate is the peak; the floor is the peak / `ratio`.
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, ratio, half_cycle: dict(
            initial_learning_rate=learning_rate / ratio, maximal_learning_rate=learning_rate,
            step_size=_epochs_between(half_cycle, epochs) * steps_per_epoch,
        ),
        search_space={
            "ratio": space.LogUniform(2.0, 30.0, default=6.0),
            # Epochs in half a cycle, as a fraction of the run.
            "half_cycle": space.Uniform(0.05, 0.5, default=0.25),
        },
    ),
    ScheduleInfo(
        name="one_cycle",
        factory=OneCycle,
        family="cyclical",
        formula="η_max/a ↗ η_max over f T steps, ↘ η_max/(a b) at T",
        paper="Smith & Topin, arXiv:1708.07120; Smith, arXiv:1803.09820",
        keras_builtin=False,
        example=lambda: dict(maximal_learning_rate=0.01, total_steps=800),
        # The tuned rate is the peak.
        fit_arguments=lambda learning_rate, steps_per_epoch, epochs, warmup_fraction: dict(
            maximal_learning_rate=learning_rate, total_steps=max(2, steps_per_epoch * epochs),
            warmup_fraction=warmup_fraction,
        ),
        search_space={"warmup_fraction": space.Uniform(0.1, 0.5, default=0.3)},
    ),
    ScheduleInfo(
        name="warmup",
        factory=Warmup,
        family="composition",
        formula="η₀ + (s(0) − η₀) t/W for t < W, then s(t − W)",
        paper="Goyal et al., 'Accurate, Large Minibatch SGD', 2017, arXiv:1706.02677",
        keras_builtin=False,
        example=lambda: dict(
            schedule=_K.CosineDecay(0.01, decay_steps=700, alpha=0.1), warmup_steps=100
        ),
    ),
    ScheduleInfo(
        name="join",
        factory=Join,
        family="composition",
        formula="s_i(t − b_i) for b_i ≤ t < b_(i+1)",
        paper="-",
        keras_builtin=False,
        example=lambda: dict(
            schedules=[
                _K.CosineDecay(0.01, decay_steps=400, alpha=0.2),
                StepDecay(0.005, decay_steps=100, decay_rate=0.5),
            ],
            boundaries=[400],
        ),
    ),
):
    register(_entry)
del _entry
