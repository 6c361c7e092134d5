"""keras_optlab: optimizers, schedules and training control for Keras 3."""

__version__ = "0.1.0"

from keras_optlab import callbacks, optimizers, schedules  # noqa: E402,F401
