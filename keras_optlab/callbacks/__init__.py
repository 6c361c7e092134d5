"""Callbacks that steer training by writing optimizer-owned variables."""

from keras_optlab.callbacks.lr_logger import LearningRateLogger
from keras_optlab.callbacks.plateau import ReduceLROnPlateau
from keras_optlab.callbacks.switch import SwitchOptimizer

__all__ = ["LearningRateLogger", "ReduceLROnPlateau", "SwitchOptimizer"]
