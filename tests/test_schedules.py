"""Schedules: each against an independent NumPy formula written here, the
composition identities, serialization, the registry, bad input and plot.

The schedules compute in float32, as Keras' own do. The expected values are
computed in float64 from the equations; the large steps are chosen exactly
representable in float32 (multiples of 128 above 2**30) so that the
comparison tests the formula, not float32's resolution of the step. Each
comparison is at rtol 1e-6 plus an absolute 1e-7 of the schedule's peak
rate: float32 cannot resolve a rate near zero (the end of a cosine) better.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from conftest import BACKEND, compiled_apply
from keras_optlab import schedules
from keras_optlab.schedules import (
    CappedExponentialDecay,
    CyclicalLearningRate,
    Join,
    OneCycle,
    StepDecay,
    Warmup,
)

BIG = [2**30, 2**30 + 128, 2**30 + 2**20]


def rates(schedule, steps):
    """The schedule at each step, one scalar call per step (as the optimizer
    does). On JAX through `jax.jit`, as in the optimizer's compiled step:
    eagerly, the `ops.cond` of Keras' cosine schedules traces and compiles
    its branches again at every call (about 0.1 s each)."""
    if BACKEND == "jax":
        import jax

        schedule = jax.jit(schedule)
    return np.array([float(keras.ops.convert_to_numpy(schedule(int(t)))) for t in steps])


def assert_rates(schedule, steps, expected, peak):
    np.testing.assert_allclose(rates(schedule, steps), expected, rtol=1e-6, atol=1e-7 * peak)


# ---------------------------------------------------------------- decays


def test_step_decay_drops_by_decay_rate_every_decay_steps_steps():
    steps = np.array([0, 1, 99, 100, 101, 199, 200, 250, 1000, *BIG])
    expected = 0.02 * 0.5 ** np.floor(steps / 100)
    assert_rates(StepDecay(0.02, decay_steps=100, decay_rate=0.5), steps, expected, 0.02)


def test_step_decay_epoch_form_is_the_textbook_per_epoch_rule():
    steps_per_epoch = 7
    steps = np.array([0, 6, 7, 69, 70, 71, 139, 140, 700, *BIG])
    epoch = steps // steps_per_epoch
    expected = 0.001 * 0.1 ** (epoch // 10)
    schedule = StepDecay(0.001, decay_steps=10, decay_rate=0.1, steps_per_epoch=steps_per_epoch)
    assert_rates(schedule, steps, expected, 0.001)


def test_capped_exponential_holds_then_decays_and_never_exceeds_start():
    steps = np.array([0, 1, 199, 200, 201, 250, 300, 1000, *BIG])
    exponent = (steps - 200) / 50.0
    with np.errstate(over="ignore"):
        expected = 0.01 * np.minimum(1.0, 0.8**exponent)
    schedule = CappedExponentialDecay(0.01, decay_rate=0.8, decay_steps=50, hold_steps=200)
    assert_rates(schedule, steps, expected, 0.01)


def test_capped_exponential_staircase_and_no_hold():
    steps = np.array([0, 1, 49, 50, 51, 120, *BIG])
    expected = 0.01 * np.minimum(1.0, 0.8 ** np.floor(steps / 50.0))
    schedule = CappedExponentialDecay(0.01, decay_rate=0.8, decay_steps=50, staircase=True)
    assert_rates(schedule, steps, expected, 0.01)


def test_capped_exponential_takes_keras_exponential_decay_arguments_in_keras_order():
    steps = np.array([0, 1, 99, 100, 150, 1000, *BIG])
    for staircase in (False, True):
        ours = CappedExponentialDecay(0.01, 100, 0.5, staircase)
        keras_own = keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.5, staircase)
        exponent = np.floor(steps / 100) if staircase else steps / 100
        assert_rates(ours, steps, 0.01 * 0.5**exponent, 0.01)
        assert_rates(keras_own, steps[:6], 0.01 * 0.5 ** exponent[:6], 0.01)


def test_step_decay_takes_exponential_decays_order_and_is_its_staircase():
    steps = np.array([0, 99, 100, 250, 1000])
    assert_rates(StepDecay(0.1, 100, 0.5), steps, 0.1 * 0.5 ** np.floor(steps / 100), 0.1)


def test_step_decay_old_keywords_warn_and_name_the_new_ones():
    with pytest.warns(DeprecationWarning, match="`factor` is deprecated; use `decay_rate`"):
        with pytest.warns(DeprecationWarning, match="`step_size` is deprecated; use `decay_steps`"):
            schedule = StepDecay(0.02, factor=0.5, step_size=100)
    assert (schedule.decay_rate, schedule.decay_steps) == (0.5, 100)
    assert "factor" not in schedule.get_config() and "step_size" not in schedule.get_config()


@pytest.mark.parametrize(
    "build, expected",
    [
        # The former positional order (decay_rate, decay_steps[, hold_steps]).
        (lambda: StepDecay(0.02, 0.5, 100), 0.02 * 0.5 ** np.floor(np.array([0, 99, 100, 250]) / 100)),
        (lambda: CappedExponentialDecay(0.02, 0.5, 100, 200),
         0.02 * np.minimum(1.0, 0.5 ** (np.maximum(np.array([0, 99, 100, 250]) - 200, 0) / 100))),
    ],
)
def test_former_positional_order_still_works_with_a_warning(build, expected):
    with pytest.warns(DeprecationWarning, match="former positional order"):
        schedule = build()
    assert_rates(schedule, [0, 99, 100, 250], expected, 0.02)


def test_config_saved_with_the_old_step_decay_names_still_loads():
    old = {
        "module": "keras_optlab.schedules.decay", "class_name": "StepDecay",
        "config": {"initial_learning_rate": 0.02, "factor": 0.5, "step_size": 100, "steps_per_epoch": None},
        "registered_name": "keras_optlab>StepDecay",
    }
    restored = keras.optimizers.schedules.deserialize(old)
    assert (restored.decay_rate, restored.decay_steps, restored.name) == (0.5, 100, "StepDecay")


@pytest.mark.parametrize("name", schedules.list_schedules(keras_builtin=False))
def test_every_schedule_of_ours_takes_a_name_as_keras_schedules_do(name):
    arguments = schedules.info(name).example()
    default = schedules.get(name, **arguments)
    assert default.name == type(default).__name__
    named = schedules.get(name, **arguments, name="my_rate")
    assert named.name == "my_rate" and named.get_config()["name"] == "my_rate"
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(named))
    assert restored.name == "my_rate"


def test_time_based_is_keras_inverse_time_decay():
    schedule = schedules.get("time_based", initial_learning_rate=0.1, decay_steps=1, decay_rate=0.01)
    assert type(schedule) is keras.optimizers.schedules.InverseTimeDecay
    steps = np.array([0, 1, 10, 100, 12345, *BIG])
    assert_rates(schedule, steps, 0.1 / (1 + 0.01 * steps), 0.1)


# ---------------------------------------------------------------- cyclical


def clr_reference(t, low, high, size, mode, gamma=1.0):
    # Smith 2017, section 3.1.
    cycle = np.floor(1 + t / (2 * size))
    x = np.abs(t / size - 2 * cycle + 1)
    if mode == "triangular":
        scale = 1.0
    elif mode == "triangular2":
        scale = 0.5 ** (cycle - 1)
    else:
        scale = gamma**t
    return low + (high - low) * np.maximum(0.0, 1 - x) * scale


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.999)])
def test_cyclical_learning_rate_matches_smith_2017(mode, gamma):
    size = 128
    steps = np.array([0, 1, 64, 127, 128, 129, 200, 255, 256, 257, 384, 512, 1000, 3000, *BIG]).astype(float)
    expected = clr_reference(steps, 0.001, 0.006, size, mode, gamma)
    schedule = CyclicalLearningRate(0.001, 0.006, step_size=size, mode=mode, gamma=gamma)
    assert_rates(schedule, steps, expected, 0.006)


def test_cyclical_peaks_at_step_size_and_returns_at_two_step_sizes():
    schedule = CyclicalLearningRate(0.001, 0.006, step_size=128)
    np.testing.assert_allclose(rates(schedule, [0, 128, 256, 2**30 + 128]), [0.001, 0.006, 0.001, 0.006], rtol=1e-6)


def one_cycle_reference(t, peak, total, fraction, a, b, anneal):
    start, rise = peak / a, fraction * total
    end = start / b

    def shape(u, v, p):
        p = np.clip(p, 0.0, 1.0)
        if anneal == "linear":
            return u + (v - u) * p
        return v + (u - v) * (1 + np.cos(np.pi * p)) / 2

    return np.where(t < rise, shape(start, peak, t / rise), shape(peak, end, (t - rise) / (total - rise)))


@pytest.mark.parametrize("anneal", ["cosine", "linear"])
def test_one_cycle_rises_to_peak_then_anneals_below_start(anneal):
    steps = np.array([0, 1, 149, 150, 151, 300, 499, 500, 501, 10_000, *BIG]).astype(float)
    expected = one_cycle_reference(steps, 0.1, 500, 0.3, 25.0, 1e4, anneal)
    schedule = OneCycle(0.1, total_steps=500, warmup_fraction=0.3, anneal=anneal)
    assert_rates(schedule, steps, expected, 0.1)
    assert rates(schedule, [150])[0] == pytest.approx(0.1, rel=1e-6)
    assert rates(schedule, [500])[0] < rates(schedule, [0])[0] / 1000


# ---------------------------------------------------------------- composition


def test_linear_warmup_in_front_of_keras_exponential_decay_sees_offset_step():
    inner = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=100, decay_rate=0.5)
    steps = np.array([0, 1, 50, 99, 100, 101, 200, 1000, *BIG]).astype(float)
    w, start = 100, 0.002
    expected = np.where(
        steps < w, start + (0.01 - start) * steps / w, 0.01 * 0.5 ** (np.maximum(steps - w, 0) / 100)
    )
    assert_rates(Warmup(inner, warmup_steps=w, initial_learning_rate=start), steps, expected, 0.01)


def test_exponential_warmup_is_geometric():
    inner = StepDecay(0.01, decay_steps=100, decay_rate=0.5)
    steps = np.array([0, 1, 25, 49, 50, 51, 150, *BIG]).astype(float)
    w, start = 50, 1e-5
    after = 0.01 * 0.5 ** np.floor(np.maximum(steps - w, 0) / 100)
    expected = np.where(steps < w, start * (0.01 / start) ** np.minimum(steps / w, 1), after)
    schedule = Warmup(inner, warmup_steps=w, initial_learning_rate=start, mode="exponential")
    assert_rates(schedule, steps, expected, 0.01)


def test_zero_warmup_steps_is_the_wrapped_schedule():
    inner = StepDecay(0.01, decay_steps=10, decay_rate=0.5)
    steps = [0, 9, 10, 11, 2**30]
    np.testing.assert_array_equal(rates(Warmup(inner, warmup_steps=0), steps), rates(inner, steps))


@pytest.mark.parametrize("start", [0.0, 0.001])
def test_warmup_around_cosine_decay_equals_cosine_decays_own_warmup(start):
    warmup, decay_steps = 200, 1000
    ours = Warmup(
        keras.optimizers.schedules.CosineDecay(0.01, decay_steps, alpha=0.1),
        warmup_steps=warmup,
        initial_learning_rate=start,
    )
    keras_own = keras.optimizers.schedules.CosineDecay(
        start, decay_steps, alpha=0.1, warmup_target=0.01, warmup_steps=warmup
    )
    steps = [0, 1, 100, 199, 200, 201, 700, 1199, 1200, 1201, 5000, *BIG]
    np.testing.assert_allclose(rates(ours, steps), rates(keras_own, steps), rtol=1e-6, atol=1e-9)


def test_join_gives_each_schedule_the_step_counted_from_its_boundary():
    first = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=300)
    second = StepDecay(0.004, decay_steps=100, decay_rate=0.5)
    third = keras.optimizers.schedules.InverseTimeDecay(0.002, decay_steps=10, decay_rate=1.0)
    schedule = Join([first, second, third], boundaries=[300, 700])
    steps = np.array([0, 1, 150, 299, 300, 301, 399, 400, 699, 700, 701, 900, *BIG]).astype(float)
    cosine = 0.01 * (1 + np.cos(np.pi * np.minimum(steps, 300) / 300)) / 2
    step_decay = 0.004 * 0.5 ** np.floor((steps - 300) / 100)
    inverse = 0.002 / (1 + (steps - 700) / 10)
    expected = np.where(steps < 300, cosine, np.where(steps < 700, step_decay, inverse))
    assert_rates(schedule, steps, expected, 0.01)


def test_warmup_built_on_join():
    join = Join([StepDecay(0.01, 100, 0.5), StepDecay(0.001, 10, 0.5)], boundaries=[200])
    schedule = Warmup(join, warmup_steps=50)
    steps = np.array([0, 25, 49, 50, 149, 150, 249, 250, 260, *BIG]).astype(float)
    after = steps - 50
    expected = np.where(
        steps < 50,
        0.01 * steps / 50,
        np.where(after < 200, 0.01 * 0.5 ** np.floor(after / 100), 0.001 * 0.5 ** np.floor((after - 200) / 10)),
    )
    assert_rates(schedule, steps, expected, 0.01)


# ---------------------------------------------------------------- every registered schedule


@pytest.mark.parametrize("name", schedules.list_schedules())
def test_registered_schedule_survives_serialization(name):
    schedule = schedules.get(name, **schedules.info(name).example())
    config = json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    restored = keras.optimizers.schedules.deserialize(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    steps = [0, 1, 99, 100, 101, 399, 400, 401, 799, 800, 2**30]
    np.testing.assert_array_equal(rates(restored, steps), rates(schedule, steps))


@pytest.mark.parametrize("name", schedules.list_schedules())
def test_registered_schedule_is_finite_at_step_zero_and_huge_steps(name):
    schedule = schedules.get(name, **schedules.info(name).example())
    values = rates(schedule, [0, 2**31 - 1])
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert values[0] > 0 or name == "warmup"  # the warmup example starts at 0.


@pytest.mark.parametrize("name", schedules.list_schedules(keras_builtin=False))
def test_registered_schedule_drives_a_compiled_train_step(name):
    # Inside the compiled step (XLA / jax.jit, as fit compiles it) the
    # optimizer calls the schedule with its integer iteration tensor. SGD
    # from 0 with gradient 1 moves the weight to exactly minus the rate it
    # applied. Between steps, the rate the optimizer reports (as logging
    # callbacks read it, eagerly) is the schedule at its step too.
    schedule = schedules.get(name, **schedules.info(name).example())
    optimizer = keras.optimizers.SGD(schedule)
    variable = keras.Variable(np.zeros(1, "float32"))
    step = compiled_apply(optimizer, [variable])
    steps = [0, 1, 7, 99, 100, 101, 399, 400, 401]
    reported, applied = [], []
    for t in steps:
        optimizer.iterations.assign(t)
        reported.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        variable.assign(np.zeros(1, "float32"))
        step([np.ones(1, "float32")])
        applied.append(-float(np.array(variable)[0]))
    expected = rates(schedule, steps)
    np.testing.assert_allclose(applied, expected, rtol=1e-6)
    np.testing.assert_allclose(reported, expected, rtol=1e-6)


def test_registry_lists_names_and_rejects_unknown_ones():
    names = schedules.list_schedules()
    assert {"step", "time_based", "capped_exponential", "cyclical", "one_cycle", "warmup", "join"} <= set(names)
    assert schedules.list_schedules(family="composition") == ["warmup", "join"]
    assert "time_based" in schedules.list_schedules(keras_builtin=True)
    with pytest.raises(ValueError, match="Unknown schedule name 'cosine_annealing'.*time_based"):
        schedules.get("cosine_annealing")
    with pytest.raises(TypeError, match="Argument `name` must be a string"):
        schedules.info(3)


def test_registry_name_is_case_insensitive_and_passes_arguments():
    schedule = schedules.get("Step", initial_learning_rate=0.5, decay_steps=2, decay_rate=0.5)
    assert isinstance(schedule, StepDecay)
    np.testing.assert_allclose(rates(schedule, [0, 2, 4]), [0.5, 0.25, 0.125])


# ---------------------------------------------------------------- bad input

_EXP = keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.5)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: Warmup(_EXP, warmup_steps=-1), ValueError, r"Argument `warmup_steps` must be in \[0, inf\)"),
        (lambda: Warmup(_EXP, warmup_steps=2.5), TypeError, "Argument `warmup_steps` must be an integer"),
        (lambda: Warmup(0.01, warmup_steps=10), TypeError, "Argument `schedule` must be a"),
        (lambda: Warmup(_EXP, 10, mode="cosine"), ValueError, "Argument `mode` must be one of"),
        (lambda: Warmup(_EXP, 10, initial_learning_rate=0.0, mode="exponential"), ValueError,
         r"Argument `initial_learning_rate` must be in \(0, inf\)"),
        (lambda: Join([_EXP, _EXP], boundaries=[]), ValueError, "Argument `boundaries` must have one entry fewer"),
        (lambda: Join([_EXP, _EXP, _EXP], boundaries=[200, 100]), ValueError,
         "Argument `boundaries` must be strictly increasing"),
        (lambda: Join([_EXP, _EXP, _EXP], boundaries=[100, 100]), ValueError,
         "Argument `boundaries` must be strictly increasing"),
        (lambda: Join([_EXP, _EXP], boundaries=[0]), ValueError, r"Argument `boundaries\[0\]` must be in \[1, inf\)"),
        (lambda: Join([], boundaries=[]), TypeError, "Argument `schedules` must be a non-empty list"),
        (lambda: Join([_EXP, "cosine"], boundaries=[5]), TypeError, r"Argument `schedules\[1\]` must be a"),
        (lambda: StepDecay(0.01, decay_rate=1.5), ValueError, r"Argument `decay_rate` must be in \(0, 1\]"),
        (lambda: StepDecay(0.01, decay_steps=0, decay_rate=0.5), ValueError, "Argument `decay_steps` must be in"),
        (lambda: StepDecay(0.01, name=""), TypeError, "Argument `name` must be a non-empty string"),
        (lambda: StepDecay(0.01, decay=0.5), TypeError, "unexpected keyword argument 'decay'"),
        (lambda: StepDecay(-0.01), ValueError, "Argument `initial_learning_rate` must be in"),
        (lambda: CappedExponentialDecay(0.01, decay_rate=0.0), ValueError, "Argument `decay_rate` must be in"),
        (lambda: CyclicalLearningRate(0.01, 0.001), ValueError, "Argument `maximal_learning_rate` must be in"),
        (lambda: CyclicalLearningRate(mode="sine"), ValueError, "Argument `mode` must be one of"),
        (lambda: OneCycle(warmup_fraction=1.0), ValueError, r"Argument `warmup_fraction` must be in \(0, 1\)"),
        (lambda: OneCycle(anneal="exp"), ValueError, "Argument `anneal` must be one of"),
        (lambda: OneCycle(total_steps=1), ValueError, "Argument `total_steps` must be in"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_ints_are_accepted_where_floats_are():
    schedule = StepDecay(1, decay_steps=3, decay_rate=1)
    assert schedule.initial_learning_rate == 1.0 and isinstance(schedule.decay_rate, float)


# ---------------------------------------------------------------- plot


def test_plot_returns_a_figure_of_the_schedule():
    import matplotlib.figure

    schedule = CyclicalLearningRate(0.001, 0.006, step_size=10)
    figure = schedules.plot(schedule, steps=50)
    assert isinstance(figure, matplotlib.figure.Figure)
    line = figure.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(50))
    np.testing.assert_allclose(line.get_ydata(), clr_reference(np.arange(50.0), 0.001, 0.006, 10, "triangular"), rtol=1e-6)
    assert figure.axes[0].get_title() == "CyclicalLearningRate"


def test_plot_handles_keras_schedules_that_take_scalar_steps_only():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([5], [0.01, 0.001])
    figure = schedules.plot(schedule, steps=10, title="piecewise")
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), [0.01] * 6 + [0.001] * 4, rtol=1e-6)
    with pytest.raises(ValueError, match="Argument `steps` must be in"):
        schedules.plot(schedule, steps=0)
