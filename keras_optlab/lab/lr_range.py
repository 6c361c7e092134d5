"""The learning-rate range test (Smith, "Cyclical Learning Rates for
Training Neural Networks", WACV 2017, arXiv:1506.01186, section 3.3).

Train for a few hundred steps while the learning rate grows exponentially
from `start_lr` to `end_lr`: step `i` of `n` uses

    lr_i = start_lr * (end_lr / start_lr) ** (i / (n - 1)).

The loss of each step's batch is smoothed with a bias-corrected exponential
moving average (as in Adam's moment estimates):

    a_i = beta * a_{i-1} + (1 - beta) * loss_i,  a_{-1} = 0
    smoothed_i = a_i / (1 - beta ** (i + 1))

with `beta = smoothing` (0.9: about the last ten steps). The sweep stops
early when a loss is not finite or the smoothed loss exceeds
`divergence_threshold` times its lowest value.

**Rule for the suggestion**: the rate at the steepest descent of the smoothed
loss against log10(lr): the most negative difference quotient
`(smoothed[i+w] - smoothed[i-w]) / (log10 lr[i+w] - log10 lr[i-w])` with
`w` = 5 % of the steps, searched from the first step up to the minimum of
the smoothed loss (beyond it the loss is rising). The moving average lags by about
`1 / (1 - beta)` steps, so the suggestion leans slightly towards higher
rates; a rate a few times smaller is the conservative choice.

The model's weights (all of them, non-trainable included) and its compile
state (the same optimizer object with its variables, loss, metrics) are put
back afterwards: the sweep uses an optimizer of its own.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from keras_optlab.lab.errors import UsageError, as_usage_error

DEFAULT_START_LR = 1e-5
DEFAULT_END_LR = 10.0
DEFAULT_STEPS = 200


@dataclasses.dataclass
class FindLRResult:
    """What the range test saw.

    Attributes:
        optimizer: Registry name of the optimizer swept.
        learning_rates: Rate of each step run.
        losses: Loss of each step's batch, before the update.
        smoothed_losses: Bias-corrected moving average of `losses`.
        suggested_learning_rate: Rate at the steepest descent of
            `smoothed_losses` against log10 of the rate.
        suggested_index: Step of the suggestion.
        stopped_early: Whether the sweep stopped at divergence.
        smoothing: The moving average's `beta`.
    """

    optimizer: str
    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggested_learning_rate: float
    suggested_index: int
    stopped_early: bool
    smoothing: float

    def to_dict(self) -> dict[str, Any]:
        return {"format": "keras_optlab.find_lr/1", **dataclasses.asdict(self)}

    def plot(self, path: str | os.PathLike | None = None, close: bool = False) -> Any:
        """Loss against learning rate (log scale), raw and smoothed, the
        suggestion marked.

        Args:
            path: Where to save the PNG. Defaults to `None` (not saved).
            close: Close the figure after saving. Defaults to `False`.

        Returns:
            The matplotlib `Figure`.
        """
        from keras_optlab.lab.plots import pyplot

        plt = pyplot()
        rates = np.asarray(self.learning_rates)
        smoothed = np.asarray(self.smoothed_losses)
        figure, ax = plt.subplots(figsize=(8, 5))
        ax.plot(rates, self.losses, color="0.7", linewidth=0.8, label="batch loss")
        ax.plot(rates, smoothed, color="C0", linewidth=2,
                label=f"smoothed (EMA, beta={self.smoothing:g})")
        ax.axvline(self.suggested_learning_rate, color="C3", linestyle="--",
                   label=f"suggested {self.suggested_learning_rate:.3g} (steepest descent)")
        ax.plot([self.suggested_learning_rate], [smoothed[self.suggested_index]], "o", color="C3")
        ax.set_xscale("log")
        finite = smoothed[np.isfinite(smoothed)]
        if finite.size:
            # Past divergence the loss explodes; keep the useful range in view.
            low, high = finite.min(), finite[0]
            ax.set_ylim(low - 0.1 * (high - low + 1e-12), high + 0.5 * (high - low + 1e-12))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"Learning-rate range test: {self.optimizer}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(os.fspath(path), dpi=110)
        if close:
            plt.close(figure)
        return figure


def sweep_rates(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """The rate of each step: exponential from `start_lr` to `end_lr`."""
    fraction = np.arange(steps) / max(steps - 1, 1)
    return start_lr * (end_lr / start_lr) ** fraction


def smooth(losses, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average of `losses`."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return np.asarray(out, dtype=float)


def steepest_descent(rates, smoothed, window: int | None = None) -> int:
    """Index of the most negative slope of `smoothed` against log10(rate),
    searched up to the minimum of `smoothed`.

    The slope at step i is the difference quotient across steps
    i - window .. i + window (clipped at the ends). Step to step, log10(rate)
    moves by only ~0.03 in a 200-step sweep, so a one-step difference
    magnifies the remaining batch noise into slopes steeper than the real
    descent; across 2 * window steps the descent dominates.

    Args:
        rates: Learning rate of each step.
        smoothed: Smoothed loss of each step.
        window: Half-width in steps. Defaults to `None`: 5 % of the steps,
            at least 1.
    """
    smoothed = np.asarray(smoothed, dtype=float)
    count = smoothed.size
    if count < 3:
        return 0
    window = max(1, count // 20) if window is None else max(1, int(window))
    log_rates = np.log10(np.asarray(rates, dtype=float))
    index = np.arange(count)
    low = np.clip(index - window, 0, count - 1)
    high = np.clip(index + window, 0, count - 1)
    slope = (smoothed[high] - smoothed[low]) / (log_rates[high] - log_rates[low])
    last = int(np.nanargmin(smoothed))
    return int(np.nanargmin(slope[: last + 1]))


def find_lr(
    model: Any,
    x: Any,
    y: Any,
    optimizer: str = "sgd",
    loss: Any = None,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 32,
    smoothing: float = 0.9,
    divergence_threshold: float = 4.0,
    seed: int = 0,
    verbose: int = 0,
) -> FindLRResult:
    """Runs the learning-rate range test on `model` and restores it.

    Args:
        model: A Keras model, compiled, or not compiled with `loss`
            given.
        x: Training inputs (NumPy).
        y: Training targets (NumPy).
        optimizer: Registry name of the optimizer to sweep; its other
            arguments are the registry's defaults. Defaults to `"sgd"`.
        loss: Loss for the sweep. Defaults to `None`: the model's compiled
            loss (an uncompiled model then needs one).
        start_lr: First rate, > 0. Defaults to 1e-5.
        end_lr: Last rate, > `start_lr`. Defaults to 10.
        steps: Steps of the sweep, >= 3. Defaults to 200.
        batch_size: Examples per step. Defaults to 32.
        smoothing: `beta` of the loss's moving average, in [0, 1). Defaults
            to 0.9.
        divergence_threshold: Stop once the smoothed loss exceeds this
            multiple of its lowest value, > 1. Defaults to 4.
        seed: Seed of the batch order. Defaults to 0.
        verbose: 1 prints a line every 50 steps. Defaults to 0.

    Returns:
        A `FindLRResult`.

    Raises:
        UsageError: For bad arguments or a model without a loss.

    Note:
        A model that was not compiled is left compiled with the sweep's loss
        and optimizer (with its weights restored); a compiled one gets its
        own optimizer object, loss and metrics back.
    """
    import keras

    from keras_optlab import _validation
    from keras_optlab.optimizers import registry

    with as_usage_error():
        name = registry.info(optimizer).name
        start_lr = _validation.check_float("start_lr", start_lr, low=0.0, low_open=True)
        end_lr = _validation.check_float("end_lr", end_lr, low=start_lr, low_open=True)
        steps = _validation.check_int("steps", steps, low=3)
        batch_size = _validation.check_int("batch_size", batch_size, low=1)
        smoothing = _validation.check_float("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
        divergence_threshold = _validation.check_float(
            "divergence_threshold", divergence_threshold, low=1.0, low_open=True
        )
    was_compiled = bool(getattr(model, "compiled", False))
    compile_arguments = dict(model._compile_config.config) if was_compiled else None
    if loss is None:
        if not was_compiled or compile_arguments.get("loss") is None:
            raise UsageError("find_lr needs a loss: compile the model or pass `loss`.")
        loss = compile_arguments["loss"]
    original_optimizer = model.optimizer if was_compiled else None
    optimizer_state = (
        [np.array(v) for v in original_optimizer.variables] if original_optimizer is not None else None
    )
    saved_weights = model.get_weights()

    rates = sweep_rates(start_lr, end_lr, steps)
    # Keras evaluates a schedule at the optimizer's step count before the
    # update, so update i uses start_lr * (end_lr/start_lr) ** (i/(steps-1)).
    schedule = keras.optimizers.schedules.ExponentialDecay(
        start_lr, decay_steps=steps - 1, decay_rate=end_lr / start_lr
    )
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    position = 0
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, stopped_early = 0.0, np.inf, False
    try:
        model.compile(optimizer=registry.get(name, learning_rate=schedule), loss=loss)
        for i in range(steps):
            if position + batch_size > len(order):
                order, position = rng.permutation(len(x)), 0
            batch = order[position : position + batch_size]
            position += batch_size
            logs = model.train_on_batch(x[batch], y[batch], return_dict=True)
            value = float(logs["loss"])
            losses.append(value)
            average = smoothing * average + (1 - smoothing) * value
            smoothed.append(average / (1 - smoothing ** (i + 1)))
            if verbose and (i % 50 == 0 or i == steps - 1):
                print(f"step {i + 1}/{steps}: learning rate {rates[i]:.3g}, loss {value:.4f}", flush=True)
            if not np.isfinite(value) or smoothed[-1] > divergence_threshold * best:
                stopped_early = i < steps - 1
                break
            best = min(best, smoothed[-1])
    finally:
        model.set_weights(saved_weights)
        if was_compiled:
            model.compile(**{**compile_arguments, "optimizer": original_optimizer})
            for variable, value in zip(original_optimizer.variables, optimizer_state):
                variable.assign(value)
    used = rates[: len(losses)]
    # The diverged step itself is not a candidate for the suggestion.
    candidates = len(losses) - 1 if stopped_early or not np.isfinite(losses[-1]) else len(losses)
    index = steepest_descent(used[:candidates], smoothed[:candidates])
    return FindLRResult(
        optimizer=name,
        learning_rates=[float(r) for r in used],
        losses=losses,
        smoothed_losses=[float(s) for s in smoothed],
        suggested_learning_rate=float(used[index]),
        suggested_index=index,
        stopped_early=stopped_early,
        smoothing=smoothing,
    )


def find_lr_on_dataset(
    dataset: str = "digits",
    model: str = "mlp",
    optimizer: str = "sgd",
    start_lr: float | None = None,
    end_lr: float | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    out: str | None = None,
    verbose: int = 0,
) -> FindLRResult:
    """`find_lr` on one of the lab's datasets and models (the `optlab
    find-lr` command); writes `find_lr.png` and `results.json` to `out`.

    Args:
        dataset: `"digits"` or `"mnist1d"`. Defaults to `"digits"`.
        model: `"logistic"`, `"mlp"`, `"cnn"` or `"gru"` (see
            `keras_optlab.lab.models`). Defaults to `"mlp"`.
        optimizer: Registry name. Defaults to `"sgd"`.
        start_lr: Defaults to `None` (1e-5).
        end_lr: Defaults to `None` (10).
        steps: Defaults to `None` (200).
        batch_size: Defaults to 32.
        seed: Seed of the initial weights and batch order. Defaults to 0.
        out: Report folder, written all or nothing. Defaults to `None`.
        verbose: Defaults to 0.

    Returns:
        A `FindLRResult`.
    """
    from keras_optlab.lab import data, models
    from keras_optlab.lab.report import check_out_folder, publish, write_json
    from keras_optlab.optimizers import registry

    from keras_optlab import _validation

    start_lr = DEFAULT_START_LR if start_lr is None else start_lr
    end_lr = DEFAULT_END_LR if end_lr is None else end_lr
    steps = DEFAULT_STEPS if steps is None else steps
    # Checked here too, so that bad input fails before data and model load.
    with as_usage_error():
        registry.info(optimizer)
        models.check_model_name(model)
        if dataset not in data.DATASETS:
            data.load_dataset(dataset)
        start_lr = _validation.check_float("start_lr", start_lr, low=0.0, low_open=True)
        _validation.check_float("end_lr", end_lr, low=start_lr, low_open=True)
        _validation.check_int("steps", steps, low=3)
        _validation.check_int("batch_size", batch_size, low=1)
        _validation.check_int("seed", seed, low=0)
        folder = None if out is None else check_out_folder(out)
    chosen = data.load_dataset(dataset)
    network = models.build_model(model, chosen, seed=seed)
    result = find_lr(
        network, chosen.x_train, chosen.y_train, optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        start_lr=start_lr, end_lr=end_lr, steps=steps,
        batch_size=batch_size, seed=seed, verbose=verbose,
    )
    if folder is not None:
        settings = {"data": dataset, "model": model, "batch_size": batch_size, "seed": seed}

        def write(staging):
            result.plot(os.path.join(staging, "find_lr.png"), close=True)
            write_json({**result.to_dict(), "settings": settings}, os.path.join(staging, "results.json"))

        publish(folder, write)
    return result
