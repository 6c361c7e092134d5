"""docs/migrate-from-tfa.md as a TFA user reads it: every one-line change of
its table runs as written, with the stand-ins the page names, and gives an
optimizer that takes a step or a schedule that gives rates; the expression
it gives for TFA's RAdam warmup gives TFA's rates; the numbers it states for
the gap between Keras' and TFA's moving averages, and for the steps from
which TFA and we rectify, are those of NumPy models of each."""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest

import keras_optlab
from conftest import apply_once

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "migrate-from-tfa.md"
CODE = re.compile(r"`([^`]+)`")


def _rows():
    """(TFA name, replacement cell, one-line cell, notes cell) of each row of
    the optimizers table."""
    text = PAGE.read_text()
    table = text[text.index("## Optimizers"):]
    table = table[: table.index("\n## ", 1)]
    rows = []
    for line in table.splitlines():
        if line.startswith("| `"):
            name, replacement, one_line, notes = line[2:-2].split(" | ", 3)
            if one_line != "one-line change":  # the header
                rows.append((name.strip("`"), replacement, one_line, notes))
    return rows


ROWS = _rows()


def stand_ins():
    """The names the page says its one-liners use."""
    return {
        "keras": keras,
        "keras_optlab": keras_optlab,
        "lr": 1e-3, "wd": 1e-4, "m": 0.9,
        "lo": 1e-4, "hi": 1e-2, "step_size": 4, "g": 0.99,
        "inner": keras.optimizers.SGD(learning_rate=1e-3),
    }


def test_the_table_has_a_row_and_a_one_liner_for_each_tfa_name():
    names = [name for name, *_ in ROWS]
    assert len(names) == 21 and len(set(names)) == 21
    for name, _, one_line, _ in ROWS:
        assert CODE.findall(one_line), name


@pytest.mark.parametrize("name, one_line", [(name, one_line) for name, _, one_line, _ in ROWS],
                         ids=[name for name, *_ in ROWS])
def test_each_one_liner_runs_as_written(name, one_line):
    for code in CODE.findall(one_line):
        made = eval(code, stand_ins())  # noqa: S307 - the page's own line
        if isinstance(made, keras.optimizers.schedules.LearningRateSchedule):
            rates = [float(keras.ops.convert_to_numpy(made(step))) for step in range(6)]
            assert all(np.isfinite(rates)) and min(rates) > 0, rates
            continue
        assert isinstance(made, keras.optimizers.Optimizer), (name, code, made)
        variable = keras.Variable(np.linspace(-1.0, 1.0, 6).reshape(2, 3).astype("float32"), name="kernel")
        before = np.array(variable)
        apply_once(made, [keras.ops.ones((2, 3))], [variable])
        after = np.array(variable)
        assert np.all(np.isfinite(after)) and not np.array_equal(after, before), (name, code)


def tfa_warmup_rates(lr, min_lr, total_steps, warmup_steps, steps):
    """TFA's RectifiedAdam/AdaBelief rate at each iteration (counted from
    0): its step counter starts at 1; linear rise to `lr` over the warmup,
    then linear fall to `min_lr` over the remaining steps, held after."""
    decay_steps = max(total_steps - warmup_steps, 1)
    rates = []
    for iteration in range(steps):
        step = iteration + 1
        if step <= warmup_steps:
            rates.append(lr * step / warmup_steps)
        else:
            rates.append(lr + (min_lr - lr) * min(step - warmup_steps, decay_steps) / decay_steps)
    return np.array(rates)


@pytest.mark.parametrize("total, warmup", [(20, 5), (100, 10), (12, 2)])
def test_the_pages_warmup_gives_tfas_rates(total, warmup):
    notes = next(notes for name, _, _, notes in ROWS if name == "RectifiedAdam")
    (expression,) = [code for code in CODE.findall(notes) if code.startswith("keras_optlab.schedules.Warmup(")]
    lr, min_lr = 1e-2, 1e-4
    schedule = eval(expression, {**stand_ins(), "lr": lr, "min_lr": min_lr, "T": total, "W": warmup})  # noqa: S307
    steps = total + 5
    ours = np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in range(steps)])
    # float32: the rate is within a few float32 roundings of the peak rate.
    np.testing.assert_allclose(ours, tfa_warmup_rates(lr, min_lr, total, warmup, steps), rtol=1e-6, atol=1e-6 * lr)


def _notes(tfa_name):
    return next(notes for name, _, _, notes in ROWS if name == tfa_name)


def _shown_as(text, value):
    """Whether the page's decimal `text` is `value` rounded to as many
    decimals as it shows."""
    decimals = len(text.partition(".")[2])
    return float(text) == round(float(value), decimals)


# MovingAverage: Keras' `use_ema` against TFA's average.

def gradient_descent_path(steps):
    """w_0 .. w_steps of gradient descent at rate 0.1 on f(w) = w**2 / 2
    from w_0 = 1: each step multiplies w by 0.9."""
    return 0.9 ** np.arange(steps + 1)


