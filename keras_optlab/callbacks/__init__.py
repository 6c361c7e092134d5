"""Callbacks that steer training by writing optimizer-owned variables."""

from keras_optlab.callbacks.lr_logger import LearningRateLogger

__all__ = ["LearningRateLogger"]
