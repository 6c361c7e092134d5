"""One table of every learning-rate schedule the package hands out by name.

Schedules that Keras ships are returned as Keras' own classes; the others are
keras_optlab's. The table drives `get`, `list_schedules`, the test suite
(every entry is built, called and round-tripped through serialization without
anyone listing it), the documentation's table and the lab.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import keras

from keras_optlab import _registry
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
    """

    name: str
    factory: Callable[..., _Schedule]
    family: str
    formula: str
    paper: str
    keras_builtin: bool
    example: Callable[[], Mapping[str, Any]]


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


def get(name: str, **kwargs: Any) -> _Schedule:
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

for _entry in (
    ScheduleInfo(
        name="step",
        factory=StepDecay,
        family="decay",
        formula="η₀ γ^⌊t / (S E)⌋",
        paper="Krizhevsky et al., NIPS 2012; He et al., arXiv:1512.03385",
        keras_builtin=False,
        example=lambda: dict(initial_learning_rate=0.01, factor=0.5, step_size=200),
    ),
    ScheduleInfo(
        name="time_based",
        factory=_K.InverseTimeDecay,
        family="decay",
        formula="η₀ / (1 + k t / T)",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=100, decay_rate=1.0),
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
    ),
    ScheduleInfo(
        name="exponential",
        factory=_K.ExponentialDecay,
        family="decay",
        formula="η₀ d^(t / T)",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=100, decay_rate=0.5),
    ),
    ScheduleInfo(
        name="piecewise_constant",
        factory=_K.PiecewiseConstantDecay,
        family="decay",
        formula="v_i for b_i < t ≤ b_(i+1)",
        paper="-",
        keras_builtin=True,
        example=lambda: dict(boundaries=[300, 600], values=[0.01, 0.005, 0.001]),
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
    ),
    ScheduleInfo(
        name="cosine",
        factory=_K.CosineDecay,
        family="decay",
        formula="η₀ ((1 − α)(1 + cos(π min(t, T)/T))/2 + α)",
        paper="Loshchilov & Hutter, 'SGDR: Stochastic Gradient Descent with Warm Restarts', ICLR 2017, arXiv:1608.03983",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, decay_steps=800, alpha=0.1),
    ),
    ScheduleInfo(
        name="cosine_restarts",
        factory=_K.CosineDecayRestarts,
        family="cyclical",
        formula="cosine decay restarted with periods T, T t_mul, …, peaks × m_mul",
        paper="Loshchilov & Hutter, 'SGDR: Stochastic Gradient Descent with Warm Restarts', ICLR 2017, arXiv:1608.03983",
        keras_builtin=True,
        example=lambda: dict(initial_learning_rate=0.01, first_decay_steps=200, m_mul=0.8),
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
    ),
    ScheduleInfo(
        name="one_cycle",
        factory=OneCycle,
        family="cyclical",
        formula="η_max/a ↗ η_max over f T steps, ↘ η_max/(a b) at T",
        paper="Smith & Topin, arXiv:1708.07120; Smith, arXiv:1803.09820",
        keras_builtin=False,
        example=lambda: dict(maximal_learning_rate=0.01, total_steps=800),
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
                StepDecay(0.005, factor=0.5, step_size=100),
            ],
            boundaries=[400],
        ),
    ),
):
    register(_entry)
del _entry


def markdown_table() -> str:
    """The documentation's table of every registered name, as Markdown."""
    def cell(text: str) -> str:
        # A bare "|" (an absolute value in a formula) would end the cell.
        return text.replace("|", "\\|")

    rows = ["| name | class | rate at step t | reference |", "|---|---|---|---|"]
    for entry in _REGISTRY:
        origin = "keras.optimizers.schedules" if entry.keras_builtin else "keras_optlab.schedules"
        rows.append(
            f"| `{entry.name}` | `{origin}.{entry.factory.__name__}` "
            f"| {cell(entry.formula)} | {cell(entry.paper)} |"
        )
    return "\n".join(rows) + "\n"
