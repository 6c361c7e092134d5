"""Report folders written all or nothing, and the compare report's text.

A report is written into a staging folder next to the target (same parent,
so the final rename stays on one file system and is atomic) and renamed
into place only when every file is written. A failure removes the staging
folder and leaves the target as it was. An existing target is replaced
only if it is empty or is itself an optlab report (its `results.json` says
so): pointing `--out` at a folder of other files is refused, not emptied.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile
from typing import Any

from keras_optlab.lab import plots
from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.records import Comparison


FORMAT_PREFIX = "keras_optlab."


def _is_replaceable(target: pathlib.Path) -> bool:
    return not any(target.iterdir()) or is_report_folder(target)


def is_report_folder(target: pathlib.Path) -> bool:
    """Whether `target` holds a `results.json` written by the lab."""
    try:
        marker = json.loads((target / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and str(marker.get("format", "")).startswith(FORMAT_PREFIX)


class ReportFolder:
    """A staging folder that becomes `target` on `commit()`.

    Args:
        target: The report folder to create or replace.

    Raises:
        UsageError: If `target` is a file, a folder that is not an optlab
            report, or cannot be written.
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = pathlib.Path(target).expanduser().absolute()
        if self.target.is_file():
            raise UsageError(f"Output folder {str(target)!r} is an existing file.")
        if (self.target / "study.sqlite3").exists():
            raise UsageError(
                f"Output folder {str(target)!r} holds an optlab tune study; choose another --out."
            )
        if self.target.is_dir() and not _is_replaceable(self.target):
            raise UsageError(
                f"Output folder {str(target)!r} exists and is not an optlab "
                "report; choose another --out."
            )
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.path = tempfile.mkdtemp(
                prefix=f".{self.target.name}.partial-", dir=self.target.parent
            )
            # mkdtemp makes the folder private (0700); a report is not.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)
        except OSError as error:
            reason = error.strerror or str(error)
            raise UsageError(
                f"Cannot write output folder {str(target)!r}: {reason}."
            ) from None
        self._committed = False

    def commit(self) -> None:
        """Moves the staging folder to `target`, replacing an old report."""
        old = None
        if self.target.exists():
            old = tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent)
            os.rmdir(old)
            os.rename(self.target, old)
        os.rename(self.path, self.target)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Removes the staging folder unless it was committed."""
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)


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
    header = ["optimizer", "learning rate"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in results.optimizers:
        rate = results.runs_of(name)[0].learning_rate
        cells = [f"`{name}`", f"{rate:g}"]
        cells += [_cell(summary[name][key], pattern, spread) for _, key, pattern in COLUMNS]
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
    return (
        f"Dataset `{s['dataset']}` ({s['train_examples']} training, "
        f"{s['validation_examples']} validation examples), model `{s['model']}`, "
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
