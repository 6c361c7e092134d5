"""Learning-rate schedules that compose, and a registry of them by name."""

from keras_optlab.schedules.composition import Join, Warmup
from keras_optlab.schedules.cyclical import CyclicalLearningRate, OneCycle
from keras_optlab.schedules.decay import CappedExponentialDecay, StepDecay
from keras_optlab.schedules.plot import plot
from keras_optlab.schedules.registry import (
    ScheduleInfo,
    get,
    info,
    list_schedules,
    register,
)

__all__ = [
    "CappedExponentialDecay",
    "CyclicalLearningRate",
    "Join",
    "OneCycle",
    "ScheduleInfo",
    "StepDecay",
    "Warmup",
    "get",
    "info",
    "list_schedules",
    "plot",
    "register",
]
