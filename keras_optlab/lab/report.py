"""Report folders, written whole or not at all, and the compare report's text.

`publish` writes a report's files into a staging folder beside the target
(same parent, same file system), then moves each into the target,
`results.json` last: a folder whose `results.json` is new has every file
new. A failure while writing removes the staging folder and leaves the
target as it was. Other files in the target are kept (a tune study beside
its report). `check_out_folder` refuses, before any training, an `--out`
that is a file, a folder of other things, or that cannot be written.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable

from keras_optlab.lab import plots
from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.records import Comparison


FORMAT_PREFIX = "keras_optlab."
# The SQLite file of a tune study kept in its report folder.
STUDY_FILE = "study.sqlite3"


def is_report_folder(target: pathlib.Path) -> bool:
    """Whether `target` holds a `results.json` written by the lab."""
    try:
        marker = json.loads((target / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and str(marker.get("format", "")).startswith(FORMAT_PREFIX)


def check_out_folder(out: str | os.PathLike, *, study: bool = False) -> pathlib.Path:
    """The absolute report folder for `out`, checked: new, empty, or an
    earlier report (with `study`, also a folder holding a tune study).

    Raises:
        UsageError: For a file, a folder of other things, a tune study's
            folder given to a command without one, or a folder that cannot
            be written.
    """
    folder = pathlib.Path(out).expanduser().absolute()
    shown = str(out)
    if folder.is_file():
        raise UsageError(f"Output folder {shown!r} is an existing file.")
    if folder.is_dir():
        names = {p.name for p in folder.iterdir()}
        if STUDY_FILE in names and not study:
            raise UsageError(f"Output folder {shown!r} holds an optlab tune study; choose another --out.")
        ours = is_report_folder(folder) or (study and STUDY_FILE in names)
        if names and not ours:
            raise UsageError(
                f"Output folder {shown!r} exists and is not an optlab report; choose another --out."
            )
        if not os.access(folder, os.W_OK):
            raise UsageError(f"Cannot write output folder {shown!r}: permission denied.")
        return folder
    parent = folder.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"Cannot write output folder {shown!r}: {parent} is not a writable folder.")
    return folder


def publish(folder: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Runs `write(staging)` and moves what it wrote into `folder` (see the
    module); returns the folder."""
    target = pathlib.Path(folder).expanduser().absolute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as error:
        raise UsageError(
            f"Cannot write output folder {str(folder)!r}: {error.strerror or error}."
        ) from None
    try:
        write(staging)
        target.mkdir(exist_ok=True)
        # mkdtemp makes files private; a report is not.
        umask = os.umask(0)
        os.umask(umask)
        names = sorted(p.name for p in staging.iterdir())
        names.sort(key=lambda name: name == "results.json")
        for name in names:
            os.chmod(staging / name, 0o666 & ~umask)
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: diverged numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes strict JSON (non-finite numbers become null)."""
    with open(path, "w") as handle:
        json.dump(_clean(data), handle, indent=1, allow_nan=False)
        handle.write("\n")


# Column header, summary key, format of the mean.
COLUMNS = (
    ("best val accuracy", "best_val_accuracy", "{:.4f}"),
    ("epoch of best", "best_epoch", "{:.0f}"),
    ("final val accuracy", "final_val_accuracy", "{:.4f}"),
    ("best val loss", "best_val_loss", "{:.4f}"),
    ("final val loss", "final_val_loss", "{:.4f}"),
    ("test accuracy", "test_accuracy", "{:.4f}"),
    ("test loss", "test_loss", "{:.4f}"),
    ("s/epoch", "seconds_per_epoch", "{:.3f}"),
)


def _cell(stats: dict[str, float], pattern: str, spread: bool) -> str:
    mean = stats["mean"]
    if not math.isfinite(mean):
        return "diverged"
    text = pattern.format(mean)
    if spread:
        # One more decimal for the spread of an integer-valued column.
        spread_pattern = "{:.1f}" if pattern == "{:.0f}" else pattern
        if pattern == "{:.0f}":
            text = f"{mean:.1f}"
        text += " ± " + spread_pattern.format(stats["std"])
    return text


def markdown_table(results: Comparison) -> str:
    """One row per optimizer: learning rate and the summary columns. With
    several seeds each cell is `mean ± standard deviation`."""
    spread = results.settings.get("seeds", 1) > 1
    summary = results.summary()
    # Test columns only where the runs were scored on test data.
    columns = [c for c in COLUMNS if all(c[1] in summary[name] for name in results.optimizers)]
    header = ["optimizer", "learning rate"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in results.optimizers:
        rate = results.runs_of(name)[0].learning_rate
        cells = [f"`{name}`", f"{rate:g}"]
        cells += [_cell(summary[name][key], pattern, spread) for _, key, pattern in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _describe(results: Comparison) -> str:
    s = results.settings
    seeds = s["seeds"]
    seed_text = (
        f"seed {s['seed']}" if seeds == 1
        else f"seeds {s['seed']}..{s['seed'] + seeds - 1} (mean ± standard deviation over {seeds})"
    )
    batch = s["batch_size"]
    regime = (
        "full batch" if s["batch_size_argument"] == "full"
        else "stochastic" if batch == 1 else "mini-batch"
    )
    fingerprints = {run.seed: run.initial_weights_sha256 for run in results.runs}
    same = all(
        run.initial_weights_sha256 == fingerprints[run.seed] for run in results.runs
    )
    initial = (
        "Every optimizer started from the same initial weights "
        if same else "**The runs did not all start from the same initial weights** "
    )
    initial += "(SHA-256 " + ", ".join(
        f"`{fingerprints[k][:12]}`" for k in sorted(fingerprints)
    ) + ") and saw the same batches."
    test = (
        f", {s['test_examples']} test examples" if s.get("test_examples")
        else ", no test data: the numbers are validation numbers"
    )
    return (
        f"Data `{s['data']}` ({s['train_examples']} training, "
        f"{s['validation_examples']} validation examples{test}), model `{s['model']}`, "
        f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, batch size {batch} ({regime}), {seed_text}; "
        f"backend `{s['backend']}` (Keras {s['keras_version']}), "
        f"jit_compile={s['jit_compile']!r}, steps_per_execution={s['steps_per_execution']}.\n\n"
        f"{initial}\n"
    )


def write_compare_report(results: Comparison, folder: str | os.PathLike) -> None:
    """Writes `report.md`, `curves.png`, `lr.png` and `results.json`."""
    folder = pathlib.Path(folder)
    plots.plot_curves(results, folder / "curves.png", close=True)
    plots.plot_learning_rates(results, folder / "lr.png", close=True)
    write_json(results.to_dict(), folder / "results.json")
    switches = [
        f"`{run.optimizer}` (seed {run.seed}): epoch {', '.join(map(str, run.switch_epochs))}"
        for run in results.runs if run.switch_epochs
    ]
    text = [
        "# Optimizer comparison\n",
        _describe(results),
        "## Results\n",
        "Best: the epoch of highest validation accuracy; best val loss is the "
        "lowest of any epoch. s/epoch: median wall time of an epoch (training "
        "and validation), first epoch left out because it also compiles.\n",
        markdown_table(results),
    ]
    if switches:
        text.append("Switch epochs (phase changed by the end of): " + "; ".join(switches) + ".\n")
    text += [
        "## Curves\n",
        "![Training and validation loss and accuracy](curves.png)\n",
        "## Learning rates\n",
        "![Effective learning rate per epoch](lr.png)\n",
        f"Total wall time {results.wall_seconds:.1f} s. Every number is in `results.json`.\n",
    ]
    (folder / "report.md").write_text("\n".join(text))
