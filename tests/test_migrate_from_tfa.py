"""docs/migrate-from-tfa.md as a TFA user reads it: every one-line change of
its table runs as written, with the stand-ins the page names, and gives an
optimizer that takes a step or a schedule that gives rates; the expression
it gives for TFA's RAdam warmup gives TFA's rates."""

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
