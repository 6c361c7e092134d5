"""Search spaces: the dimension types, and the spaces every registry entry
declares (each registered optimizer, schedule and callback, without a list
here)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from conftest import BACKEND
from keras_optlab import search_space as space
from keras_optlab.callbacks import registry as callback_registry
from keras_optlab.optimizers import registry as optimizer_registry
from keras_optlab.schedules import registry as schedule_registry


def test_uniform_ends_and_middle():
    dimension = space.Uniform(0.1, 0.7, default=0.5)
    assert dimension.from_unit(0.0) == pytest.approx(0.1)
    assert dimension.from_unit(1.0) == pytest.approx(0.7)
    assert dimension.from_unit(0.5) == pytest.approx(0.4)


def test_log_uniform_middle_is_the_geometric_mean():
    dimension = space.LogUniform(1e-4, 1e-2, default=1e-3)
    assert dimension.from_unit(0.5) == pytest.approx(math.sqrt(1e-4 * 1e-2))
    assert dimension.from_unit(0.0) == pytest.approx(1e-4)
    assert dimension.from_unit(1.0) == pytest.approx(1e-2)


def test_one_minus_log_uniform_is_log_uniform_in_one_minus_value():
    dimension = space.OneMinusLogUniform(0.9, 0.9999, default=0.999)
    assert dimension.from_unit(0.0) == pytest.approx(0.9)
    assert dimension.from_unit(1.0) == pytest.approx(0.9999)
    # 1 - value is the geometric mean of 0.1 and 1e-4 halfway.
    assert 1 - dimension.from_unit(0.5) == pytest.approx(math.sqrt(0.1 * 1e-4))


def test_int_uniform_reaches_every_integer_once_per_equal_share():
    dimension = space.IntUniform(1, 5, default=2)
    values = [dimension.from_unit(u) for u in np.linspace(0, 1, 1001)]
    assert set(values) == {1, 2, 3, 4, 5}
    counts = np.bincount(values)[1:]
    assert counts.min() >= 190 and counts.max() <= 210


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: space.Uniform(1.0, 1.0, default=1.0), "greater than `low`"),
        (lambda: space.Uniform(0.0, 1.0, default=2.0), "`default`"),
        (lambda: space.LogUniform(0.0, 1.0, default=0.5), "`low`"),
        (lambda: space.OneMinusLogUniform(0.5, 1.0, default=0.9), "`high`"),
        (lambda: space.IntUniform(1, 5, default=2.5), "`default`"),
    ],
)
def test_bad_dimensions_are_rejected(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_a_space_must_hold_dimensions():
    with pytest.raises(TypeError, match="Dimension"):
        space.check_space({"momentum": (0.5, 0.99)}, "optimizer 'x'")


def _argument_default(factory, entry_defaults, name):
    parameters = inspect.signature(factory).parameters
    assert name in parameters, f"{name} is not an argument of {factory}"
    return entry_defaults.get(name, parameters[name].default)


@pytest.mark.parametrize("name", optimizer_registry.list_optimizers())
def test_every_optimizer_tunes_its_learning_rate_around_the_suggestion(name):
    entry = optimizer_registry.info(name)
    rate = entry.search_space["learning_rate"]
    assert isinstance(rate, space.LogUniform)
    assert rate.default == entry.suggested_learning_rate
    assert rate.low < entry.suggested_learning_rate < rate.high


@pytest.mark.parametrize("name", optimizer_registry.list_optimizers())
def test_every_optimizer_space_names_real_arguments_with_their_true_defaults(name):
    entry = optimizer_registry.info(name)
    for key, dimension in entry.search_space.items():
        if key == "learning_rate":
            continue
        assert dimension.default == pytest.approx(
            _argument_default(entry.factory, entry.defaults, key)
        ), (name, key)


@pytest.mark.parametrize("name", optimizer_registry.list_optimizers())
def test_every_optimizer_builds_at_both_ends_of_its_space(name):
    entry = optimizer_registry.info(name)
    for u in (0.0, 1.0):
        arguments = {key: d.from_unit(u) for key, d in entry.search_space.items()}
        optimizer = optimizer_registry.get(name, **arguments)
        assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(
            arguments["learning_rate"], rel=1e-6
        )


TUNABLE_SCHEDULES = [
    name for name in schedule_registry.list_schedules()
    if schedule_registry.info(name).fit_arguments is not None
]


def test_every_schedule_but_the_compositions_can_be_tuned():
    untunable = set(schedule_registry.list_schedules()) - set(TUNABLE_SCHEDULES)
    assert untunable == set(schedule_registry.list_schedules(family="composition"))
    for name in untunable:
        assert not schedule_registry.info(name).search_space


def values_at_steps(schedule, steps):
    """The schedule at steps 0, 1, ..., steps - 1, one scalar call per step.
    On JAX through `jax.jit`, as in the optimizer's compiled step: eagerly,
    the `ops.cond` of Keras' cosine schedules traces and compiles its
    branches again at every call (about 0.1 s each)."""
    if BACKEND == "jax":
        import jax

        schedule = jax.jit(schedule)
    return np.array([float(np.asarray(schedule(step))) for step in range(steps)])


@pytest.mark.parametrize("name", TUNABLE_SCHEDULES)
@pytest.mark.parametrize("u", [0.0, 0.5, 1.0])
def test_every_schedule_starts_or_peaks_at_the_given_rate(name, u):
    entry = schedule_registry.info(name)
    params = {key: d.from_unit(u) for key, d in entry.search_space.items()}
    steps_per_epoch, epochs, rate = 7, 6, 0.02
    schedule = entry.factory(**entry.fit_arguments(rate, steps_per_epoch, epochs, **params))
    rates = values_at_steps(schedule, steps_per_epoch * epochs)
    assert np.all(np.isfinite(rates)) and np.all(rates > 0)
    assert rates.max() <= rate * (1 + 1e-6)
    assert rates.max() >= 0.9 * rate


@pytest.mark.parametrize("name", TUNABLE_SCHEDULES)
def test_every_schedule_space_default_is_inside_and_named_in_fit_arguments(name):
    entry = schedule_registry.info(name)
    parameters = inspect.signature(entry.fit_arguments).parameters
    assert list(parameters)[:3] == ["learning_rate", "steps_per_epoch", "epochs"]
    assert set(list(parameters)[3:]) == set(entry.search_space)


@pytest.mark.parametrize("name", callback_registry.list_callbacks())
def test_every_callback_builds_at_both_ends_of_its_space(name):
    entry = callback_registry.info(name)
    for u in (0.0, 1.0):
        params = {key: d.from_unit(u) for key, d in entry.search_space.items()}
        callback = entry.factory(**entry.fit_arguments(10, **params))
        for key, value in params.items():
            assert getattr(callback, key) == pytest.approx(value)
