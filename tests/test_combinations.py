"""The learning-rate-free and schedule-free optimizers with what else the
package has: the plateau callback, the switching optimizer and Lookahead.
(Mixed precision is in test_mixed_precision.py, one optimizer per update
path; distribution in test_distributed.py.)

Reducing the learning rate of a learning-rate-free method is not a no-op:
their `learning_rate` multiplies the step they estimate (Prodigy's and
D-Adaptation's d), as in the authors' code, so a plateau callback lowers
the step as it does for Adam.
"""

import keras
import numpy as np
import pytest

from conftest import JIT_COMPILE, apply_once, build_optimizer, regression_data, small_model
from keras_optlab import optimizers
from keras_optlab.callbacks import ReduceLROnPlateau
from keras_optlab.optimizers import Lookahead, Prodigy, ScheduleFreeSGD, SwitchingOptimizer, lr_scale_of

NEW = [
    "prodigy", "dadapt_adam", "schedule_free_sgd", "schedule_free_adamw", "adopt", "mars", "soap",
]


def _gradient(values):
    return (0.5 * values + 0.3 * np.sin(3.0 * values)).astype("float32")


def _steps(optimizer, start, count):
    """`count` steps of `optimizer` on a variable from `start`, with the
    gradient of a fixed function; the values after each step."""
    variable = keras.Variable(start)
    values = []
    for _ in range(count):
        apply_once(optimizer, [keras.ops.convert_to_tensor(_gradient(np.array(variable)))], [variable])
        values.append(np.array(variable))
    return np.array(values), variable


# The callback reaches every optimizer of the package the same way (its
# `lr_scale`); under fit it runs on one learning-rate-free and one
# schedule-free method, and the next test checks on each that the update
# reads what it lowers.
@pytest.mark.parametrize("name", ["prodigy", "schedule_free_adamw"])
def test_plateau_lowers_the_learning_rate_of_new_optimizers_under_fit(name):
    x, y = regression_data(n=32)
    model = small_model()
    optimizer = optimizers.get(name, learning_rate=optimizers.info(name).suggested_learning_rate)
    rate = float(np.array(optimizer.learning_rate))
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    # With min_delta that large no epoch improves on the first, whether the
    # loss falls or (schedule-free SGD at its suggested rate on this
    # regression) rises: the rate is halved after the second and the third.
    plateau = ReduceLROnPlateau(monitor="loss", min_delta=1e9, factor=0.5, patience=0)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[plateau])
    np.testing.assert_allclose(float(np.array(model.optimizer.learning_rate)), rate * 0.25, rtol=1e-6)


@pytest.mark.parametrize("name", NEW)
def test_a_lower_learning_rate_gives_each_new_optimizer_a_smaller_step(name):
    """What the plateau callback lowers (the optimizer's `lr_scale`) is
    what the update reads: after the same three steps, a fourth at half the
    rate moves less."""
    start = np.linspace(-1.5, 2.0, 6).astype("float32")
    moves = []
    for factor in (1.0, 0.5):
        optimizer = optimizers.get(name, learning_rate=optimizers.info(name).suggested_learning_rate)
        _, variable = _steps(optimizer, start, 3)
        before = np.array(variable)
        lr_scale_of(optimizer).assign(factor)
        apply_once(optimizer, [keras.ops.convert_to_tensor(_gradient(before))], [variable])
        moves.append(np.abs(np.array(variable) - before).sum())
    assert moves[1] < 0.9 * moves[0], moves


def test_switching_from_adam_to_schedule_free_sgd_starts_it_at_the_switch():
    """Schedule-free SGD's z starts at the weights of its first step: the
    weights Adam left, not those the switching optimizer was built on."""
    start = np.linspace(-1.5, 2.0, 6).astype("float32")
    switching = SwitchingOptimizer(
        keras.optimizers.Adam(0.05), ScheduleFreeSGD(learning_rate=0.1, warmup_steps=2), switch_step=4
    )
    actual, _ = _steps(switching, start, 10)
    adam_part, _ = _steps(keras.optimizers.Adam(0.05), start, 4)
    rest, _ = _steps(ScheduleFreeSGD(learning_rate=0.1, warmup_steps=2), adam_part[-1], 6)
    np.testing.assert_allclose(actual, np.concatenate([adam_part, rest]), rtol=1e-5, atol=1e-6)


def test_lookahead_around_prodigy_syncs_its_estimate_of_the_step():
    """Lookahead moves the weights; Prodigy's own state (d, its sums, its
    starting point) carries on: the same as Prodigy stepped by hand with the
    slow weights put back every `sync_period` steps."""
    start = np.linspace(-1.5, 2.0, 6).astype("float32")
    actual, _ = _steps(Lookahead(Prodigy(), sync_period=3, slow_step_size=0.5), start, 9)
    inner = Prodigy()
    variable = keras.Variable(start)
    slow = start.astype("float64")
    expected = []
    for step in range(1, 10):
        apply_once(inner, [keras.ops.convert_to_tensor(_gradient(np.array(variable)))], [variable])
        if step % 3 == 0:
            slow = slow + 0.5 * (np.array(variable).astype("float64") - slow)
            variable.assign(slow.astype("float32"))
        expected.append(np.array(variable))
    np.testing.assert_allclose(actual, np.array(expected), rtol=1e-5, atol=1e-7)
    # The estimate really grew: Prodigy moved beyond its first tiny steps.
    assert float(np.array(inner.d)) > 10 * inner.d0
