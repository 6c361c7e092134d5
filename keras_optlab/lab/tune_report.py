"""A tuning study's results and its report: `report.md`, `results.json`
and the pictures."""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Mapping

from keras_optlab.lab import plots
from keras_optlab.lab.records import TuneRecords
from keras_optlab.lab.report import publish, write_json


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _interval(stats: Mapping[str, Any], digits: int = 4, sign: bool = False) -> str:
    mean = stats.get("mean")
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    half = stats.get("ci_half_width")
    if half is not None and math.isfinite(half):
        text += f" ± {half:.{digits}f}"
    return text


def format_params(params: Mapping[str, Any]) -> str:
    """`name=value` pairs, three significant digits."""
    parts = []
    for name, value in params.items():
        if isinstance(value, int) and not isinstance(value, bool):
            shown = str(value)
        elif 0.9 <= value < 1.0:
            # Decay rates near 1 (β₂ = 0.9996): enough digits to tell 1 − value.
            shown = f"{value:.{math.ceil(-math.log10(1.0 - value)) + 1}f}"
        else:
            shown = f"{value:.3g}"
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def _cost(cost: Mapping[str, float]) -> str:
    """`12 trials, 31 s`; `none (defaults)` for a candidate not searched."""
    if not cost["trials"]:
        return "none (defaults)"
    plural = "" if cost["trials"] == 1 else "s"
    return f"{cost['trials']} trial{plural}, {cost['trial_seconds']:.0f} s"


