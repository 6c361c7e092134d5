"""One table of every optimizer the package hands out by name.

Optimizers that Keras ships are returned as Keras' own classes, configured
for the textbook variant the name stands for; the others are keras_optlab's.
The table drives `get`, `list_optimizers`, the test suite (every entry is
tested without anyone listing it), the documentation's table and the lab.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Mapping

import keras

from keras_optlab import _registry
from keras_optlab import search_space as space
from keras_optlab.optimizers.adabelief import AdaBelief
from keras_optlab.optimizers.adabound import AdaBound
from keras_optlab.optimizers.adopt import ADOPT
from keras_optlab.optimizers.cocob import COCOB
from keras_optlab.optimizers.dadapt_adam import DAdaptAdam
from keras_optlab.optimizers.mars import MARS
from keras_optlab.optimizers.novograd import NovoGrad
from keras_optlab.optimizers.conditional_gradient import ConditionalGradient
from keras_optlab.optimizers.proximal_adagrad import ProximalAdagrad
from keras_optlab.optimizers.lazy_adam import LazyAdam
from keras_optlab.optimizers.lookahead import lookahead, ranger
from keras_optlab.optimizers.prodigy import Prodigy
from keras_optlab.optimizers.radam import RAdam
from keras_optlab.optimizers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from keras_optlab.optimizers.soap import SOAP
from keras_optlab.optimizers.swa import swa_sgd
from keras_optlab.optimizers.swats import SWATS
from keras_optlab.optimizers.switching import adam_then_sgd
from keras_optlab.optimizers.yogi import Yogi


@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
    """What the registry knows about one optimizer name.

    Attributes:
        name: The registry name, lowercase.
        factory: Called with the keyword arguments to build the optimizer.
        family: `"sgd"` (plain and momentum gradient descent), `"adaptive"`
            (per-coordinate rates: Adagrad, Adadelta, RMSprop, the Adam
            family), or `"switching"` (changes method during training).
        update_rule: The update in one line of plain-text math.
        paper: Authors, title, year and arXiv id or venue.
        keras_builtin: Whether the class is Keras' own.
        defaults: Keyword arguments the name implies (`nag` is momentum 0.9
            with Nesterov), overridable by the caller.
        suggested_learning_rate: A learning rate that trains a small MLP on
            scikit-learn's digits reasonably; the lab's default.
        search_space: The arguments worth tuning, each with its range and
            its untuned default (`keras_optlab.search_space`). Unless the
            entry declares it, `learning_rate` is added: log-uniform over
            [suggested / 10, suggested × 10], default the suggestion.
        aliases: Other lowercase names that resolve to this entry (TensorFlow
            Addons' class names, such as `rectifiedadam`). `get` and Keras'
            optimizer strings accept them; `list_optimizers` does not list
            them.
    """

    name: str
    factory: Callable[..., keras.optimizers.Optimizer]
    family: str
    update_rule: str
    paper: str
    keras_builtin: bool
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    suggested_learning_rate: float = 1e-3
    search_space: Mapping[str, space.Dimension] = dataclasses.field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "aliases", tuple(self.aliases))
        for alias in self.aliases:
            if not isinstance(alias, str) or alias != alias.lower():
                raise ValueError(
                    f"Aliases must be lowercase strings. Received: aliases={self.aliases!r}"
                )
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        declared = space.check_space(self.search_space, f"optimizer {self.name!r}")
        rate = self.suggested_learning_rate
        tunable = {
            "learning_rate": declared.pop(
                "learning_rate",
                space.LogUniform(rate / LEARNING_RATE_SPAN, rate * LEARNING_RATE_SPAN, default=rate),
            ),
            **declared,
        }
        object.__setattr__(self, "search_space", MappingProxyType(tunable))


# The default learning-rate range spans two decades around the suggestion:
# the suggestions were found on digits, and a user's model may want a rate
# ten times smaller or larger; a wider range wastes a small budget of trials.
LEARNING_RATE_SPAN = 10.0

# Ranges shared by several entries. Momentum and Adam's first moment: 1 − β
# log-uniform in [0.01, 0.5]; Adam's second moment: 1 − β₂ in [1e-4, 0.1].
_MOMENTUM = space.OneMinusLogUniform(0.5, 0.99, default=0.9)
_BETA_1 = space.OneMinusLogUniform(0.5, 0.99, default=0.9)
_BETA_2 = space.OneMinusLogUniform(0.9, 0.9999, default=0.999)
_ADAM_SPACE = {"beta_1": _BETA_1, "beta_2": _BETA_2}


_REGISTRY: _registry.Registry[OptimizerInfo] = _registry.Registry("optimizer")


class _KerasName:
    """What Keras finds under a registry name that it does not know itself.

    `keras.optimizers.get("radam")` (and so `model.compile(optimizer="radam")`)
    looks the string up among Keras' global custom objects and calls
    `from_config({})` on what it finds; this builds the registry's optimizer.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def from_config(self, config: dict) -> keras.optimizers.Optimizer:
        return get(self.name, **config)


def _keras_resolves(name: str) -> bool:
    # Keras' own string table (`keras.optimizers.get("adam")`). Names in it
    # are left to Keras: a global custom object of the same name would take
    # precedence over Keras' class when any config is loaded.
    from keras.src.optimizers import ALL_OBJECTS_DICT

    return name in ALL_OBJECTS_DICT


def register(info: OptimizerInfo) -> OptimizerInfo:
    """Adds `info` to the registry; its name must not be taken.

    A name or alias that Keras does not resolve itself becomes a string
    Keras accepts: `model.compile(optimizer=info.name)`.
    """
    entry = _REGISTRY.add(info)
    for name in (entry.name, *entry.aliases):
        if not _keras_resolves(name):
            keras.saving.get_custom_objects()[name] = _KerasName(name)
    factory = entry.factory
    if entry.keras_builtin and isinstance(factory, type) and not _keras_resolves(
        factory.__name__.lower()
    ):
        # `keras.optimizers.deserialize` (and `get` with a config) looks a
        # class name up only in Keras' string table and the custom objects,
        # and returns the bare name when it is in neither: Keras 3.15 exports
        # `Lamb` but leaves it out of the table, so a serialized Lamb came
        # back as the string "Lamb". Keras' own class under its own name
        # cannot shadow anything; `load_model` found it by module already.
        keras.saving.get_custom_objects()[factory.__name__] = factory
    return entry


def list_optimizers(
    family: str | None = None, keras_builtin: bool | None = None
) -> list[str]:
    """Names of the registered optimizers, in registration order.

    Args:
        family: Keep only this family (`"sgd"`, `"adaptive"`, `"switching"`).
        keras_builtin: Keep only Keras' own classes (`True`) or only
            keras_optlab's (`False`).
    """
    return _REGISTRY.names(family, keras_builtin)


def info(name: str) -> OptimizerInfo:
    """The `OptimizerInfo` of `name`; `ValueError` listing the names if unknown."""
    return _REGISTRY.lookup(name)


def get(name: str, /, **kwargs: Any) -> keras.optimizers.Optimizer:
    """Builds the optimizer registered as `name`.

    Keyword arguments override the name's defaults and are passed to the
    class. An integer `learning_rate` is converted to float, which Keras'
    own classes require.

    Example:

    ```python
    from keras_optlab import optimizers
    nag = optimizers.get("nag", learning_rate=0.05)
    # keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)
    ```
    """
    entry = info(name)
    arguments = {**entry.defaults, **kwargs}
    rate = arguments.get("learning_rate")
    if isinstance(rate, int) and not isinstance(rate, bool):
        arguments["learning_rate"] = float(rate)
    return entry.factory(**arguments)


_LOOKAHEAD_SPACE = {
    "sync_period": space.IntUniform(2, 12, default=6),
    "slow_step_size": space.Uniform(0.2, 1.0, default=0.5),
}
_ZHANG = (
    "Zhang, Lucas, Hinton & Ba, 'Lookahead Optimizer: k steps forward, 1 step back', "
    "NeurIPS 2019, arXiv:1907.08610"
)


_KINGMA = "Kingma & Ba, 'Adam: A Method for Stochastic Optimization', ICLR 2015, arXiv:1412.6980"

# Learning-rate-free methods: `learning_rate` is a factor on the estimated
# step size d, which the authors leave at 1 (lower it only if training is
# unstable); a wide range would only repeat what d already adapts.
_NEAR_ONE = space.LogUniform(0.5, 2.0, default=1.0)
_DEFAZIO_2024 = (
    "Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 'The Road Less Scheduled', "
    "NeurIPS 2024, arXiv:2405.15682"
)
SUGGESTED_SCHEDULE_FREE_SGD = 1.0
SUGGESTED_SCHEDULE_FREE_ADAMW = 0.01

for _info in (
    OptimizerInfo(
        name="sgd",
        aliases=("sgdw",),
        factory=keras.optimizers.SGD,
        family="sgd",
        update_rule="θ ← θ − η g",
        paper="Robbins & Monro, 'A Stochastic Approximation Method', 1951",
        keras_builtin=True,
        suggested_learning_rate=0.05,
    ),
    OptimizerInfo(
        name="momentum",
        factory=keras.optimizers.SGD,
        family="sgd",
        update_rule="v ← μ v − η g;  θ ← θ + v",
        paper="Polyak, 'Some methods of speeding up the convergence of iteration methods', 1964",
        keras_builtin=True,
        defaults={"momentum": 0.9},
        suggested_learning_rate=0.01,
        search_space={"momentum": _MOMENTUM},
    ),
    OptimizerInfo(
        name="nag",
        factory=keras.optimizers.SGD,
        family="sgd",
        update_rule="v ← μ v − η g;  θ ← θ + μ v − η g",
        paper="Nesterov 1983; Sutskever et al., 'On the importance of initialization and momentum in deep learning', ICML 2013",
        keras_builtin=True,
        defaults={"momentum": 0.9, "nesterov": True},
        suggested_learning_rate=0.01,
        search_space={"momentum": _MOMENTUM},
    ),
    OptimizerInfo(
        name="adagrad",
        factory=keras.optimizers.Adagrad,
        family="adaptive",
        update_rule="G ← G + g²;  θ ← θ − η g / (√G + ε)",
        paper="Duchi, Hazan & Singer, 'Adaptive Subgradient Methods for Online Learning and Stochastic Optimization', JMLR 2011",
        keras_builtin=True,
        suggested_learning_rate=0.05,
    ),
    OptimizerInfo(
        name="adadelta",
        factory=keras.optimizers.Adadelta,
        family="adaptive",
        update_rule="E[g²] ← ρE[g²] + (1−ρ)g²;  Δ = −√(E[Δ²]+ε)/√(E[g²]+ε) g;  E[Δ²] ← ρE[Δ²] + (1−ρ)Δ²;  θ ← θ + ηΔ",
        paper="Zeiler, 'ADADELTA: An Adaptive Learning Rate Method', 2012, arXiv:1212.5701",
        keras_builtin=True,
        suggested_learning_rate=1.0,
        search_space={"rho": space.OneMinusLogUniform(0.5, 0.99, default=0.95)},
    ),
    OptimizerInfo(
        name="rmsprop",
        factory=keras.optimizers.RMSprop,
        family="adaptive",
        update_rule="E[g²] ← ρE[g²] + (1−ρ)g²;  θ ← θ − η g / (√E[g²] + ε)",
        paper="Tieleman & Hinton, Lecture 6.5 of 'Neural Networks for Machine Learning', Coursera 2012",
        keras_builtin=True,
        search_space={"rho": space.OneMinusLogUniform(0.5, 0.999, default=0.9)},
    ),
    OptimizerInfo(
        name="adam",
        factory=keras.optimizers.Adam,
        family="adaptive",
        update_rule="m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − η m̂ / (√v̂ + ε)",
        paper=_KINGMA,
        keras_builtin=True,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="adamax",
        factory=keras.optimizers.Adamax,
        family="adaptive",
        update_rule="m ← β₁m + (1−β₁)g;  u ← max(β₂u, |g|);  θ ← θ − η m̂ / (u + ε)",
        paper=_KINGMA + " (section 7.1)",
        keras_builtin=True,
        suggested_learning_rate=0.002,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="nadam",
        factory=keras.optimizers.Nadam,
        family="adaptive",
        update_rule="Adam with a Nesterov look-ahead on m̂",
        paper="Dozat, 'Incorporating Nesterov Momentum into Adam', ICLR 2016 workshop",
        keras_builtin=True,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="amsgrad",
        factory=keras.optimizers.Adam,
        family="adaptive",
        update_rule="Adam with v̂ ← max(v̂, v) so the step size never grows",
        paper="Reddi, Kale & Kumar, 'On the Convergence of Adam and Beyond', ICLR 2018, arXiv:1904.09237",
        keras_builtin=True,
        defaults={"amsgrad": True},
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="adamw",
        factory=keras.optimizers.AdamW,
        family="adaptive",
        update_rule="Adam, then θ ← θ − η λ θ (decoupled weight decay)",
        paper="Loshchilov & Hutter, 'Decoupled Weight Decay Regularization', ICLR 2019, arXiv:1711.05101",
        keras_builtin=True,
        search_space={**_ADAM_SPACE, "weight_decay": space.LogUniform(1e-5, 0.1, default=0.004)},
    ),
    OptimizerInfo(
        name="radam",
        aliases=("rectifiedadam",),
        factory=RAdam,
        family="adaptive",
        update_rule="Adam step times the rectifier r_t while ρ_t ≥ 5; momentum step η m̂ before",
        paper="Liu et al., 'On the Variance of the Adaptive Learning Rate and Beyond', ICLR 2020, arXiv:1908.03265",
        keras_builtin=False,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="adabound",
        factory=AdaBound,
        family="adaptive",
        update_rule="Adam with each element's step size clipped into [η*(1 − 1/(γt+1)), η*(1 + 1/(γt))], η* = final_lr",
        paper="Luo, Xiong, Liu & Sun, 'Adaptive Gradient Methods with Dynamic Bound of Learning Rate', ICLR 2019, arXiv:1902.09843",
        keras_builtin=False,
        search_space={**_ADAM_SPACE, "final_lr": space.LogUniform(0.01, 1.0, default=0.1)},
    ),
    OptimizerInfo(
        name="amsbound",
        factory=AdaBound,
        family="adaptive",
        update_rule="AdaBound with v̂ ← max(v̂, v) (AMSGrad's maximum)",
        paper="Luo, Xiong, Liu & Sun, 'Adaptive Gradient Methods with Dynamic Bound of Learning Rate', ICLR 2019, arXiv:1902.09843",
        keras_builtin=False,
        defaults={"amsbound": True},
        search_space={**_ADAM_SPACE, "final_lr": space.LogUniform(0.01, 1.0, default=0.1)},
    ),
    OptimizerInfo(
        name="adam_then_sgd",
        factory=adam_then_sgd,
        family="switching",
        update_rule="Adam while phase = 0, then v ← μ v − η g;  θ ← θ + v once the phase variable is 1 (at switch_step or by callback)",
        paper="Keskar & Socher, 'Improving Generalization Performance by Switching from Adam to SGD', 2017, arXiv:1712.07628 (manual switch)",
        keras_builtin=False,
        search_space={
            **_ADAM_SPACE,
            "sgd_learning_rate": space.LogUniform(0.001, 0.1, default=0.01),
            "momentum": _MOMENTUM,
        },
    ),
    OptimizerInfo(
        name="swats",
        factory=SWATS,
        family="switching",
        update_rule="Adam until the averaged projected rate Λ of γ = p·p / (−p·g) settles (|Λ − γ| < 2 % of γ on 10 steps running), then SGD with momentum β₁ at rate Λ",
        paper="Keskar & Socher, 'Improving Generalization Performance by Switching from Adam to SGD', 2017, arXiv:1712.07628",
        keras_builtin=False,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="proximal_adagrad",
        aliases=("proximaladagrad",),
        factory=ProximalAdagrad,
        family="adaptive",
        update_rule="G ← G + g²;  η' = η/√G;  p = θ − η' g;  θ ← sign(p) max(|p| − η' ℓ₁, 0) / (1 + η' ℓ₂)",
        paper="Duchi & Singer, 'Efficient Online and Batch Learning Using Forward Backward Splitting', JMLR 2009",
        keras_builtin=False,
        suggested_learning_rate=0.05,
        search_space={
            "initial_accumulator_value": space.LogUniform(0.01, 1.0, default=0.1),
            "l1_regularization_strength": space.Uniform(0.0, 1e-3, default=0.0),
        },
    ),
    OptimizerInfo(
        name="conditional_gradient",
        aliases=("conditionalgradient",),
        factory=ConditionalGradient,
        family="sgd",
        update_rule="θ ← (1 − η) θ − η λ g / (‖g‖_F + ε)  (Frank-Wolfe on the ball ‖θ‖_F ≤ λ; ord='nuclear': λ u₁v₁ᵀ)",
        paper="Jaggi, 'Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization', ICML 2013",
        keras_builtin=False,
        # TensorFlow Addons' radius 0.01 holds no trained network: every
        # weight matrix of an MLP on digits would stay within 0.01 of zero.
        # The name stands for a ball large enough to learn in.
        defaults={"lambda_": 30.0},
        suggested_learning_rate=0.003,
        search_space={"lambda_": space.LogUniform(3.0, 300.0, default=30.0)},
    ),
    OptimizerInfo(
        name="lazy_adam",
        aliases=("lazyadam",),
        factory=LazyAdam,
        family="adaptive",
        update_rule="Adam on the rows a sparse gradient touches only (m, v, θ of other rows unchanged; duplicate rows summed); equals Adam for dense gradients, hence always on JAX and PyTorch",
        paper=_KINGMA + "; lazy sparse update of TensorFlow Addons' LazyAdam",
        keras_builtin=False,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="swa",
        factory=swa_sgd,
        family="sgd",
        update_rule="v ← μ v − η g;  θ ← θ + v;  every k steps from step m: θ̄ ← θ̄ + (θ − θ̄)/(n + 1), n ← n + 1 (θ̄ swapped in at the end)",
        paper="Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, 'Averaging Weights Leads to Wider Optima and Better Generalization', UAI 2018, arXiv:1803.05407",
        keras_builtin=False,
        suggested_learning_rate=0.01,
        search_space={
            "momentum": _MOMENTUM,
            "average_period": space.IntUniform(1, 50, default=10),
        },
    ),
    OptimizerInfo(
        name="yogi",
        factory=Yogi,
        family="adaptive",
        update_rule="m ← β₁m + (1−β₁)g;  v ← v − (1−β₂) sign(v − g²) g²;  θ ← θ − η m̂ / (√v + ε)  (TFA's bias correction √(1−β₂ᵗ)/(1−β₁ᵗ))",
        paper="Zaheer, Reddi, Sachan, Kale & Kumar, 'Adaptive Methods for Nonconvex Optimization', NeurIPS 2018",
        keras_builtin=False,
        suggested_learning_rate=0.01,
        search_space={
            **_ADAM_SPACE,
            "epsilon": space.LogUniform(1e-6, 1e-2, default=1e-3),
        },
    ),
    OptimizerInfo(
        name="adabelief",
        factory=AdaBelief,
        family="adaptive",
        update_rule="m ← β₁m + (1−β₁)g;  s ← β₂s + (1−β₂)(g − m)² + ε;  θ ← θ − η m̂ / (√ŝ + ε)",
        paper="Zhuang et al., 'AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients', NeurIPS 2020, arXiv:2010.07468",
        keras_builtin=False,
        search_space={
            **_ADAM_SPACE,
            "epsilon": space.LogUniform(1e-16, 1e-8, default=1e-14),
        },
    ),
    OptimizerInfo(
        name="rectified_adabelief",
        factory=AdaBelief,
        family="adaptive",
        update_rule="AdaBelief step times RAdam's rectifier r_t while ρ_t ≥ 5; momentum step η m̂ before",
        paper="Zhuang et al., 'AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients', NeurIPS 2020, arXiv:2010.07468; rectification from Liu et al., arXiv:1908.03265",
        keras_builtin=False,
        defaults={"rectify": True},
        search_space={
            **_ADAM_SPACE,
            "epsilon": space.LogUniform(1e-16, 1e-8, default=1e-14),
        },
    ),
    OptimizerInfo(
        name="novograd",
        factory=NovoGrad,
        family="adaptive",
        update_rule="v ← β₂v + (1−β₂)‖g‖² per variable (v₁ = ‖g₁‖²);  m ← β₁m + g / (√v + ε) + d θ;  θ ← θ − η m",
        paper="Ginsburg et al., 'Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks', 2019, arXiv:1905.11286",
        keras_builtin=False,
        suggested_learning_rate=0.01,
        search_space={
            **_ADAM_SPACE,
            "weight_decay": space.Uniform(0.0, 0.01, default=0.0),
        },
    ),
    OptimizerInfo(
        name="cocob",
        factory=COCOB,
        family="adaptive",
        update_rule="L ← max(L, |g|);  G ← G + |g|;  Θ ← Θ − g;  R ← max(R − x g, 0);  x' = Θ (L + R) / (L max(G + L, αL));  θ ← θ + η (x' − x);  x ← x'",
        paper="Orabona & Tommasi, 'Training Deep Networks without Learning Rates Through Coin Betting', NeurIPS 2017, arXiv:1705.07795",
        keras_builtin=False,
        suggested_learning_rate=1.0,
        search_space={
            "learning_rate": space.LogUniform(0.1, 3.0, default=1.0),
            "alpha": space.LogUniform(10.0, 1000.0, default=100.0),
        },
    ),
    OptimizerInfo(
        name="lookahead",
        factory=lookahead,
        family="adaptive",
        update_rule="θ ← Adam(θ, g) every step;  every k steps: φ ← φ + α(θ − φ), θ ← φ",
        paper=_ZHANG,
        keras_builtin=False,
        suggested_learning_rate=0.002,
        search_space={**_ADAM_SPACE, **_LOOKAHEAD_SPACE},
    ),
    OptimizerInfo(
        name="ranger",
        factory=ranger,
        family="adaptive",
        update_rule="θ ← RAdam(θ, g) every step;  every k steps: φ ← φ + α(θ − φ), θ ← φ",
        paper=(
            "Wright, 'New Deep Learning Optimizer, Ranger', 2019 (Lookahead around RAdam); "
            + _ZHANG
            + "; Liu et al., 'On the Variance of the Adaptive Learning Rate and Beyond', "
            "ICLR 2020, arXiv:1908.03265"
        ),
        keras_builtin=False,
        suggested_learning_rate=0.002,
        search_space={**_ADAM_SPACE, **_LOOKAHEAD_SPACE},
    ),
    OptimizerInfo(
        name="lion",
        factory=keras.optimizers.Lion,
        family="adaptive",
        update_rule="u = sign(β₁m + (1−β₁)g);  θ ← θ − η u;  m ← β₂m + (1−β₂)g",
        paper="Chen et al., 'Symbolic Discovery of Optimization Algorithms', NeurIPS 2023, arXiv:2302.06675",
        keras_builtin=True,
        # The paper's rule: 3-10 times smaller than AdamW's rate (Adam's
        # suggestion here is 1e-3); on digits it trains as Adam at 1e-3.
        suggested_learning_rate=3e-4,
        search_space={
            "beta_1": _BETA_1,
            "beta_2": space.OneMinusLogUniform(0.9, 0.999, default=0.99),
        },
    ),
    OptimizerInfo(
        name="lamb",
        factory=keras.optimizers.Lamb,
        family="adaptive",
        update_rule="u = m̂ / (√v̂ + ε) (Adam);  θ ← θ − η (‖θ‖/‖u‖) u per variable (ratio 1 where ‖θ‖ or ‖u‖ is 0; Keras: weight decay outside the ratio)",
        paper="You et al., 'Large Batch Optimization for Deep Learning: Training BERT in 76 minutes', ICLR 2020, arXiv:1904.00962",
        keras_builtin=True,
        suggested_learning_rate=3e-3,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="muon",
        factory=keras.optimizers.Muon,
        family="adaptive",
        update_rule="2-D variables: m ← μm + g;  θ ← θ − η·0.2·√max(rows, cols)·NS₅(g + μm), NS₅ ≈ UVᵀ of its SVD (5 Newton-Schulz steps);  every other variable: AdamW",
        paper="Jordan et al., 'Muon: An optimizer for hidden layers in neural networks', 2024 (kellerjordan.github.io/posts/muon); Liu et al., 'Muon is Scalable for LLM Training', 2025, arXiv:2502.16982",
        keras_builtin=True,
        suggested_learning_rate=3e-3,
        search_space={"momentum": space.OneMinusLogUniform(0.5, 0.99, default=0.95)},
    ),
    OptimizerInfo(
        name="adafactor",
        factory=keras.optimizers.Adafactor,
        family="adaptive",
        update_rule="β̂₂ = 1 − t^−0.8;  R ← β̂₂R + (1−β̂₂) row means of g²+ε₁, C likewise for columns;  V = R Cᵀ / mean(R) (full V below rank 2);  u = g/√V, scaled to RMS ≤ 1;  θ ← θ − max(ε₂, RMS(θ)) min(η, 1/√t) u",
        paper="Shazeer & Stern, 'Adafactor: Adaptive Learning Rates with Sublinear Memory Cost', ICML 2018, arXiv:1804.04235",
        keras_builtin=True,
        # Keras forms V = R Cᵀ / mean(R) before dividing: where a row and a
        # column of a gradient are both zero (a pixel always 0 in digits, a
        # dead ReLU), ε₁² / mean(R) underflows float32 with Keras' ε₁ = 1e-30,
        # g / √V is 0/0 and the RMS scaling spreads the NaN over the whole
        # variable. With ε₁ = 1e-15 that product stays a normal float32 for
        # mean(R) up to 1e8, and ε₁ is still far below any g² that matters.
        defaults={"epsilon_1": 1e-15},
        # The paper's relative step size min(1e-2, 1/√t).
        suggested_learning_rate=1e-2,
    ),
    OptimizerInfo(
        name="ftrl",
        factory=keras.optimizers.Ftrl,
        family="adaptive",
        update_rule="n' = n + g²;  z ← z + g − (√n' − √n)/η θ;  θ ← −(z − clip(z, ±ℓ₁)) / (√n'/η + 2ℓ₂);  n ← n'  (n₀ = 0.1)",
        paper="McMahan et al., 'Ad Click Prediction: a View from the Trenches', KDD 2013",
        keras_builtin=True,
        suggested_learning_rate=0.1,
    ),
    OptimizerInfo(
        name="keras_schedule_free_adamw",
        aliases=("schedulefreeadamw",),
        factory=keras.optimizers.ScheduleFreeAdamW,
        family="adaptive",
        update_rule="v ← β₂v + (1−β₂)g²;  z ← z − η g / (√(v/(1−β₂ᵗ)) + ε);  x ← (1 − 1/t) x + z/t;  θ = y ← (1−β₁) z + β₁ x, g taken at y (Keras keeps no x: the model holds y, in evaluation too)",
        paper="Defazio et al., 'The Road Less Scheduled', NeurIPS 2024, arXiv:2405.15682",
        keras_builtin=True,
        # Keras' default and the schedule-free repository's AdamW example.
        suggested_learning_rate=2.5e-3,
        search_space=_ADAM_SPACE,
    ),
    OptimizerInfo(
        name="adopt",
        factory=ADOPT,
        family="adaptive",
        update_rule="ĝ = clip(g / max(√v, ε), ±t^¼);  m ← β₁m + (1−β₁)ĝ;  θ ← θ − η m;  v ← β₂v + (1−β₂)g²  (v₀ = g₀², no move at step 0)",
        paper="Taniguchi et al., 'ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal Rate', NeurIPS 2024, arXiv:2411.02853",
        keras_builtin=False,
        search_space={
            "beta_1": _BETA_1,
            # The method's point: any β₂ converges; the authors' 0.9999.
            "beta_2": space.OneMinusLogUniform(0.9, 0.9999, default=0.9999),
        },
    ),
    OptimizerInfo(
        name="mars",
        factory=MARS,
        family="adaptive",
        update_rule="2-D variables: c = g + γβ₁/(1−β₁) (g − g_prev), clipped to ‖c‖ ≤ 1;  AdamW on c (m̂ / (√v̂ + ε) + λθ);  every other variable: AdamW on g",
        paper="Yuan et al., 'MARS: Unleashing the Power of Variance Reduction for Training Large Models', ICML 2025, arXiv:2411.10438",
        keras_builtin=False,
        suggested_learning_rate=3e-3,
        search_space={
            "beta_1": space.OneMinusLogUniform(0.5, 0.99, default=0.95),
            "beta_2": space.OneMinusLogUniform(0.9, 0.999, default=0.99),
            "gamma": space.LogUniform(0.005, 0.1, default=0.025),
        },
    ),
    OptimizerInfo(
        name="soap",
        factory=SOAP,
        family="adaptive",
        update_rule="each mode k of a matrix or tensor: L_k ← β₂L_k + (1−β₂) g₍ₖ₎g₍ₖ₎ᵀ, Q_k its eigenvectors (eigh at step 0, then one power step and QR every f steps);  Adam's m, v of ĝ = Qᵀg;  θ ← θ − η Q(m̂ / (√v̂ + ε));  θ ← (1 − ηλ)θ  (no move at step 0; 1-D variables: no rotation)",
        paper="Vyas et al., 'SOAP: Improving and Stabilizing Shampoo using Adam', ICLR 2025, arXiv:2409.11321",
        keras_builtin=False,
        suggested_learning_rate=3e-3,
        search_space={
            "beta_1": space.OneMinusLogUniform(0.5, 0.99, default=0.95),
            "beta_2": space.OneMinusLogUniform(0.9, 0.999, default=0.95),
        },
    ),
    OptimizerInfo(
        name="prodigy",
        factory=Prodigy,
        family="adaptive",
        update_rule="Adam with step η d (moments of d g);  d = largest c r/‖s‖₁ so far, r ← β₃r + w⟨g, x₀ − x⟩, s ← β₃s + w g over all variables, w = η d²/d₀, d₀ = 1e-6",
        paper="Mishchenko & Defazio, 'Prodigy: An Expeditiously Adaptive Parameter-Free Learner', ICML 2024, arXiv:2306.06101",
        keras_builtin=False,
        suggested_learning_rate=1.0,
        search_space={
            "learning_rate": _NEAR_ONE,
            # The authors' knob for a step larger or smaller than estimated.
            "d_coef": space.LogUniform(0.1, 10.0, default=1.0),
        },
    ),
    OptimizerInfo(
        name="dadapt_adam",
        aliases=("dadaptadam",),
        factory=DAdaptAdam,
        family="adaptive",
        update_rule="Adam with step η d (λ = η d in m);  d ← max(d, r / ((1−γ)‖s‖₁)), r ← γr + (1−γ)λ⟨g, s/(√v + ε)⟩, s ← γs + (1−γ)λg over all variables, γ = √β₂, d₀ = 1e-6",
        paper="Defazio & Mishchenko, 'Learning-Rate-Free Learning by D-Adaptation', ICML 2023, arXiv:2301.07733",
        keras_builtin=False,
        suggested_learning_rate=1.0,
        search_space={"learning_rate": _NEAR_ONE},
    ),
    OptimizerInfo(
        name="schedule_free_sgd",
        factory=ScheduleFreeSGD,
        family="sgd",
        update_rule="y = (1−β) z + β x;  z ← z − η g(y);  x ← (1 − c) x + c z, c = η²/Ση²  (x is the model to evaluate)",
        paper=_DEFAZIO_2024,
        keras_builtin=False,
        suggested_learning_rate=SUGGESTED_SCHEDULE_FREE_SGD,
        search_space={"momentum": _MOMENTUM},
    ),
    OptimizerInfo(
        name="schedule_free_adamw",
        factory=ScheduleFreeAdamW,
        family="adaptive",
        update_rule="v ← β₂v + (1−β₂)g(y)²;  z ← z − η (g(y)/(√v̂ + ε) + λ y);  x ← (1 − c) x + c z, c = η²/Ση²;  y = (1−β₁) z + β₁ x",
        paper=_DEFAZIO_2024,
        keras_builtin=False,
        suggested_learning_rate=SUGGESTED_SCHEDULE_FREE_ADAMW,
        search_space=_ADAM_SPACE,
    ),
):
    register(_info)
del _info