def random_walk_path(steps):
    """w_0 = 1, then steps of a seeded random walk."""
    steps_taken = np.random.default_rng(7).normal(scale=0.1, size=steps)
    return np.concatenate([[1.0], 1.0 + np.cumsum(steps_taken)])


PATHS = [gradient_descent_path, random_walk_path]


def keras_ema(path, momentum):
    """Keras 3's `use_ema` average after each of the steps 1 .. T of `path`
    (w_0 .. w_T): on the first step (`iterations == 0`) the momentum used is
    0, so the average becomes w_1; after that m * average + (1 - m) * w_t."""
    averages = [path[1]]
    for weight in path[2:]:
        averages.append(momentum * averages[-1] + (1 - momentum) * weight)
    return np.array(averages)


def tfa_moving_average(path, average_decay, start_step=0, dynamic_decay=False):
    """TFA 0.23 `MovingAverage`'s average after each of the steps 1 .. T:
    made from the initial weights w_0, then after each step moved towards
    the new weights by (1 - decay). The decay is read from the iteration
    counter i before the step (0 on the first): 0 while i < start_step, else
    `average_decay`, or with `dynamic_decay` min(average_decay,
    (1 + n) / (10 + n)) with n = i - start_step."""
    average, averages = path[0], []
    for iteration, weight in enumerate(path[1:]):
        if iteration < start_step:
            decay = 0.0
        elif dynamic_decay:
            averaged = iteration - start_step
            decay = min(average_decay, (1 + averaged) / (10 + averaged))
        else:
            decay = average_decay
        average = average - (1 - decay) * (average - weight)
        averages.append(average)
    return np.array(averages)


def test_the_tfa_model_gives_the_averages_of_tfas_own_tests():
    # TFA's moving_average_test: SGD at rate 2 with gradient 0.1 from 1.0
    # (and at rate 1 for start_step), average_decay 0.5.
    np.testing.assert_allclose(tfa_moving_average(np.array([1.0, 0.8, 0.6]), 0.5), [0.9, 0.75])
    np.testing.assert_allclose(tfa_moving_average(np.array([1.0, 0.9, 0.8]), 0.5, start_step=1)[-1], 0.85)
    np.testing.assert_allclose(
        tfa_moving_average(np.array([1.0, 0.8, 0.6]), 0.5, dynamic_decay=True)[-1], 0.64, rtol=1e-6
    )


