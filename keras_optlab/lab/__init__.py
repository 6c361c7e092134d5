"""The lab: compare and tune optimizers on real data, find a learning rate,
and draw what happened.

`compare`, `tune`, `find_lr` and `surface` are the Python side of the
`optlab` command's `compare`, `tune`, `find-lr` and `surface`. Names load on first use, so
that `keras_optlab.lab.cli` can choose the Keras backend before keras is
imported.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "compare": "keras_optlab.lab.runs",
    "CompareResults": "keras_optlab.lab.runs",
    "RunRecord": "keras_optlab.lab.runs",
    "default_optimizers": "keras_optlab.lab.runs",
    "find_lr": "keras_optlab.lab.lr_range",
    "FindLRResult": "keras_optlab.lab.lr_range",
    "tune": "keras_optlab.lab.tuning",
    "TuneResults": "keras_optlab.lab.tuning",
    "BUDGETS": "keras_optlab.lab.tuning",
    "parse_candidate": "keras_optlab.lab.candidates",
    "Candidate": "keras_optlab.lab.candidates",
    "surface": "keras_optlab.lab.surfaces",
    "SurfaceResult": "keras_optlab.lab.surfaces",
    "TEST_FUNCTIONS": "keras_optlab.lab.surfaces",
    "load_dataset": "keras_optlab.lab.data",
    "DATASETS": "keras_optlab.lab.data",
    "build_model": "keras_optlab.lab.models",
    "MODELS": "keras_optlab.lab.models",
    "UsageError": "keras_optlab.lab.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'keras_optlab.lab' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
