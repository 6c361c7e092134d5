"""Optimizer paths on 2-D test functions."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from keras_optlab.lab import cli, surface
from keras_optlab.lab import surfaces as surface_module


def test_paths_start_at_the_given_point():
    result = surface("rosenbrock", ["sgd", "adam"], steps=5, start=(0.5, -0.5))
    for name in ("sgd", "adam"):
        np.testing.assert_array_equal(result.paths[name][0], [0.5, -0.5])
        assert result.paths[name].shape == (6, 2)


def test_sgd_path_follows_the_analytic_gradient():
    rate = 1e-3
    result = surface("rosenbrock", ["sgd"], steps=10, start=(-1.2, 1.0), learning_rates={"sgd": rate})
    point = np.array([-1.2, 1.0])
    gradient = surface_module.TEST_FUNCTIONS["rosenbrock"].gradient
    reference = [point]
    for _ in range(10):
        point = point - rate * gradient(*point)
        reference.append(point)
    np.testing.assert_allclose(result.paths["sgd"], np.stack(reference), rtol=1e-5, atol=1e-6)


def test_sgd_with_momentum_leaves_the_saddle():
    start = (1.0, 1e-3)
    result = surface("saddle", ["momentum"], steps=150, start=start)
    y = np.abs(result.paths["momentum"][:, 1])
    assert y[0] == pytest.approx(1e-3)
    assert y[-1] > 100 * y[0]
    # Near the saddle the value drops below f(0, 0) = 0: it went downhill along y.
    x_end, y_end = result.paths["momentum"][-1]
    assert x_end**2 - y_end**2 < 0


def test_gradient_descent_stays_near_the_axis_started_on():
    result = surface("saddle", ["sgd"], steps=50, start=(1.0, 0.0))
    np.testing.assert_array_equal(result.paths["sgd"][:, 1], 0.0)


def test_cli_surface_writes_png_gif_and_paths(tmp_path):
    out = tmp_path / "surface"
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(["surface", "--function", "beale", "--optimizers", "sgd,adam",
                           "--steps", "20", "--gif", "--out", str(out), "--quiet"])
    assert status == 0
    assert (out / "surface.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "surface.gif").read_bytes()[:4] == b"GIF8"
    saved = json.loads((out / "results.json").read_text())
    assert saved["function"] == "beale"
    assert saved["paths"]["adam"][0] == [1.0, 1.5]
    assert len(saved["paths"]["sgd"]) == 21


def test_a_diverging_path_is_marked_in_the_legend_with_its_value_and_steps():
    from keras_optlab.lab.surfaces import surface

    result = surface("rosenbrock", ["sgd", "radam"], steps=20, learning_rates={"radam": 0.05})
    assert result.diverged("radam") and not result.diverged("sgd")
    x, y = result.paths["radam"][-1]
    rosenbrock = (1 - x) ** 2 + 100 * (y - x**2) ** 2
    labels = [t.get_text() for t in result.plot().axes[0].get_legend().get_texts()]
    steps = len(result.paths["radam"]) - 1
    assert f"radam (lr 0.05): diverged, f = {rosenbrock:.2g} after {steps} steps" in labels
    assert "sgd (lr 0.001)" in labels


def test_default_rosenbrock_picture_has_no_diverging_path():
    from keras_optlab.lab.runs import default_optimizers
    from keras_optlab.lab.surfaces import surface

    result = surface("rosenbrock", default_optimizers(), steps=50)
    assert [name for name in result.paths if result.diverged(name)] == []


def test_adam_then_sgd_switches_half_way_and_leaves_adams_path():
    """Without a callback to switch it, adam_then_sgd switches at half the
    steps (to SGD at the function's SGD rate): its path is Adam's until
    then and its own after, instead of hiding under Adam's."""
    from keras_optlab.lab.surfaces import surface

    result = surface("rosenbrock", ["adam", "adam_then_sgd"], steps=40)
    adam, switched = result.paths["adam"], result.paths["adam_then_sgd"]
    # Same Adam up to rounding (float32 coefficients in adam_then_sgd).
    np.testing.assert_allclose(switched[:21], adam[:21], rtol=1e-5, atol=1e-5)
    assert np.abs(switched[-1] - adam[-1]).max() > 1e-3
    assert not result.diverged("adam_then_sgd")
