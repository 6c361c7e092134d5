"""Pictures of a comparison. matplotlib is imported here, lazily, with the
non-interactive Agg backend: the lab runs on machines without a display."""

from __future__ import annotations

import os

import numpy as np

from keras_optlab.lab.records import Comparison



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
        f"{s['dataset']}, {s['model']}, batch size {s['batch_size']}, "
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
