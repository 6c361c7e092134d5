"""Optimizers Keras lacks, and a registry of every optimizer by name."""

from keras_optlab.optimizers.adabelief import AdaBelief
from keras_optlab.optimizers.adabound import AdaBound
from keras_optlab.optimizers.adopt import ADOPT
from keras_optlab.optimizers.base import SteerableOptimizer, lr_scale_of
from keras_optlab.optimizers.cocob import COCOB
from keras_optlab.optimizers.conditional_gradient import ConditionalGradient
from keras_optlab.optimizers.dadapt_adam import DAdaptAdam
from keras_optlab.optimizers.lazy_adam import LazyAdam
from keras_optlab.optimizers.lookahead import Lookahead
from keras_optlab.optimizers.mars import MARS
from keras_optlab.optimizers.novograd import NovoGrad
from keras_optlab.optimizers.prodigy import Prodigy
from keras_optlab.optimizers.proximal_adagrad import ProximalAdagrad
from keras_optlab.optimizers.radam import RAdam
from keras_optlab.optimizers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from keras_optlab.optimizers.soap import SOAP
from keras_optlab.optimizers.steered import Steered
from keras_optlab.optimizers.swa import SWA
from keras_optlab.optimizers.swats import SWATS
from keras_optlab.optimizers.switching import SwitchingOptimizer
from keras_optlab.optimizers.yogi import Yogi
from keras_optlab.optimizers.registry import (
    OptimizerInfo,
    get,
    info,
    list_optimizers,
    register,
)

__all__ = [
    "ADOPT",
    "AdaBelief",
    "AdaBound",
    "COCOB",
    "ConditionalGradient",
    "DAdaptAdam",
    "LazyAdam",
    "Lookahead",
    "MARS",
    "NovoGrad",
    "OptimizerInfo",
    "Prodigy",
    "ProximalAdagrad",
    "RAdam",
    "SOAP",
    "SWA",
    "SWATS",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "SteerableOptimizer",
    "Steered",
    "SwitchingOptimizer",
    "Yogi",
    "get",
    "info",
    "list_optimizers",
    "lr_scale_of",
    "register",
]
