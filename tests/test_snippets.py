"""Every Python block of README.md, docs/ and keras_optlab's docstrings runs
as written, each in a fresh namespace.

Blocks that elide the user's own objects get small stand-ins, declared once
below (`STAND_INS`): a 16-example dataset `x`, `y`, a compiled model whose
`fit` trains one epoch, `steps_per_epoch`, and a two-example model and data for
`tune`. The lab's `quick` tuning budget is shrunk for the run. Nothing else
is changed, and no block is skipped: a block that is not meant to run
(shell commands, console output) is fenced as `bash` or `console`, not
`python`. Each block runs in a temporary working folder, since some write
reports.
"""

from __future__ import annotations

import ast
import pathlib
import re

import keras
import numpy as np
import pytest

import keras_optlab

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(keras_optlab.__file__).parent
FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```", re.M | re.S)


def _docstrings(path: pathlib.Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=True)
            if text:
                yield getattr(node, "name", path.stem), text


def _blocks():
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(FENCE.finditer(path.read_text()), 1):
            found.append(pytest.param(match.group(2), id=f"{path.relative_to(ROOT)}#{number}"))
    for path in sorted(PACKAGE.rglob("*.py")):
        for owner, text in _docstrings(path):
            for number, match in enumerate(FENCE.finditer(text), 1):
                block = "\n".join(line[len(match.group(1)):] for line in match.group(2).splitlines())
                found.append(pytest.param(block, id=f"{path.relative_to(ROOT)}:{owner}#{number}"))
    return found


BLOCKS = _blocks()


class _OneEpochModel(keras.Sequential):
    """The stand-in for the user's model: whatever `epochs` a block asks
    for, it trains one, so that the blocks stay fast. It comes compiled, as the
    model of a block that only calls `fit` must be."""

    def fit(self, *args, **kwargs):
        kwargs["epochs"] = 1
        return super().fit(*args, **kwargs)


class _TinyDataset(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.x, self.y


def STAND_INS() -> dict:
    """The names the blocks elide, fresh for each block."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8)).astype("float32")
    y = rng.integers(0, 10, size=(16, 1)).astype("int32")

    def build_model():
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")])

    model = _OneEpochModel([keras.Input((8,)), keras.layers.Dense(10, activation="softmax")], name="model")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return {
        "x": x, "y": y, "x_train": x, "y_train": y, "steps_per_epoch": 2, "model": model,
        "build_model": build_model,
        "train_dataset": _TinyDataset(x, y), "validation_dataset": _TinyDataset(x, y),
    }


def test_blocks_are_found_in_every_place_they_are_written():
    ids = [block.id for block in BLOCKS]
    assert any(i.startswith("README.md#") for i in ids)
    assert any(i.startswith("docs/schedules.md#") for i in ids)
    assert any(i.startswith("keras_optlab/optimizers/radam.py:RAdam#") for i in ids)
    assert len(ids) >= 38


@pytest.mark.parametrize("code", BLOCKS)
def test_block_runs_as_written(code, tmp_path, monkeypatch):
    from keras_optlab.lab import tuning

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(tuning.BUDGETS, "quick", tuning.Budget(trials=2, seeds=1, epochs=1))
    exec(compile(code, "<block>", "exec"), STAND_INS())
