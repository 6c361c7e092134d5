"""The learning-rate range test: the sweep, the rule, and the restore."""

from __future__ import annotations

import contextlib
import io
import json
import re

import keras
import numpy as np
import pytest

from keras_optlab.lab import cli, find_lr
from keras_optlab.lab import lr_range as fl


def _classifier():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    return model, x, y


def test_find_lr_restores_weights_and_optimizer_state():
    model, x, y = _classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.train_on_batch(x[:32], y[:32])  # gives Adam some state to lose
    optimizer = model.optimizer
    weights = [np.array(w) for w in model.get_weights()]
    state = [np.array(v) for v in optimizer.variables]
    result = find_lr(model, x, y, optimizer="sgd", steps=30, start_lr=1e-3, end_lr=10.0)
    assert len(result.losses) >= 3
    assert model.optimizer is optimizer
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(state, optimizer.variables):
        np.testing.assert_array_equal(before, np.array(after))
    # Still trainable with its own optimizer and metrics afterwards.
    logs = model.train_on_batch(x[:32], y[:32], return_dict=True)
    assert "accuracy" in logs
    assert int(np.array(optimizer.iterations)) == 2


def test_find_lr_sweeps_exponentially_and_suggests_a_rate_inside_the_sweep():
    model, x, y = _classifier()
    result = find_lr(model, x, y, optimizer="sgd", loss="sparse_categorical_crossentropy",
                     steps=40, start_lr=1e-4, end_lr=1.0)
    count = len(result.learning_rates)
    expected = 1e-4 * (1.0 / 1e-4) ** (np.arange(count) / 39)
    np.testing.assert_allclose(result.learning_rates, expected, rtol=1e-6)
    assert 1e-4 <= result.suggested_learning_rate <= 1.0
    assert result.suggested_learning_rate == result.learning_rates[result.suggested_index]


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = [3.0, 1.0, 2.0, 5.0]
    beta = 0.8
    average, reference = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        reference.append(average / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(fl.smooth(losses, beta), reference, rtol=1e-12)
    assert fl.smooth([2.0], beta)[0] == pytest.approx(2.0)


def test_suggestion_is_the_steepest_descent_before_the_minimum():
    rates = np.logspace(-5, 1, 200)
    log_rates = np.log10(rates)
    # Falls fastest at lr = 1e-2, bottoms out near 1, then rises steeply.
    loss = 2.0 - np.tanh(2.0 * (log_rates + 2.0)) + 5.0 * np.maximum(log_rates, 0.0) ** 2
    index = fl.steepest_descent(rates, loss)
    assert rates[index] == pytest.approx(1e-2, rel=0.1)


def test_cli_find_lr_prints_the_suggestion_and_writes_the_plot(tmp_path):
    out = tmp_path / "lr"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main(["find-lr", "--steps", "30", "--out", str(out), "--quiet"])
    assert status == 0
    match = re.search(r"Suggested learning rate for sgd: ([0-9.e+-]+)", stdout.getvalue())
    assert match
    assert (out / "find_lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert float(match.group(1)) == pytest.approx(saved["suggested_learning_rate"], rel=1e-2)
    assert len(saved["learning_rates"]) == len(saved["losses"]) <= 30


def test_public_names_stay_functions_after_their_modules_load():
    import keras_optlab.lab as lab
    from keras_optlab.lab import lr_range, surfaces  # noqa: F401

    assert callable(lab.find_lr) and lab.find_lr.__name__ == "find_lr"
    assert callable(lab.surface) and lab.surface.__name__ == "surface"
    assert callable(lab.compare) and lab.compare.__name__ == "compare"
