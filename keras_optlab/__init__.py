"""keras_optlab: optimizers, schedules and training control for Keras 3.

Importing the package registers every optimizer, schedule and callback
class with Keras (`keras.saving.register_keras_serializable`), so
`keras.saving.load_model` finds them, and makes the optimizer registry's
names usable where Keras takes a string (`model.compile(optimizer="radam")`).
"""

from __future__ import annotations

import importlib

from keras_optlab import _backend

__version__ = "0.1.0"

# Importing the subpackages below imports keras, which fixes the backend;
# the `optlab` command's `--backend` must be in KERAS_BACKEND before that.
_backend.apply_command_line_backend()

from keras_optlab import callbacks, optimizers, schedules  # noqa: E402

# The lab loads on first use: it imports matplotlib, optuna and scikit-learn,
# which a user of the optimizers alone does not need.
_LAZY = ("lab",)


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"keras_optlab.{name}")
    raise AttributeError(f"module 'keras_optlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
