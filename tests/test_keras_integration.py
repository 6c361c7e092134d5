"""Keras finds keras_optlab's classes and names the way it finds its own:
`import keras_optlab` alone registers every class for loading, the optimizer
registry's names work where Keras takes a string, and the `optlab` command's
`--backend` still chooses the backend although the package imports keras."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import BACKEND, regression_data, small_model
from keras_optlab import _backend, optimizers
from keras_optlab.optimizers import RAdam, SteerableOptimizer
from keras_optlab.schedules import StepDecay, Warmup

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _python(code: str, argv0: str | None = None, env: dict | None = None) -> str:
    """Runs `code` in a fresh interpreter that imports this checkout; its stdout."""
    if argv0 is not None:
        code = f"import sys; sys.argv = [{argv0!r}, *sys.argv[1:]]\n" + code
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


# What a fresh process must find is the registration of keras_optlab's
# classes with Keras' serialization, which importing the package does on
# every backend alike (saving and loading within each backend's own
# process is checked in test_every_optimizer.py). The test took 7 s in the
# JAX pass against 11.5 s on TensorFlow and 12.8 s on PyTorch (fresh-clone
# CI), so it runs in the JAX pass only.
if BACKEND == "jax":

    def test_a_fresh_process_that_imports_only_keras_optlab_loads_our_optimizers_and_schedules(tmp_path):
        x, y = regression_data(n=16)
        ours = small_model()
        ours.compile(optimizer=RAdam(StepDecay(0.01, 2, 0.5)), loss="mse")
        keras_own = small_model()
        keras_own.compile(
            optimizer=keras.optimizers.Adam(
                Warmup(keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5), 3)
            ),
            loss="mse",
        )
        for model, name in ((ours, "radam"), (keras_own, "adam")):
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
            model.save(tmp_path / f"{name}.keras")
        expected = [
            float(keras.ops.convert_to_numpy(m.optimizer.learning_rate)) for m in (ours, keras_own)
        ]
        loaded = json.loads(_python(
            "import json, os, keras, keras_optlab\n"
            f"folder = {str(tmp_path)!r}\n"
            "models = [keras.saving.load_model(os.path.join(folder, n))\n"
            "          for n in ('radam.keras', 'adam.keras')]\n"
            "print(json.dumps([[type(m.optimizer).__name__, type(m.optimizer._learning_rate).__name__,\n"
            "                   float(keras.ops.convert_to_numpy(m.optimizer.learning_rate))] for m in models]))",
            env={"KERAS_BACKEND": BACKEND},
        ))
        assert [row[:2] for row in loaded] == [["RAdam", "StepDecay"], ["Adam", "Warmup"]]
        # Four steps done: StepDecay(0.01, 2, 0.5) at step 4 is 0.01 * 0.5 ** 2;
        # the warmup is over and ExponentialDecay is at its step 1.
        np.testing.assert_allclose([row[2] for row in loaded], expected, rtol=1e-6)
        np.testing.assert_allclose(expected, [0.01 * 0.5**2, 0.01 * 0.5 ** (1 / 10)], rtol=1e-6)


@pytest.mark.parametrize("name", optimizers.list_optimizers())
def test_every_registry_name_works_as_a_keras_optimizer_string(name):
    model = small_model()
    model.compile(optimizer=name, loss="mse")
    assert type(model.optimizer) is type(optimizers.get(name))
    assert isinstance(keras.optimizers.get(name), keras.optimizers.Optimizer)


def test_a_registry_name_given_to_keras_gets_the_registry_defaults():
    nag = keras.optimizers.get("nag")
    assert isinstance(nag, keras.optimizers.SGD)
    assert (nag.momentum, nag.nesterov) == (optimizers.get("nag").momentum, True)


def test_steerable_optimizer_survives_serialization():
    optimizer = SteerableOptimizer(0.02, name="steerable")
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is SteerableOptimizer
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-m", "surface", "--backend", "jax"], "jax"),
        (["/venv/bin/optlab", "compare", "--backend=torch"], "torch"),
        (["/venv/bin/optlab", "compare", "--backend", "theano"], None),  # left to the parser's error
        (["/venv/bin/optlab", "compare", "--", "--backend", "jax"], None),
        (["train.py", "--backend", "jax"], None),  # not the optlab command: the user's own flag
    ],
)
def test_backend_is_read_from_the_optlab_command_line_only(argv, expected):
    found = _backend.requested_backend(argv[1:]) if _backend.is_command_line(argv) else None
    assert found == expected


# What this checks, that the package sets KERAS_BACKEND from `--backend`
# before it imports keras, does not depend on the backend the suite runs:
# it runs in the PyTorch pass only, whose process starts another backend
# (JAX), 4-7 s a pass.
if BACKEND == "torch":

    def test_optlab_backend_is_set_before_the_package_imports_keras():
        # As `python -m keras_optlab surface --backend jax` is started:
        # argv[0] is "-m" while the package is imported.
        chosen = _python(
            "import sys; sys.argv[1:] = ['surface', '--backend', 'jax']\n"
            "import keras_optlab, keras; print(keras.backend.backend())",
            argv0="-m", env={"KERAS_BACKEND": "torch"},
        )
        assert chosen == "jax"
