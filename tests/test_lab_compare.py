"""`optlab compare` end to end, and the `compare` Python API.

Budgets are tiny (two epochs, two optimizers): these tests check what is
written and that the runs are comparable, not how well anything trains.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest

from keras_optlab.lab import cli, runs

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_lab_compare")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPTIMIZERS = ("sgd", "adam_then_sgd")
EPOCHS = 4


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "report"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main([
            "compare", "--optimizers", ",".join(OPTIMIZERS), "--epochs", str(EPOCHS),
            "--batch-size", "128", "--out", str(out),
        ])
    return status, out, stdout.getvalue()


def _table_rows(report_text):
    """Cells of each optimizer row of report.md's table, by optimizer name."""
    rows = {}
    for line in report_text.splitlines():
        match = re.match(r"^\| `([a-z_0-9]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_cli_compare_exits_zero_and_reports_progress_and_wall_time(cli_report):
    status, _, stdout = cli_report
    assert status == 0
    for k in range(1, len(OPTIMIZERS) + 1):
        assert f"run {k} of {len(OPTIMIZERS)}: {OPTIMIZERS[k - 1]}" in stdout
    assert re.search(r"Total wall time: \d+\.\d s", stdout)


def test_cli_compare_writes_every_report_file(cli_report):
    _, out, _ = cli_report
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "lr.png", "report.md", "results.json"]
    for picture in ("curves.png", "lr.png"):
        data = (out / picture).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 5000
    assert not list(out.parent.glob(".report.partial-*"))


def test_results_json_agrees_with_the_report_table(cli_report):
    _, out, _ = cli_report
    results = json.loads((out / "results.json").read_text())
    rows = _table_rows((out / "report.md").read_text())
    assert list(rows) == list(OPTIMIZERS)
    for name in OPTIMIZERS:
        summary = {k: v["mean"] for k, v in results["summary"][name].items()}
        rate = next(r["learning_rate"] for r in results["runs"] if r["optimizer"] == name)
        expected = [
            f"{rate:g}",
            f"{summary['best_val_accuracy']:.4f}",
            f"{summary['best_epoch']:.0f}",
            f"{summary['final_val_accuracy']:.4f}",
            f"{summary['best_val_loss']:.4f}",
            f"{summary['final_val_loss']:.4f}",
            f"{summary['test_accuracy']:.4f}",
            f"{summary['test_loss']:.4f}",
            f"{summary['seconds_per_epoch']:.3f}",
        ]
        assert rows[name] == expected


def test_results_json_summary_is_computed_from_the_history(cli_report):
    _, out, _ = cli_report
    results = json.loads((out / "results.json").read_text())
    for run in results["runs"]:
        accuracy = np.asarray(run["history"]["val_accuracy"])
        loss = np.asarray(run["history"]["val_loss"])
        assert len(accuracy) == EPOCHS
        assert run["summary"]["best_val_accuracy"] == pytest.approx(accuracy.max())
        assert run["summary"]["best_epoch"] == int(np.argmax(accuracy)) + 1
        assert run["summary"]["final_val_loss"] == pytest.approx(loss[-1])
        assert run["summary"]["best_val_loss"] == pytest.approx(loss.min())


def test_every_optimizer_starts_from_the_same_initial_weights(cli_report):
    import keras

    from keras_optlab.lab import data, models

    _, out, _ = cli_report
    results = json.loads((out / "results.json").read_text())
    fingerprints = {run["initial_weights_sha256"] for run in results["runs"]}
    assert len(fingerprints) == 1
    # The fingerprint is that of the model built independently from seed 0.
    template = models.build_model("mlp", data.load_dataset("digits"), seed=0)
    assert fingerprints == {runs.weights_fingerprint(template.get_weights())}
    # A different seed gives different weights, so the check above can fail.
    other = models.build_model("mlp", data.load_dataset("digits"), seed=1)
    assert runs.weights_fingerprint(other.get_weights()) not in fingerprints
    keras.backend.clear_session()


def test_adam_then_sgd_switches_at_the_middle_epoch_and_lr_follows(cli_report):
    _, out, _ = cli_report
    results = json.loads((out / "results.json").read_text())
    run = next(r for r in results["runs"] if r["optimizer"] == "adam_then_sgd")
    middle = EPOCHS // 2
    assert run["switch_epochs"] == [middle]
    assert run["history"]["optimizer_phase"] == [0.0] * (middle - 1) + [1.0] * (EPOCHS - middle + 1)
    # Adam's rate before the switch, SGD's (the registry's default 0.01) after.
    rates = run["history"]["learning_rate"]
    assert rates[0] == pytest.approx(run["learning_rate"])
    assert rates[-1] == pytest.approx(0.01)
    assert "Switch epochs" in (out / "report.md").read_text()


def test_python_api_full_batch_with_two_seeds_reports_mean_and_spread():
    from keras_optlab.lab import compare

    results = compare(["sgd", "momentum"], epochs=1, batch_size="full", seeds=2, verbose=0)
    assert results.settings["batch_size"] == results.settings["train_examples"]
    assert [(r.optimizer, r.seed) for r in results.runs] == [
        ("sgd", 0), ("momentum", 0), ("sgd", 1), ("momentum", 1),
    ]
    by_seed = {}
    for run in results.runs:
        by_seed.setdefault(run.seed, set()).add(run.initial_weights_sha256)
    assert all(len(prints) == 1 for prints in by_seed.values())
    assert by_seed[0] != by_seed[1]
    table = results.table()
    # Six validation and time columns and two test columns (digits has test
    # data), each mean ± standard deviation.
    assert table.count("±") == 2 * 8
    figure = results.plot()
    assert len(figure.axes) == 4
    assert [line.get_label() for line in figure.axes[0].lines] == ["sgd", "momentum"]
