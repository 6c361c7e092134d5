"""keras_optlab: optimizers, schedules and training control for Keras 3."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Subpackages load on first use rather than here: importing them imports
# keras, and the `optlab` command must set KERAS_BACKEND from its `--backend`
# flag before keras is imported. `from keras_optlab import optimizers` and
# `keras_optlab.optimizers` work as before.
_SUBPACKAGES = ("callbacks", "lab", "optimizers", "schedules")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_optlab.{name}")
    raise AttributeError(f"module 'keras_optlab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])
