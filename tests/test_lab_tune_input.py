"""`optlab tune` on the user's own model and data, and bad input: status 2,
one line, no report folder written, an existing study untouched."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import textwrap

import numpy as np
import pytest

from keras_optlab.lab import cli

WORKLOAD = textwrap.dedent(
    '''
    import keras
    import numpy as np


    def classifier():
        # Logits: no softmax on the output.
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(3)])


    def regressor():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])


    def regression_data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(96, 4)).astype("float32")
        y = (x @ np.array([1.0, -2.0, 0.5, 0.0], dtype="float32"))[:, None]
        return {"x_train": x[:64], "y_train": y[:64], "x_val": x[64:], "y_val": y[64:]}


    def broken():
        raise RuntimeError("layer sizes do not add up")


    def not_a_model():
        return 42
    '''
)

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_lab_tune_input")


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with a workload module (a unique name per test, as Python
    caches imports) and a classification .npz, made the current directory."""
    name = f"workload_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(WORKLOAD)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
    np.savez(tmp_path / "classes.npz", x_train=x[:60], y_train=y[:60], x_val=x[60:], y_val=y[60:])
    monkeypatch.chdir(tmp_path)
    return tmp_path, name


SMALL = ["--trials", "1", "--seeds", "1", "--epochs", "1", "--batch-size", "32", "--quiet"]


def test_user_model_and_npz_data_with_logits_are_tuned(workspace):
    folder, module = workspace
    status, _, stderr = run_cli(
        ["tune", "--candidates", "adam", "--model", f"{module}:classifier",
         "--data", "classes.npz", "--out", "report", *SMALL]
    )
    assert status == 0, stderr
    results = json.loads((folder / "report" / "results.json").read_text())
    settings = results["settings"]
    assert settings["loss"] == "sparse categorical cross-entropy (from logits)"
    assert settings["monitor"] == "val_accuracy" and settings["mode"] == "max"
    assert settings["train_examples"] == 60 and settings["validation_examples"] == 30
    assert len(results["candidates"][0]["tuned_runs"]) == 1


def test_compare_trains_a_user_model_on_npz_data(workspace):
    folder, module = workspace
    status, _, stderr = run_cli(
        ["compare", "--optimizers", "sgd,adam", "--model", f"{module}:classifier",
         "--data", "classes.npz", "--epochs", "2", "--out", "report", "--quiet"]
    )
    assert status == 0, stderr
    results = json.loads((folder / "report" / "results.json").read_text())
    settings = results["settings"]
    assert (settings["model"], settings["data"]) == (f"{module}:classifier", "classes.npz")
    assert settings["train_examples"] == 60 and settings["validation_examples"] == 30
    assert [run["optimizer"] for run in results["runs"]] == ["sgd", "adam"]
    for run in results["runs"]:
        assert len(run["history"]["val_accuracy"]) == 2
    assert "| `adam` |" in (folder / "report" / "report.md").read_text()


def test_regression_from_a_data_function_minimises_the_validation_loss(workspace):
    folder, module = workspace
    status, _, stderr = run_cli(
        ["tune", "--candidates", "sgd", "--model", f"{module}:regressor",
         "--data", f"{module}:regression_data", "--out", "report", *SMALL]
    )
    assert status == 0, stderr
    results = json.loads((folder / "report" / "results.json").read_text())
    assert results["settings"]["loss"] == "mean squared error"
    assert (results["settings"]["monitor"], results["settings"]["mode"]) == ("val_loss", "min")
    run = results["candidates"][0]["tuned_runs"][0]
    assert results["summary"]["sgd"]["tuned_best"]["mean"] <= max(run["history"]["val_loss"])


def test_python_api_takes_a_callable_and_a_keras_pydataset():
    import keras

    from keras_optlab.lab import tune

    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")

    class Batches(keras.utils.PyDataset):
        def __init__(self, x, y):
            super().__init__()
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x) // 16

        def __getitem__(self, index):
            part = slice(16 * index, 16 * index + 16)
            return self.x[part], self.y[part]

    def model():
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, activation="softmax")])

    results = tune(["sgd"], model=model, data=(Batches(x[:48], y[:48]), Batches(x[48:], y[48:])),
                   trials=1, seeds=1, epochs=2, out=None, verbose=0)
    outcome = results.candidates[0]
    assert [t.state for t in outcome.trials] == ["complete"]
    assert results.settings["batch_size"] is None
    assert outcome.tuned_runs[0].epochs == 2


