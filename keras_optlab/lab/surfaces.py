"""Trajectories of optimizers on 2-D test functions.

Each optimizer is the registry's real class (`keras_optlab.optimizers.get`)
updating one two-element `keras.Variable` (x, y). The gradient is the test
function's **analytic gradient**, evaluated in NumPy at the variable's
current value and handed to `optimizer.apply_gradients`: the same on every
backend, exact, and independent of the backend's autodiff. Every optimizer
starts from the same point.

Functions (minimised; `(x*, y*)` the minimum):

- `saddle`: f = x^2 - y^2, a saddle at (0, 0), unbounded below along y;
  from a start slightly off the x axis, a good optimizer leaves the saddle.
- `rosenbrock`: f = (1 - x)^2 + 100 (y - x^2)^2 (Rosenbrock, 1960), a
  narrow curved valley, minimum (1, 1).
- `beale`: f = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2
  (Beale, 1958), flat plateaus and steep walls, minimum (3, 0.5).

Gradient descent's step scales with the gradient and adaptive methods' does
not, so each function has one learning rate for the `sgd` family and one for
the others; `adadelta` keeps the registry's 1.0 (its paper has no learning
rate).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from keras_optlab.lab.errors import UsageError, as_usage_error

DEFAULT_STEPS = 300
# A path whose coordinates pass this size has escaped (the saddle is
# unbounded below); it is not followed further.
ESCAPED = 1e3


def _saddle(x, y):
    return x**2 - y**2


def _saddle_gradient(x, y):
    return np.array([2 * x, -2 * y])


def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_gradient(x, y):
    return np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


def _beale_terms(x, y):
    return 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3


def _beale(x, y):
    t1, t2, t3 = _beale_terms(x, y)
    return t1**2 + t2**2 + t3**2


def _beale_gradient(x, y):
    t1, t2, t3 = _beale_terms(x, y)
    return np.array([
        2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1),
        2 * t1 * x + 4 * t2 * x * y + 6 * t3 * x * y**2,
    ])


@dataclasses.dataclass(frozen=True)
class TestFunction:
    """A 2-D function to minimise, with what is needed to draw it.

    Attributes:
        name: Its name.
        value: f(x, y), vectorised over NumPy arrays.
        gradient: (df/dx, df/dy) as a NumPy array.
        start: Default start point.
        minimum: The minimum, or `None` if unbounded.
        x_range: Plotted x interval.
        y_range: Plotted y interval.
        learning_rates: Rate per family (`"sgd"`, `"adaptive"`) or name.
    """

    name: str
    value: Callable[[Any, Any], Any]
    gradient: Callable[[float, float], np.ndarray]
    start: tuple[float, float]
    minimum: tuple[float, float] | None
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    learning_rates: Mapping[str, float]

    def learning_rate(self, optimizer: str) -> float:
        """This function's default rate for a registry name."""
        from keras_optlab.optimizers import registry

        if optimizer in self.learning_rates:
            return self.learning_rates[optimizer]
        family = registry.info(optimizer).family
        return self.learning_rates["sgd" if family == "sgd" else "adaptive"]


_LINE_STYLES = ("-", "--", "-.", ":")

TEST_FUNCTIONS = {
    "saddle": TestFunction(
        "saddle", _saddle, _saddle_gradient, start=(1.0, 1e-3), minimum=None,
        x_range=(-1.5, 1.5), y_range=(-1.5, 1.5),
        learning_rates={"sgd": 0.01, "adaptive": 0.01, "adadelta": 1.0},
    ),
    "rosenbrock": TestFunction(
        "rosenbrock", _rosenbrock, _rosenbrock_gradient, start=(-1.2, 1.0),
        minimum=(1.0, 1.0), x_range=(-2.0, 2.0), y_range=(-1.0, 3.0),
        # Plain SGD is stable only below 2 / (largest curvature), about
        # 1.5e-3 at the start. RAdam's first steps are momentum steps
        # (eta m-hat, no adaptive denominator): at the adaptive rate 0.05
        # they leave for f ~ 1e17 in two steps, so it gets SGD's rate.
        learning_rates={"sgd": 1e-3, "adaptive": 0.05, "adadelta": 1.0, "radam": 1e-3},
    ),
    "beale": TestFunction(
        "beale", _beale, _beale_gradient, start=(1.0, 1.5), minimum=(3.0, 0.5),
        x_range=(-4.5, 4.5), y_range=(-4.5, 4.5),
        learning_rates={"sgd": 1e-3, "adaptive": 0.05, "adadelta": 1.0, "radam": 1e-3},
    ),
}


def test_function(name: str) -> TestFunction:
    """The `TestFunction` called `name`; `UsageError` listing names if unknown."""
    if name not in TEST_FUNCTIONS:
        raise UsageError(
            f"Unknown function name {name!r}. Known names: {', '.join(TEST_FUNCTIONS)}."
        )
    return TEST_FUNCTIONS[name]


