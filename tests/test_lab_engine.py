"""The trial engine: a run on a reused compiled model equals a run on a
fresh one; tuned hyperparameters reach the compiled step through
variables; what cannot be reused is compiled again and counted."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import BACKEND, compiled_apply
from keras_optlab.lab import candidates, live
from keras_optlab.lab.engine import Engine
from keras_optlab.optimizers import list_optimizers

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_lab_engine")

# Reused and fresh histories agree to this relative tolerance (the same
# arithmetic; TensorFlow's graph may fuse differently between functions).
RTOL = 1e-5 if BACKEND == "tensorflow" else 1e-6


@pytest.fixture(scope="module")
def work():
    from sklearn.datasets import load_digits

    from keras_optlab.lab.workload import make_workload

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    # 70 validation examples: not a multiple of the batch size.
    arrays = {"x_train": x[:192], "y_train": y[:192], "x_val": x[192:262], "y_val": y[192:262]}
    return make_workload("mlp", arrays, seed=0)


def engine(work):
    return Engine(work, epochs=2, batch_size=32, steps_per_execution=1 if BACKEND == "torch" else 3)


# (candidate, hyperparameters, seed), in the order the shared engine runs
# them: settings change between runs, seeds come back.
RUNS = [
    ("adam", {"learning_rate": 0.003, "beta_1": 0.8, "beta_2": 0.99}, 1),
    ("nag", {"learning_rate": 0.05, "momentum": 0.8}, 1),
    ("adam", {"learning_rate": 0.001, "beta_1": 0.95, "beta_2": 0.9995}, 2),
    ("radam", {"learning_rate": 0.01, "beta_1": 0.85, "beta_2": 0.99}, 1),
    ("adam+plateau", {"learning_rate": 0.002, "plateau.factor": 0.3, "plateau.patience": 1}, 1),
    ("radam", {"learning_rate": 0.002, "beta_1": 0.9, "beta_2": 0.9999}, 2),
    ("nag", {"learning_rate": 0.01, "momentum": 0.95}, 2),
    ("adam+step", {"learning_rate": 0.003, "step.factor": 0.3, "step.drop_every": 0.5}, 1),
    ("adam+step", {"learning_rate": 0.001, "step.factor": 0.6, "step.drop_every": 0.5}, 2),
]


@pytest.fixture(scope="module")
def reused(work):
    shared = engine(work)
    records = [shared.run(candidates.parse_candidate(c), hp, seed) for c, hp, seed in RUNS]
    return shared, records


# The runs on a compiled model that an earlier run used: a seed back after
# another seed, a setting after another setting, adam+plateau on adam's
# model. The first run on each compiled model takes the path of a fresh
# engine's run, so comparing it with one would compare a path with itself.
REUSED = (2, 4, 5, 6, 8)


@pytest.mark.parametrize("index", REUSED, ids=[f"{RUNS[i][0]}-seed{RUNS[i][2]}-{i}" for i in REUSED])
def test_a_reused_run_equals_a_fresh_one(work, reused, index):
    name, hyperparameters, seed = RUNS[index]
    fresh = engine(work).run(candidates.parse_candidate(name), hyperparameters, seed)
    record = reused[1][index]
    assert record.initial_weights_sha256 == fresh.initial_weights_sha256
    assert set(record.history) == set(fresh.history)
    for key, values in fresh.history.items():
        np.testing.assert_allclose(record.history[key], values, rtol=RTOL, atol=1e-7, err_msg=key)


def test_trials_and_seeds_reuse_one_compiled_model_per_optimizer_without_retracing(reused):
    shared, records = reused
    counts = shared.counts()
    # adam+plateau shares adam's model; adam+step has a schedule of its own.
    assert {name: c["compiled"] for name, c in counts.items()} == {
        "adam": 1, "nag": 1, "radam": 1, "adam+step": 1, "adam+plateau": 0,
    }
    assert all(c["retraces"] == 0 for c in counts.values())
    if shared.counts_traces:
        # The first run traced the train step once and the evaluation step
        # not at all: validation is scored in batches of the shape the
        # compiled model's building evaluation had.
        assert [c.traces[0] for c in shared._compiled] == [1, 1, 1, 1]
    # The runs differ: the hyperparameters really reached the compiled step.
    first_adam, second_adam = records[0].history["loss"], records[2].history["loss"]
    assert first_adam != second_adam


def scored_batches(fit_kwargs):
    """Sizes of the validation batches `fit` is given."""
    if "validation_batch_size" in fit_kwargs:
        rows, size = len(fit_kwargs["validation_data"][0]), fit_kwargs["validation_batch_size"]
        return [min(size, rows - start) for start in range(0, rows, size)]
    return [int(x.shape[0]) for x, _ in fit_kwargs["validation_data"]]


def test_validation_is_scored_in_one_batch_up_to_1024_examples(work):
    import dataclasses

    assert scored_batches(work.fit_data(32, seed=1)) == [70]
    assert scored_batches(work.fit_data(100, seed=1)) == [70]
    x, y = work.validation
    large = dataclasses.replace(
        work, validation=(np.tile(x, (20, 1))[:1025], np.tile(y, 20)[:1025]), validation_examples=1025
    )
    assert scored_batches(large.fit_data(32, seed=1)) == [32] * 32 + [1]
    assert scored_batches(large.fit_data(2048, seed=1)) == [1025]


def test_the_first_run_starts_from_the_seeds_initial_weights(work, reused):
    from keras_optlab.lab.records import weights_fingerprint

    _, records = reused
    for (name, _, seed), record in zip(RUNS, records):
        assert record.initial_weights_sha256 == weights_fingerprint(work.template(seed).get_weights())


def test_a_value_no_variable_can_hold_compiles_again_and_is_counted(work):
    # Piecewise-constant decay holds its rates in a list, built into the
    # graph: a new factor needs a new compiled model.
    shared = engine(work)
    piecewise = candidates.parse_candidate("adam+piecewise_constant")
    first = shared.run(piecewise, {"piecewise_constant.factor": 0.1}, 1)
    second = shared.run(piecewise, {"piecewise_constant.factor": 0.3}, 1)
    # The first setting again, on another seed: its model is reused.
    again = shared.run(piecewise, {"piecewise_constant.factor": 0.1}, 2)
    assert shared.counts()["adam+piecewise_constant"] == {"compiled": 2, "retraces": 0}
    # The model compiled for the second value trains as a fresh one. (A
    # run on a reused model equals a fresh one: the test above.)
    fresh = engine(work).run(piecewise, {"piecewise_constant.factor": 0.3}, 1)
    np.testing.assert_allclose(second.history["loss"], fresh.history["loss"], rtol=RTOL)
    assert first.history["loss"] != second.history["loss"]
    assert again.history["loss"] != first.history["loss"]  # another seed


# --- live hyperparameters on raw variables ---------------------------------

def _a_third_of_the_way(space, values):
    """Every hyperparameter a third of the way from its value to the far
    end of its range."""
    out = {}
    for name, dimension in space.items():
        value = values[name]
        end = dimension.high if value - dimension.low < dimension.high - value else dimension.low
        moved = value + (end - value) / 3
        out[name] = int(round(moved)) if isinstance(dimension.default, int) else moved
    return out


def _gradient(x):
    return 0.5 * x + 0.3 * np.sin(3.0 * x)


START = np.linspace(-1.5, 2.0, 6).astype("float32")


def _run(step, variable, steps):
    values = []
    for _ in range(steps):
        step([_gradient(np.array(variable).astype(np.float64)).astype("float32")])
        values.append(np.array(variable).astype(np.float64))
    return np.array(values)


# The seed family and the tuner's default candidates: their trials must
# never compile again.
NEVER_RECOMPILED = ("sgd", "momentum", "nag", "adagrad", "adadelta", "rmsprop", "adam", "radam")


@pytest.mark.parametrize("name", list_optimizers())
def test_values_set_through_variables_train_as_values_built_in(name):
    """Built with its defaults, traced and stepped once, then given other
    values through its variables and reset, the optimizer takes the steps
    of one built with those values: no value is kept where the variable
    cannot reach it."""
    candidate = candidates.parse_candidate(name)
    defaults = candidate.defaults()
    others = _a_third_of_the_way(candidate.search_space(), defaults)
    optimizer, _ = candidate.build(defaults, 10, 4)
    bindings = live.Bindings(optimizer, live.varying(candidate, defaults, 10, 4))
    assert bindings.bound, "no hyperparameter of the search space was found in the optimizer"
    variable = keras.Variable(START)
    with live.building():
        optimizer.build([variable])
    bound = {id(v) for v in bindings.variables}
    initial = [(v, np.array(v)) for v in optimizer.variables if id(v) not in bound]
    step = compiled_apply(optimizer, [variable])
    # Traced and stepped with the defaults: the steps that other values
    # must move away from.
    with_defaults = _run(step, variable, 40)

    built_in, _ = candidate.build(others, 10, 4)
    config = live.config_of(built_in)
    if not bindings.accepts(config):
        # Read as a Python number while building or tracing: the engine
        # compiles again for this optimizer (counted), never silently.
        assert name not in NEVER_RECOMPILED
        return
    bindings.assign(config)
    for v, value in initial:
        v.assign(value)
    variable.assign(START)
    actual = _run(step, variable, 40)

    plain = keras.Variable(START)
    expected = _run(compiled_apply(built_in, [plain]), plain, 40)
    # Hyperparameters in float32 variables: 1 - beta_2 carries float32's
    # 6e-8 on beta_2 (6e-5 relative at 0.999), against float64 on the host.
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-5)
    # The values really moved the steps away from the defaults' steps.
    assert not np.allclose(with_defaults, expected)


def test_a_slot_that_starts_at_the_weights_starts_at_each_runs_own_weights(work):
    # Keras' ScheduleFreeAdamW builds z as a copy of the weights; the model
    # is compiled once, with seed 0's. At a learning rate of 0 nothing
    # moves, so after a run z must still hold that run's initial weights.
    shared = engine(work)
    candidate = candidates.parse_candidate("keras_schedule_free_adamw")
    for seed in (1, 2):
        shared.run(candidate, {"learning_rate": 0.0}, seed)
        optimizer = shared._compiled[0].model.optimizer
        kernel = work.template(seed).get_weights()[0]
        z = [v for v in optimizer.variables if v.name.endswith("kernel_momentum")][0]
        assert z.shape == kernel.shape
        np.testing.assert_array_equal(np.array(z), kernel)
