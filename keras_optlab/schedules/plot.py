"""A picture of a schedule."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np


def plot(
    schedule: keras.optimizers.schedules.LearningRateSchedule,
    steps: int,
    title: Optional[str] = None,
    ax=None,
):
    """Draws `schedule` over steps `0 .. steps - 1` and returns the Figure.

    matplotlib is imported here, not at package import, and drawn with the
    non-interactive Agg canvas when no axes are given, so this works on a
    machine without a display and does not change pyplot's global state.

    Args:
        schedule: Any `keras.optimizers.schedules.LearningRateSchedule`.
        steps: Number of steps to draw, a positive integer. Required.
        title: Title of the axes. Defaults to `None` (the class name).
        ax: matplotlib `Axes` to draw into. Defaults to `None` (a new
            Figure).

    Returns:
        The `matplotlib.figure.Figure` holding the plot.
    """
    from keras_optlab import _validation

    steps = _validation.check_int("steps", steps, low=1)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if ax is None:
        figure = Figure(figsize=(6.0, 3.2), dpi=100)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot(1, 1, 1)
    else:
        figure = ax.figure
    grid = np.arange(steps)
    try:
        rates = np.asarray(keras.ops.convert_to_numpy(schedule(keras.ops.convert_to_tensor(grid))))
        rates = np.broadcast_to(rates, grid.shape)
    except (RuntimeError, ValueError, TypeError):
        # Some of Keras' schedules (PiecewiseConstantDecay on PyTorch) take
        # a scalar step only.
        rates = np.array([float(keras.ops.convert_to_numpy(schedule(int(t)))) for t in grid])
    ax.plot(grid, rates)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title or type(schedule).__name__)
    ax.grid(True, alpha=0.3)
    figure.tight_layout()
    return figure
