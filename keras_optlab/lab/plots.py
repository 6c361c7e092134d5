"""Pictures of a comparison and of a tuning study. matplotlib is imported
here, lazily, with the non-interactive Agg backend: the lab runs on machines
without a display."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from keras_optlab.lab.records import Comparison, TuneRecords



def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors(names):
    """One distinct colour per name (tab10, then tab20 beyond ten)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


# Optimizers often share a learning rate; dashes keep overlapping lines
# distinguishable.
LINE_STYLES = ("-", "--", "-.", ":")


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _finish(figure, path, close):
    if path is not None:
        figure.savefig(os.fspath(path), dpi=110)
    if close:
        pyplot().close(figure)
    return figure


def _stack(results: Comparison, name: str, key: str) -> np.ndarray:
    rows = [run.history.get(key, []) for run in results.runs_of(name)]
    width = max(len(r) for r in rows)
    return np.asarray([list(r) + [np.nan] * (width - len(r)) for r in rows], dtype=float)


def plot_curves(results: Comparison, path=None, close: bool = False):
    """Four panels (training/validation x loss/accuracy) against the epoch;
    one line per optimizer, the mean over seeds with a band of one standard
    deviation when there are several. Loss is on a log scale."""
    plt = pyplot()
    palette = colors(results.optimizers)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = [
        ("loss", "training loss", axes[0, 0]),
        ("val_loss", "validation loss", axes[0, 1]),
        ("accuracy", "training accuracy", axes[1, 0]),
        ("val_accuracy", "validation accuracy", axes[1, 1]),
    ]
    for key, title, ax in panels:
        for name in results.optimizers:
            values = _stack(results, name, key)
            epochs = np.arange(1, values.shape[1] + 1)
            with np.errstate(all="ignore"):
                mean = np.nanmean(values, axis=0) if values.shape[0] > 1 else values[0]
                ax.plot(epochs, mean, color=palette[name], label=name, linewidth=1.6)
                if values.shape[0] > 1:
                    spread = np.nanstd(values, axis=0)
                    ax.fill_between(epochs, mean - spread, mean + spread, color=palette[name], alpha=0.15)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if "loss" in key:
            ax.set_yscale("log")
        else:
            ax.set_ylim(top=1.0)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
    axes[0, 0].legend(fontsize=8, ncol=2)
    s = results.settings
    figure.suptitle(
        f"{s['data']}, {s['model']}, batch size {s['batch_size']}, "
        f"{s['seeds']} seed{'s' if s['seeds'] > 1 else ''}, backend {s['backend']}"
    )
    figure.tight_layout()
    return _finish(figure, path, close)


def plot_learning_rates(results: Comparison, path=None, close: bool = False):
    """The effective learning rate at the end of each epoch (as logged by
    `LearningRateLogger`), log scale; a vertical dotted line and a marker
    where an optimizer's phase changed."""
    plt = pyplot()
    palette = colors(results.optimizers)
    figure, ax = plt.subplots(figsize=(10, 5))
    marked = False
    for index, name in enumerate(results.optimizers):
        runs = results.runs_of(name)
        rates = np.asarray(runs[0].history.get("learning_rate", []), dtype=float)
        epochs = np.arange(1, len(rates) + 1)
        ax.plot(epochs, rates, color=palette[name], label=f"{name} ({rates[0]:.3g})" if rates.size else name, linewidth=1.8,
                marker=".", linestyle=LINE_STYLES[index % len(LINE_STYLES)])
        for run in runs:
            run_rates = np.asarray(run.history.get("learning_rate", []), dtype=float)
            for epoch in run.switch_epochs:
                ax.axvline(epoch, color=palette[name], linestyle=":", linewidth=1.2)
                ax.plot([epoch], [run_rates[epoch - 1]], marker="*", markersize=13,
                        color=palette[name], markeredgecolor="black",
                        label=None if marked else "switch (phase changed)")
                marked = True
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    _integer_epochs(ax)
    ax.set_ylabel("effective learning rate (end of epoch)")
    ax.set_title("Learning rate applied by each optimizer")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    return _finish(figure, path, close)


def _grid(count: int):
    plt = pyplot()
    columns = min(3, max(1, count))
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, list(axes.flat[:count])