def test_the_keras_model_is_what_use_ema_averages():
    # Momentum 0.9: TFA's start from w_0 would leave 0.9**5 * 0.1 = 0.059 more.
    steps = 5
    optimizer = keras.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.9)
    variable = keras.Variable(np.ones(1, "float32"))
    for _ in range(steps):
        apply_once(optimizer, [keras.ops.convert_to_tensor(np.array(variable))], [variable])
    np.testing.assert_allclose(np.array(variable), gradient_descent_path(steps)[-1:], rtol=1e-6)
    optimizer.finalize_variable_values([variable])
    np.testing.assert_allclose(np.array(variable), keras_ema(gradient_descent_path(steps), 0.9)[-1:], rtol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_keras_average_is_tfas_with_start_step_1(path):
    notes = _notes("MovingAverage")
    assert "Keras' average is TFA's with `start_step=1`" in notes
    weights = path(300)
    np.testing.assert_allclose(keras_ema(weights, 0.99), tfa_moving_average(weights, 0.99, start_step=1), rtol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_the_pages_gaps_between_keras_and_tfa_averages(path):
    notes = _notes("MovingAverage")
    (momentum,) = re.findall(r"at `ema_momentum=([\d.]+)`", notes)
    momentum = float(momentum)
    stated = [(int(percent), int(step)) for percent, step in re.findall(r"(\d+) % (?:of the first step )?after (\d+)", notes)]
    (below_1_percent_from,) = [int(step) for step in re.findall(r"under 1 % from step (\d+)", notes)]
    assert len(stated) == 4, stated
    weights = path(600)
    first_step = weights[1] - weights[0]
    gaps = (tfa_moving_average(weights, momentum) - keras_ema(weights, momentum)) / -first_step
    steps_taken = np.arange(1, len(weights))
    # The closed form: m**t of the first step, whatever the path did after it.
    np.testing.assert_allclose(gaps, momentum**steps_taken, rtol=0, atol=1e-9)
    for percent, step in stated:
        assert round(100 * gaps[step - 1]) == percent, (step, gaps[step - 1])
    assert gaps[below_1_percent_from - 1] < 0.01 <= gaps[below_1_percent_from - 2]


# RectifiedAdam and AdaBelief: the step from which rho_t reaches the threshold.

BETA_2 = 0.999
STEPS = np.arange(1, 1001)


def rho_float64(steps):
    """rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t), in float64."""
    power = BETA_2 ** steps.astype(np.float64)
    return 2 / (1 - BETA_2) - 1 - 2 * steps * power / (1 - power)


def tfa_rho_float32(steps, tfa_name, power_rounded_up=False):
    """TFA 0.23's rho_t for a float32 variable, operation by operation in
    float32 with beta_2 a float32 hyperparameter. `RectifiedAdam` multiplies
    by a reciprocal, `AdaBelief` divides. beta_2**t is rounded to the nearest
    float32, as TensorFlow's CPU `pow` gives it: both expressions, so
    formed, matched TensorFlow 2.21 on CPU bit for bit for t < 873."""
    f32 = np.float32
    beta_2 = f32(BETA_2)
    power = (np.float64(beta_2) ** steps.astype(np.float64)).astype(f32)
    if power_rounded_up:
        power = np.nextafter(power, f32(2))
    t = steps.astype(f32)
    rho_inf = f32(2) / (f32(1) - beta_2) - f32(1)
    if tfa_name == "RectifiedAdam":
        return rho_inf - f32(2) * t * power * (f32(1) / (f32(1) - power))
    return rho_inf - f32(2) * t * power / (f32(1) - power)


def ours_rho(steps):
    """keras_optlab's rho_t, the one RAdam and AdaBelief compare with
    `threshold`."""
    from keras_optlab.optimizers import _numerics

    _, rho = _numerics.radam_rho(BETA_2, keras.ops.convert_to_tensor(steps.astype("float32")))
    return keras.ops.convert_to_numpy(rho)


def first_step_at(rho, threshold):
    """The 1-based step from which rho_t >= threshold (TFA's comparison and
    ours)."""
    reached = rho >= threshold
    assert reached.any()
    return int(np.argmax(reached)) + 1


def first_moving_step(optimizer, steps=10):
    """The step at which a variable first moves under `optimizer` with
    `degenerated_to_sgd=False`: the first rectified step."""
    variable = keras.Variable(np.zeros(1, "float32"))
    for step in range(1, steps + 1):
        before = np.array(variable)
        apply_once(optimizer, [keras.ops.ones((1,))], [variable])
        if not np.array_equal(np.array(variable), before):
            return step
    return None


def _stated_steps():
    """(threshold, TFA's first rectified step, ours) from the RectifiedAdam
    row, and the same from the AdaBelief row."""
    (radam,) = re.findall(
        r"at `sma_threshold=(\d+)` TFA rectified from step (\d+) and we from step (\d+)", _notes("RectifiedAdam")
    )
    (adabelief,) = re.findall(r"at (\d+) TFA rectified from step (\d+) and we from step (\d+)", _notes("AdaBelief"))
    return {"RectifiedAdam": tuple(map(int, radam)), "AdaBelief": tuple(map(int, adabelief))}


@pytest.mark.parametrize("tfa_name", ["RectifiedAdam", "AdaBelief"])
def test_the_pages_first_rectified_steps_at_threshold_6(tfa_name):
    threshold, tfa_step, our_step = _stated_steps()[tfa_name]
    assert first_step_at(tfa_rho_float32(STEPS, tfa_name), threshold) == tfa_step
    assert first_step_at(rho_float64(STEPS), threshold) == our_step
    assert first_step_at(ours_rho(STEPS), threshold) == our_step
    if tfa_name == "RectifiedAdam":
        optimizer = keras_optlab.optimizers.RAdam(threshold=threshold, degenerated_to_sgd=False)
    else:
        optimizer = keras_optlab.optimizers.AdaBelief(rectify=True, threshold=threshold, degenerated_to_sgd=False)
    assert first_moving_step(optimizer) == our_step


def test_the_pages_rho_values_at_the_edge():
    (found,) = re.findall(
        r"its \$\\rho_(\d+)\$ came out ([\d.]+) .*?one bit higher gives ([\d.]+)\); ours .*? gives ([\d.]+), as float64 does",
        _notes("RectifiedAdam"),
    )
    step, tfa_value, rounded_up_value, our_value = found
    index = int(step) - 1
    assert _shown_as(tfa_value, tfa_rho_float32(STEPS, "RectifiedAdam")[index])
    assert _shown_as(rounded_up_value, tfa_rho_float32(STEPS, "RectifiedAdam", power_rounded_up=True)[index])
    assert _shown_as(our_value, ours_rho(STEPS)[index])
    assert _shown_as(our_value, rho_float64(STEPS)[index])


@pytest.mark.parametrize("tfa_name", ["RectifiedAdam", "AdaBelief"])
def test_tfa_and_we_rectify_from_the_same_step_at_the_other_whole_thresholds(tfa_name):
    (found,) = re.findall(
        r"every other whole threshold from (\d+) to (\d+), the default (\d+) included, both rectify from the same step "
        r"\(step (\d+) at \3\)",
        _notes("RectifiedAdam"),
    )
    low, high, default, default_step = map(int, found)
    edge_threshold = _stated_steps()[tfa_name][0]
    tfa, exact, ours = tfa_rho_float32(STEPS, tfa_name), rho_float64(STEPS), ours_rho(STEPS)
    for threshold in range(low, high + 1):
        if threshold != edge_threshold:
            assert first_step_at(tfa, threshold) == first_step_at(ours, threshold) == first_step_at(exact, threshold), threshold
    # The range stated is the whole of it: the next threshold differs.
    assert first_step_at(tfa, high + 1) != first_step_at(exact, high + 1)
    assert first_step_at(tfa, default) == first_step_at(ours, default) == default_step
