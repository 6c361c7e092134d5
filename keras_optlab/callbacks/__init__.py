"""Callbacks that steer training by writing optimizer-owned variables."""

from keras_optlab.callbacks.lr_logger import LearningRateLogger
from keras_optlab.callbacks.plateau import ReduceLROnPlateau
from keras_optlab.callbacks.schedule_free import ScheduleFreeEval
from keras_optlab.callbacks.switch import SwitchOptimizer
from keras_optlab.callbacks.registry import CallbackInfo, list_callbacks

__all__ = ["CallbackInfo", "LearningRateLogger", "ReduceLROnPlateau", "ScheduleFreeEval", "SwitchOptimizer", "list_callbacks"]