def plot_sensitivity(results: TuneRecords, path=None, close: bool = False):
    """Per candidate: each trial's best validation value against its
    learning rate (log scale). Filled: ran every epoch; hollow: pruned;
    cross (at the bottom edge): diverged; star: the default setting; ring:
    the best trial."""
    figure, axes = _grid(len(results.candidates))
    minimise = results.minimise
    for ax, outcome in zip(axes, results.candidates):
        finite = [t.best(minimise) for t in outcome.trials if t.values and math.isfinite(t.best(minimise))]
        worst = (max(finite) if minimise else min(finite)) if finite else 0.0
        for trial in outcome.trials:
            rate = trial.params.get("learning_rate")
            if rate is None:
                continue
            value = trial.best(minimise)
            if trial.diverged or not math.isfinite(value):
                ax.plot([rate], [worst], "x", color="C3", markersize=7)
            elif trial.state == "complete":
                ax.plot([rate], [value], "o", color="C0", markersize=6)
            elif trial.state == "pruned":
                ax.plot([rate], [value], "o", markerfacecolor="none", color="C0", markersize=6)
            if trial.is_default and math.isfinite(value):
                ax.plot([rate], [value], "*", color="C2", markersize=14, markeredgecolor="black")
            if trial.number == outcome.best_trial and math.isfinite(value):
                ax.plot([rate], [value], "o", markerfacecolor="none", color="C3", markersize=14, markeredgewidth=2)
        if not outcome.trials:  # `@default`: run at its defaults only
            ax.text(0.5, 0.5, "no trial: run at its defaults", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xscale("log")
        ax.set_title(outcome.name)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"best {results.monitor}")
        ax.grid(True, which="both", alpha=0.3)
    figure.suptitle("Learning-rate sensitivity: every trial")
    figure.tight_layout()
    return _finish(figure, path, close)


def plot_progress(results: TuneRecords, path=None, close: bool = False):
    """Best value so far against trial number, one line per candidate;
    each finished trial's own value as a faint dot."""
    plt = pyplot()
    names = [c.name for c in results.candidates]
    palette = colors(names)
    figure, ax = plt.subplots(figsize=(9, 5))
    minimise = results.minimise
    for index, outcome in enumerate(results.candidates):
        finished = [t for t in sorted(outcome.trials, key=lambda t: t.number)
                    if t.state in ("complete", "pruned") and t.values]
        values = np.array([t.best(minimise) for t in finished], dtype=float)
        if not values.size:
            continue
        clean = np.where(np.isfinite(values), values, np.inf if minimise else -np.inf)
        running = np.minimum.accumulate(clean) if minimise else np.maximum.accumulate(clean)
        order = np.arange(1, values.size + 1)
        ax.plot(order, values, ".", color=palette[outcome.name], alpha=0.35)
        ax.step(order, running, where="post", color=palette[outcome.name], label=outcome.name,
                linestyle=LINE_STYLES[index % len(LINE_STYLES)], linewidth=1.8)
    ax.set_xlabel("finished trial")
    _integer_epochs(ax)
    ax.set_ylabel(f"best {results.monitor} so far")
    ax.set_title("Tuning progress")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:  # every candidate `@default`
        ax.text(0.5, 0.5, "no trial: every candidate ran at its defaults", ha="center",
                va="center", transform=ax.transAxes)
    figure.tight_layout()
    return _finish(figure, path, close)


def plot_seeds(results: TuneRecords, path=None, close: bool = False):
    """Per candidate: the monitored validation value per epoch of the
    tuned setting over the evaluation seeds (mean, and the band between the
    lowest and highest seed), and the default setting's mean dashed."""
    figure, axes = _grid(len(results.candidates))
    key = results.monitor
    for ax, outcome in zip(axes, results.candidates):
        for runs, label, style, colour in (
            (outcome.default_runs, "default", "--", "0.5"),
            (outcome.tuned_runs, "tuned", "-", "C0"),
        ):
            rows = [r.history.get(key, []) for r in runs]
            if not rows or not max(map(len, rows)):
                continue
            width = max(map(len, rows))
            values = np.array([list(r) + [np.nan] * (width - len(r)) for r in rows], dtype=float)
            epochs = np.arange(1, width + 1)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(values, axis=0)
                ax.plot(epochs, mean, style, color=colour, label=f"{label} ({len(rows)} seeds)")
                if label == "tuned" and len(rows) > 1:
                    ax.fill_between(epochs, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                                    color=colour, alpha=0.2)
        ax.set_title(outcome.name)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("Evaluation seeds: tuned (band: lowest to highest seed) and default")
    figure.tight_layout()
    return _finish(figure, path, close)
