"""Bad input to `optlab`: one line on stderr, status 2, nothing written."""

from __future__ import annotations

import contextlib
import io

import pytest

from keras_optlab.lab import cli


def _run(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


CASES = {
    "unknown optimizer": (
        ["compare", "--optimizers", "sgd,adamm", "--epochs", "1"],
        ["adamm", "sgd", "radam", "adam_then_sgd"],
    ),
    "unknown dataset": (
        ["compare", "--dataset", "cifar", "--epochs", "1"], ["cifar", "digits", "mnist1d"],
    ),
    "unknown model": (
        ["compare", "--model", "resnet", "--epochs", "1"], ["resnet", "logistic, mlp, cnn, gru"],
    ),
    "find-lr unknown model": (["find-lr", "--model", "resnet"], ["resnet", "logistic, mlp, cnn, gru"]),
    "zero epochs": (
        ["compare", "--epochs", "0"], ["Argument `epochs` must be in [1, inf). Received: epochs=0"],
    ),
    "negative epochs": (["compare", "--epochs", "-3"], ["Received: epochs=-3"]),
    "zero steps per execution": (
        ["compare", "--steps-per-execution", "0", "--epochs", "1"],
        ["Argument `steps_per_execution` must be in [1, inf). Received: steps_per_execution=0"],
    ),
    "bad batch size": (["compare", "--batch-size", "half", "--epochs", "1"], ["batch_size"]),
    "find-lr unknown optimizer": (["find-lr", "--optimizer", "nope"], ["nope", "sgd"]),
    "find-lr too few steps": (["find-lr", "--steps", "1"], ["Argument `steps`"]),
    "surface unknown function": (["surface", "--function", "himmelblau"], ["saddle", "rosenbrock", "beale"]),
    "unknown command": (["plot"], ["invalid choice"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path):
    argv, expected = CASES[case]
    out = tmp_path / "report"
    status, _, stderr = _run([*argv, "--out", str(out), "--quiet"])
    assert status == 2
    assert stderr.count("\n") == 1 and stderr.endswith("\n")
    assert "Traceback" not in stderr
    for text in expected:
        assert text in stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder_exits_2_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "report"
    status, stdout, stderr = _run(["compare", "--epochs", "1", "--out", str(out), "--quiet"])
    assert status == 2
    assert stderr.count("\n") == 1
    assert "Cannot write output folder" in stderr
    assert "Traceback" not in stderr
    assert "run 1 of" not in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_folder_of_other_files_is_refused_not_emptied(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    status, _, stderr = _run(["surface", "--steps", "2", "--out", str(out), "--quiet"])
    assert status == 2
    assert "not an optlab report" in stderr
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
