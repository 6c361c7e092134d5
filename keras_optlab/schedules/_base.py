"""The base of keras_optlab's schedules: a `name`, as Keras' schedules have.

A subclass writes `rate(step)`; calling the schedule evaluates it inside
`keras.name_scope(name)`, as `keras.optimizers.schedules.ExponentialDecay`
and its siblings do, and `get_config` carries the name.
"""

from __future__ import annotations

import keras

from keras_optlab import _validation


class NamedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A `LearningRateSchedule` with a `name`, evaluated in its name scope."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = _validation.check_name("name", name)

    def rate(self, step):
        """The learning rate at `step`; subclasses write it."""
        raise NotImplementedError

    def __call__(self, step):
        with keras.name_scope(self.name):
            return self.rate(step)