def database_state(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def existing_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("existing") / "report"
    status, _, stderr = run_cli(
        ["tune", "--candidates", "sgd", "--trials", "1", "--seeds", "1", "--epochs", "1",
         "--batch-size", "512", "--out", str(out), "--quiet"]
    )
    assert status == 0, stderr
    return out


# Bad model or data: the same errors from `tune` and from `compare`.
BAD_WORKLOAD = {
    "missing data": (["--data", "nothere.npz"], ["Cannot read data 'nothere.npz': no such file"]),
    "not an npz": (["--data", "fake.npz"], ["Cannot read data 'fake.npz'"]),
    "npz lacking arrays": (["--data", "partial.npz"], ["lacks x_val, y_val"]),
    "unknown data": (["--data", "cifar"], ["Unknown data 'cifar'"]),
    "model raises": (["--model", "{module}:broken"], ["does not build", "layer sizes do not add up"]),
    "model is not a model": (["--model", "{module}:not_a_model"], ["must return a keras.Model"]),
    "missing module": (["--model", "no_such_module:build"], ["Cannot import 'no_such_module'"]),
    "model does not fit data": (["--model", "{module}:regressor"], ["does not accept the data"]),
    "wrong array shapes": (["--data", "mismatched.npz"], ["x_train and x_val differ in shape per example"]),
    "test features without labels": (["--data", "half_test.npz"], ["has x_test without y_test"]),
    "wrong test shapes": (["--data", "mismatched_test.npz"], ["x_train and x_test differ in shape per example"]),
}
BAD = {
    **BAD_WORKLOAD,
    "unknown candidate": (["--candidates", "adamx+step"], ["Unknown candidate 'adamx+step'", "Known optimizers:"]),
    "unknown schedule": (["--candidates", "adam+stepp"], ["'stepp' is neither a schedule nor a callback"]),
    "unknown budget": (["--budget", "huge"], ["Unknown budget 'huge'", "quick"]),
    "zero trials": (["--trials", "0"], ["Argument `trials` must be in [1, inf). Received: trials=0"]),
    "bad url": (["--storage", "not a url"], ["Bad storage URL"]),
    "unknown database": (["--storage", "nosuchdb://host/x"], ["Bad storage URL", "nosuchdb"]),
    "bad lr range": (["--lr-range", "sgd=0.1,0.01"], ["0 < LOW < HIGH"]),
    "lr range of another": (["--lr-range", "adam=1e-4,1e-2"], ["'adam', which is not among the candidates"]),
}


COMMANDS = {"tune": ["tune", "--candidates", "sgd"], "compare": ["compare", "--optimizers", "sgd"]}
CASES = [("tune", case) for case in sorted(BAD)] + [("compare", case) for case in sorted(BAD_WORKLOAD)]


@pytest.mark.parametrize("command, case", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(command, case, workspace):
    folder, module = workspace
    (folder / "fake.npz").write_text("not an archive")
    np.savez(folder / "partial.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4))
    np.savez(folder / "mismatched.npz", x_train=np.zeros((4, 6)), y_train=np.zeros(4, "int64"),
             x_val=np.zeros((4, 5)), y_val=np.zeros(4, "int64"))
    arrays = dict(x_train=np.zeros((4, 6)), y_train=np.zeros(4, "int64"),
                  x_val=np.zeros((4, 6)), y_val=np.zeros(4, "int64"))
    np.savez(folder / "half_test.npz", **arrays, x_test=np.zeros((4, 6)))
    np.savez(folder / "mismatched_test.npz", **arrays, x_test=np.zeros((4, 5)), y_test=np.zeros(4, "int64"))
    extra, expected = BAD[case]
    extra = [part.format(module=module) for part in extra]
    # What is there besides Python's own bytecode cache of the user's model
    # module, which importing it may write.
    def contents():
        return sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")

    before = contents()
    status, stdout, stderr = run_cli([*COMMANDS[command], *extra, "--out", "report", "--quiet"])
    assert status == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    for text in expected:
        assert text in stderr
    assert "[tune]" not in stdout and "run 1 of" not in stdout
    assert contents() == before  # no report folder


# A storage URL -> the module its SQLAlchemy driver imports, and the
# install command the error must give. SQLAlchemy 2.1 maps `postgresql://`
# to psycopg 3, whatever psycopg2 a guide had one install.
MISSING_DRIVERS = {
    "postgresql://optlab@localhost/optlab": (
        "psycopg", 'pip install "psycopg[binary]" (or pip install "keras-optlab[postgres]")'
    ),
    "postgresql+psycopg2://optlab@localhost/optlab": ("psycopg2", "pip install psycopg2-binary"),
    "mysql+pymysql://optlab@localhost/optlab": ("pymysql", "pip install PyMySQL"),
}


@pytest.mark.parametrize("url", sorted(MISSING_DRIVERS))
def test_a_storage_url_whose_driver_is_missing_names_the_package(url, workspace, monkeypatch):
    folder, _ = workspace
    module, install = MISSING_DRIVERS[url]
    # With None in sys.modules, `import <module>` raises ImportError, as it
    # does when the package is not installed (installed or not here).
    monkeypatch.setitem(sys.modules, module, None)
    status, stdout, stderr = run_cli(
        ["tune", "--candidates", "sgd", "--storage", url, "--out", "report", "--quiet"]
    )
    assert status == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"its driver {module!r} is not installed. Install it with: {install}\n" in stderr
    assert not (folder / "report").exists()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--epochs", "3"], "was made with epochs=1; this command has epochs=3"),
        (["--batch-size", "256"], "batch_size=512"),
        (["--lr-range", "sgd=0.001,0.01"], "space="),
    ],
)
def test_a_command_that_differs_from_the_study_leaves_it_untouched(existing_study, extra, expected):
    files = {p.name: p.read_bytes() for p in existing_study.iterdir()}
    argv = ["tune", "--candidates", "sgd", "--trials", "1", "--seeds", "1", "--epochs", "1",
            "--batch-size", "512", "--out", str(existing_study), "--quiet"]
    for flag, value in zip(extra[::2], extra[1::2]):
        index = argv.index(flag) if flag in argv else None
        if index is None:
            argv += [flag, value]
        else:
            argv[index + 1] = value
    status, _, stderr = run_cli(argv)
    assert status == 2
    assert stderr.count("\n") == 1
    assert expected in stderr
    assert {p.name: p.read_bytes() for p in existing_study.iterdir()} == files


def test_a_study_whose_batch_order_differs_is_refused(existing_study, tmp_path):
    # A study made when the lab gave TensorFlow's fit Keras' own array
    # pipeline (no batch_order in its settings) is refused on TensorFlow,
    # whose batches now come in another order; elsewhere the order is
    # Keras' own and no setting names it.
    import shutil

    import keras
    import optuna

    from keras_optlab.lab.study import SETTINGS_ATTR

    on_tensorflow = keras.backend.backend() == "tensorflow"

    out = tmp_path / "report"
    shutil.copytree(existing_study, out)
    storage = f"sqlite:///{out / 'study.sqlite3'}"
    study = optuna.load_study(study_name="optlab/sgd", storage=storage)
    settings = dict(study.user_attrs[SETTINGS_ATTR])
    assert ("batch_order" in settings) == on_tensorflow, settings
    if not on_tensorflow:
        return
    del settings["batch_order"]
    study.set_user_attr(SETTINGS_ATTR, settings)
    status, _, stderr = run_cli(
        ["tune", "--candidates", "sgd", "--trials", "1", "--seeds", "1", "--epochs", "1",
         "--batch-size", "512", "--out", str(out), "--quiet"]
    )
    assert status == 2
    assert ("was made with batch_order=None; this command has "
            "batch_order='tf.data shuffle seeded per run'") in stderr


def test_compare_refuses_to_replace_a_tuning_folder(existing_study):
    status, _, stderr = run_cli(["compare", "--epochs", "1", "--out", str(existing_study), "--quiet"])
    assert status == 2
    assert "holds an optlab tune study" in stderr
    assert (existing_study / "study.sqlite3").exists()