@dataclasses.dataclass
class SurfaceResult:
    """Paths of optimizers on one test function.

    Attributes:
        function: The `TestFunction`.
        start: The common start point.
        paths: Per optimizer name, an array of shape `(k + 1, 2)`: the start
            and the point after each of the k steps taken (k < steps if the
            path escaped or stopped being finite).
        learning_rates: The rate each optimizer used.
    """

    function: TestFunction
    start: tuple[float, float]
    paths: dict[str, np.ndarray]
    learning_rates: dict[str, float]

    def diverged(self, name: str) -> bool:
        """Whether `name`'s path left the picture's frame or stopped being
        finite: where it ends says nothing about the function's minimum."""
        last = self.paths[name][-1]
        return not (np.all(np.isfinite(last)) and self._in_frame(last))

    def _label(self, name: str) -> str:
        label = f"{name} (lr {self.learning_rates[name]:g})"
        if self.diverged(name):
            points = self.paths[name]
            value = float(self.function.value(*points[-1]))
            label += f": diverged, f = {value:.2g} after {len(points) - 1} steps"
        return label

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "keras_optlab.surface/1",
            "function": self.function.name,
            "start": list(self.start),
            "learning_rates": self.learning_rates,
            "gradients": "analytic",
            "paths": {name: path.tolist() for name, path in self.paths.items()},
        }

    def _axes(self, plt):
        from matplotlib.colors import LogNorm

        from keras_optlab.lab.plots import colors

        f = self.function
        xs = np.linspace(*f.x_range, 300)
        ys = np.linspace(*f.y_range, 300)
        grid_x, grid_y = np.meshgrid(xs, ys)
        values = f.value(grid_x, grid_y)
        figure, ax = plt.subplots(figsize=(8, 7))
        if f.minimum is not None:
            # Non-negative functions spanning decades: log-spaced levels.
            levels = np.logspace(np.log10(max(values.min(), 1e-3)), np.log10(values.max()), 30)
            ax.contour(grid_x, grid_y, np.maximum(values, 1e-3), levels=levels,
                       norm=LogNorm(), cmap="Greys", linewidths=0.7)
            ax.plot(*f.minimum, marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none", label="minimum")
        else:
            ax.contour(grid_x, grid_y, values, levels=30, cmap="Greys", linewidths=0.7)
        ax.plot(*self.start, marker="o", markersize=8, color="black", linestyle="none", label="start")
        ax.set_xlim(*f.x_range)
        ax.set_ylim(*f.y_range)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{f.name}: optimizer paths from {self.start}")
        return figure, ax, colors(list(self.paths))

    def _in_frame(self, point) -> bool:
        f = self.function
        return f.x_range[0] <= point[0] <= f.x_range[1] and f.y_range[0] <= point[1] <= f.y_range[1]

    def plot(self, path: str | os.PathLike | None = None, close: bool = False) -> Any:
        """The paths over the function's contours.

        Args:
            path: Where to save the PNG. Defaults to `None` (not saved).
            close: Close the figure after saving. Defaults to `False`.

        Returns:
            The matplotlib `Figure`.
        """
        from keras_optlab.lab.plots import pyplot

        plt = pyplot()
        figure, ax, palette = self._axes(plt)
        for index, (name, points) in enumerate(self.paths.items()):
            # Paths that run together stay visible: each later one is drawn
            # thinner, in another dash pattern, over the earlier ones.
            ax.plot(points[:, 0], points[:, 1], color=palette[name],
                    linewidth=max(0.8, 2.6 - 0.2 * index), linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],
                    label=self._label(name))
            if self.diverged(name):
                # Where it left the frame: the last point inside, marked with a cross.
                inside = [p for p in points if self._in_frame(p)]
                edge = inside[-1] if inside else points[0]
                ax.plot(edge[0], edge[1], marker="X", markersize=11, color=palette[name],
                        markeredgecolor="black", linestyle="none")
            else:
                ax.plot(points[-1, 0], points[-1, 1], marker="o", markersize=5, color=palette[name])
        ax.legend(fontsize=8, loc="best")
        figure.tight_layout()
        if path is not None:
            figure.savefig(os.fspath(path), dpi=100)
        if close:
            plt.close(figure)
        return figure

    def animate(self, path: str | os.PathLike, frames: int = 60, fps: int = 15) -> None:
        """Writes the paths growing step by step as an animated GIF
        (matplotlib's `PillowWriter`).

        Args:
            path: The GIF's path.
            frames: Number of frames, spread evenly over the steps.
                Defaults to 60.
            fps: Frames per second. Defaults to 15.
        """
        from matplotlib.animation import FuncAnimation, PillowWriter

        from keras_optlab.lab.plots import pyplot

        plt = pyplot()
        figure, ax, palette = self._axes(plt)
        longest = max(len(points) for points in self.paths.values())
        lines = {
            name: ax.plot([], [], color=palette[name], linewidth=1.8,
                          label=self._label(name))[0]
            for name in self.paths
        }
        ax.legend(fontsize=8, loc="best")
        figure.tight_layout()
        ends = np.unique(np.linspace(1, longest, max(2, frames)).astype(int))

        def draw(end):
            for name, points in self.paths.items():
                lines[name].set_data(points[:end, 0], points[:end, 1])
            return list(lines.values())

        animation = FuncAnimation(figure, draw, frames=ends, blit=True)
        animation.save(os.fspath(path), writer=PillowWriter(fps=fps), dpi=70)
        plt.close(figure)