def results_table(results: TuneRecords) -> str:
    """One row per candidate (see `TuneRecords.summary` for the numbers)."""
    summary = results.summary()
    metric = results.monitor
    target = results.target()
    target_text = _number(target) if target is not None else "target"
    test = results.test_metric
    header = [
        "candidate", "tuned hyperparameters", f"best {metric}", f"final {metric}",
        "default best → gain",
        *([f"{test}: tuned", f"{test}: default"] if test else []),
        "s/epoch", f"epochs to {target_text}",
        f"s to {target_text}", "trials (complete/pruned/failed)", "tuning cost",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for outcome in results.candidates:
        row = summary[outcome.name]
        trials = row["trials"]
        reached = row["reached_target"]
        epochs = _interval(row["epochs_to_target"], 1)
        seconds = _interval(row["seconds_to_target"], 2)
        if reached.startswith("0/"):
            epochs = seconds = f"not reached ({reached})"
        elif reached.split("/")[0] != reached.split("/")[1]:
            epochs += f" ({reached} seeds)"
        cells = [
            f"`{outcome.name}`",
            format_params(outcome.best_params) + (" (the defaults)" if outcome.best_params == outcome.default_params else ""),
            _interval(row["tuned_best"]),
            _interval(row["tuned_final"]),
            f"{_interval({'mean': row['default_best']['mean']})} → {_interval(row['gain'], sign=True)}",
            *([_interval(row["tuned_test"]), _interval(row["default_test"])] if test else []),
            _interval(row["seconds_per_epoch"], 3),
            epochs,
            seconds,
            f"{trials['complete']}/{trials['pruned']}/{trials['fail']}",
            _cost(row["tuning_cost"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pairwise_table(results: TuneRecords, on: str = "validation") -> str:
    """Row candidate against column candidate: `better`, `worse` (Welch's
    t-test at 5 % on the tuned settings' values over seeds: best validation
    values, or test scores with `on="test"`) or `cannot tell`, with the
    p-value."""
    if on == "test" and results.test_metric is None:
        return "No test data: the runs were scored on validation data only.\n"
    tests = results.pairwise(on)
    names = [c.name for c in results.candidates]
    if not tests:
        return "Needs at least 2 seeds per candidate.\n"
    lines = ["| | " + " | ".join(f"`{n}`" for n in names) + " |", "|" + "---|" * (len(names) + 1)]
    for a in names:
        cells = []
        for b in names:
            if a == b:
                cells.append("")
                continue
            key, flip = (f"{a}|{b}", 1.0) if f"{a}|{b}" in tests else (f"{b}|{a}", -1.0)
            test = tests.get(key)
            if test is None:
                cells.append("–")
                continue
            difference = flip * test["difference"]
            better = difference < 0 if results.minimise else difference > 0
            verdict = ("better" if better else "worse") if test["distinguishable"] else "cannot tell"
            cells.append(f"{verdict} (p={test['p_value']:.2g})")
        lines.append(f"| `{a}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _describe(results: TuneRecords) -> str:
    s = results.settings
    seeds = s["evaluation_seeds"]
    examples = ""
    if s.get("train_examples") is not None:
        test = f", {s['test_examples']} test" if s.get("test_examples") else ""
        examples = f" ({s['train_examples']} training, {s['validation_examples']} validation{test} examples)"
    batch = f"batch size {s['batch_size']}" if s.get("batch_size") else "batches from the loader"
    return (
        f"Model `{s['model']}` on data `{s['data']}`{examples}; loss {s['loss']}; "
        f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''} per run, {batch}; "
        f"optimised: `{s['monitor']}` ({'lower' if s['mode'] == 'min' else 'higher'} is better).\n\n"
        f"Search: {s['trials']} finished trials per candidate (none for a candidate marked "
        f"`@default`, run at its defaults only) on tuning seed {s['tuning_seed']}; "
        f"sampler {s['sampler']}; pruner {s['pruner']}. Study `{s['study']}/<candidate>` in "
        f"`{s['storage']}`. Evaluation: the best and the default setting retrained with seeds "
        f"{', '.join(map(str, seeds))}, which the search never used; seed s gives every candidate "
        f"the same initial weights and batches. Backend `{s['backend']}` (Keras {s['keras_version']}).\n"
    )


def _data_note(results: TuneRecords) -> str:
    if results.test_metric is None:
        return (
            "No test data was given: every number below is measured on the validation data, which "
            "also chose the tuned settings, so the tuned values lean optimistic. Give test data "
            "(`x_test`, `y_test`) for numbers that no choice saw.\n"
        )
    return (
        f"`{results.test_metric}`: each evaluation run's trained model (after its last epoch) "
        "scored on the test data, which no trial and no choice saw; the validation columns are "
        "measured on the data that chose the tuned settings.\n"
    )


def write_tune_report(results: TuneRecords, folder: str | os.PathLike) -> None:
    """Writes `report.md`, `results.json`, `sensitivity.png`,
    `progress.png` and `seeds.png` into `folder`."""
    folder = pathlib.Path(folder)
    plots.plot_sensitivity(results, folder / "sensitivity.png", close=True)
    plots.plot_progress(results, folder / "progress.png", close=True)
    plots.plot_seeds(results, folder / "seeds.png", close=True)
    write_json(results.to_dict(), folder / "results.json")
    seeds = len(results.settings["evaluation_seeds"])
    text = [
        "# Optimizer tuning\n",
        _describe(results),
        "## Results\n",
        f"Over the {seeds} evaluation seed{'s' if seeds != 1 else ''}: mean ± half-width of the "
        "95 % confidence interval (Student's t; none with one seed). Best: the best epoch of each "
        "run; final: the last epoch. Gain: tuned minus default best value, seed by seed "
        "(sign flipped for a metric that is better low). s/epoch: median epoch time without the "
        "first epoch, which compiles. Epochs to the target: first epoch that reached it, over the "
        "seeds that did; seconds: those epochs times s/epoch.\n",
        _data_note(results),
        results_table(results),
        "## Which differences the seeds can tell apart\n",
        "Row against column: Welch's t-test (two-sided, 5 %) on the tuned best values over the "
        "evaluation seeds. \"cannot tell\" means that these seeds do not show a difference; more "
        "seeds may.\n",
        pairwise_table(results),
        *(
            [f"The same on the test data (`{results.test_metric}` of each run's trained model):\n",
             pairwise_table(results, "test")]
            if results.test_metric else []
        ),
        "## Learning-rate sensitivity\n",
        "Every trial's best validation value against its learning rate: filled dots ran all "
        "epochs, hollow ones were pruned, crosses diverged; the star is the default setting, the "
        "ring the best trial.\n",
        "![Validation metric against learning rate, every trial](sensitivity.png)\n",
        "## Tuning progress\n",
        "![Best value so far against trial number](progress.png)\n",
        "## Seeds\n",
        "Tuned setting over the evaluation seeds: mean, with the band between the lowest and the "
        "highest seed; the default setting's mean dashed.\n",
        "![Validation metric per epoch over the seeds](seeds.png)\n",
        f"Wall time of this process {results.wall_seconds:.1f} s. Every number is in `results.json`.\n",
    ]
    (folder / "report.md").write_text("\n".join(text))


class TuneResults(TuneRecords):
    """What `tune` measured (see `TuneRecords` for the numbers), with its
    tables, pictures and report."""

    def table(self) -> str:
        """One row per candidate: tuned hyperparameters, mean ± 95 % CI of
        the best and final validation metric, gain over the default, the
        test scores of the tuned and default settings (with test data),
        time."""
        return results_table(self)

    def pairwise_table(self, on: str = "validation") -> str:
        """Which candidates the seeds can tell apart (Welch's t-test, 5 %),
        on the validation values or, with `on="test"`, the test scores."""
        return pairwise_table(self, on)

    def plot_sensitivity(self, path: str | None = None) -> Any:
        """Validation metric against learning rate, every trial, per candidate."""
        return plots.plot_sensitivity(self, path)

    def plot_progress(self, path: str | None = None) -> Any:
        """Best value so far against trial number, per candidate."""
        return plots.plot_progress(self, path)

    def plot_seeds(self, path: str | None = None) -> Any:
        """Validation metric per epoch of the tuned setting over the
        evaluation seeds: mean and the band between the lowest and highest."""
        return plots.plot_seeds(self, path)

    def save(self, folder: str) -> str:
        """Writes `report.md`, `results.json` and the pictures into `folder`
        (created if needed; other files there, such as the study, are kept).
        Each file is written in full beside the folder first, then moved in."""
        return str(publish(folder, lambda staging: write_tune_report(self, staging)))
