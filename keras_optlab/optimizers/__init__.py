"""Optimizers Keras lacks, and a registry of every optimizer by name."""

from keras_optlab.optimizers.adabound import AdaBound
from keras_optlab.optimizers.lookahead import Lookahead
from keras_optlab.optimizers.base import SteerableOptimizer, lr_scale_of
from keras_optlab.optimizers.radam import RAdam
from keras_optlab.optimizers.steered import Steered
from keras_optlab.optimizers.swats import SWATS
from keras_optlab.optimizers.switching import SwitchingOptimizer
from keras_optlab.optimizers.registry import (
    OptimizerInfo,
    get,
    info,
    list_optimizers,
    register,
)

__all__ = [
    "AdaBound",
    "Lookahead",
    "OptimizerInfo",
    "RAdam",
    "SWATS",
    "SteerableOptimizer",
    "Steered",
    "SwitchingOptimizer",
    "get",
    "info",
    "list_optimizers",
    "lr_scale_of",
    "register",
]