def _follow(name: str, function: TestFunction, start, rate: float, steps: int) -> np.ndarray:
    import keras

    from keras_optlab.optimizers import registry

    from keras_optlab.optimizers import SwitchingOptimizer

    point = keras.Variable(np.asarray(start, dtype="float32"), name="xy")
    optimizer = registry.get(name, learning_rate=rate)
    if isinstance(optimizer, SwitchingOptimizer) and optimizer.switch_step is None:
        # No callback switches it here: like compare at its middle epoch, it
        # switches half-way, to SGD at this function's rate for SGD.
        optimizer = registry.get(
            name, learning_rate=rate, switch_step=max(1, steps // 2),
            sgd_learning_rate=function.learning_rate("sgd"),
        )
    optimizer.build([point])
    points = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        x, y = points[-1]
        gradient = function.gradient(x, y).astype("float32")
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), point)])
        current = np.asarray(keras.ops.convert_to_numpy(point), dtype=float)
        if not np.all(np.isfinite(current)):
            break
        points.append(current)
        if np.abs(current).max() > ESCAPED:
            break
    return np.stack(points)


def surface(
    function: str = "rosenbrock",
    optimizers: Sequence[str] | None = None,
    steps: int = DEFAULT_STEPS,
    start: Sequence[float] | None = None,
    learning_rates: Mapping[str, float] | None = None,
) -> SurfaceResult:
    """Runs each optimizer from the same start on a 2-D test function.

    Args:
        function: `"saddle"`, `"rosenbrock"` or `"beale"`. Defaults to
            `"rosenbrock"`.
        optimizers: Registry names. Defaults to `None`: the seed family
            (`sgd, momentum, nag, adagrad, adadelta, rmsprop, adam, radam`).
        steps: Steps per optimizer, >= 1. Defaults to 300.
        start: `(x, y)`. Defaults to `None`: the function's own start.
        learning_rates: Rate per optimizer name, overriding the function's
            defaults. Defaults to `None`.

    Returns:
        A `SurfaceResult`.
    """
    from keras_optlab import _validation
    from keras_optlab.lab.runs import SEED_FAMILY
    from keras_optlab.optimizers import registry

    with as_usage_error():
        chosen = test_function(function)
        names = [registry.info(n).name for n in (optimizers or SEED_FAMILY)]
        steps = _validation.check_int("steps", steps, low=1)
        if start is None:
            start = chosen.start
        if len(start) != 2:
            raise UsageError(f"Argument `start` must be two numbers (x, y). Received: start={start!r}")
        start = tuple(_validation.check_float("start", v) for v in start)
        rates = {n: chosen.learning_rate(n) for n in names}
        for name, rate in dict(learning_rates or {}).items():
            key = registry.info(name).name
            if key not in rates:
                raise UsageError(f"A learning rate is given for {name!r}, which is not run.")
            rates[key] = _validation.check_float(f"learning_rate[{name}]", rate, low=0.0, low_open=True)
    paths = {name: _follow(name, chosen, start, rates[name], steps) for name in names}
    return SurfaceResult(function=chosen, start=start, paths=paths, learning_rates=rates)


def surface_report(
    function: str = "rosenbrock",
    optimizers: Sequence[str] | None = None,
    steps: int | None = None,
    start: Sequence[float] | None = None,
    learning_rates: Mapping[str, float] | None = None,
    gif: bool = False,
    out: str = "optlab-report-surface",
    verbose: int = 1,
) -> SurfaceResult:
    """`surface`, then `surface.png` (and `surface.gif` if `gif`) and
    `results.json` written to `out`, all or nothing (the `optlab surface`
    command).

    Args:
        function: Defaults to `"rosenbrock"`.
        optimizers: Defaults to `None` (the seed family).
        steps: Defaults to `None` (300).
        start: Defaults to `None` (the function's).
        learning_rates: Defaults to `None`.
        gif: Also write an animated GIF. Defaults to `False`.
        out: Report folder. Defaults to `"optlab-report-surface"`.
        verbose: 1 prints where each path ended. Defaults to 1.

    Returns:
        The `SurfaceResult`.
    """
    from keras_optlab.lab.report import check_out_folder, publish, write_json

    with as_usage_error():
        test_function(function)
        folder = check_out_folder(out)
    result = surface(function, optimizers, DEFAULT_STEPS if steps is None else steps, start, learning_rates)

    def write(staging):
        result.plot(os.path.join(staging, "surface.png"), close=True)
        if gif:
            result.animate(os.path.join(staging, "surface.gif"))
        write_json(result.to_dict(), os.path.join(staging, "results.json"))

    publish(folder, write)
    if verbose:
        f = result.function
        for name, points in result.paths.items():
            x, y = points[-1]
            print(f"{name:>10}: {len(points) - 1} steps, ended at ({x:.4g}, {y:.4g}), f = {f.value(x, y):.4g}")
    return result
