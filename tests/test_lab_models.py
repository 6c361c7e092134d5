"""The lab's models: on MNIST-1D the paper's architectures (Greydanus,
"Scaling Down Deep Learning", 2020, arXiv:2011.14439), on digits the lab's
small models as they were.

Expected parameter counts are worked out here from the layer sizes the
paper's code gives (its `LinearBase`, `MLPBase`, `ConvBase`, `GRUBase`),
not read from the models.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_optlab.lab import data, models, runs
from keras_optlab.lab.errors import UsageError

SEQUENCE_LENGTH = 40
CLASSES = 10


def dense(inputs, units):
    return inputs * units + units


def conv(width, channels_in, channels_out, spatial_dims=1):
    return width**spatial_dims * channels_in * channels_out + channels_out


def gru_direction(inputs, units):
    # Three gates, each with an input kernel, a recurrent kernel and, as in
    # PyTorch (Keras' reset_after=True), two bias vectors.
    return 3 * (units * inputs + units * units + 2 * units)


def paper_cnn_parameters():
    channels, length, total, channels_in = 25, SEQUENCE_LENGTH, 0, 1
    for width, stride, padding in ((5, 2, 1), (3, 2, 1), (3, 2, 1)):
        total += conv(width, channels_in, channels)
        length = (length + 2 * padding - width) // stride + 1
        channels_in = channels
    assert length == 5  # the paper's linear layer reads 125 = 5 x 25 values
    return total + dense(length * channels, CLASSES)


PAPER_PARAMETERS = {
    "logistic": dense(SEQUENCE_LENGTH, CLASSES),
    "mlp": dense(SEQUENCE_LENGTH, 100) + dense(100, 100) + dense(100, CLASSES),
    "cnn": paper_cnn_parameters(),
    "gru": 2 * gru_direction(1, 6) + dense(SEQUENCE_LENGTH * 2 * 6, CLASSES),
}

DIGITS_PARAMETERS = {
    "logistic": dense(64, CLASSES),
    "mlp": dense(64, 64) + dense(64, CLASSES),
    "cnn": conv(3, 1, 16, 2) + conv(3, 16, 32, 2) + dense(32, CLASSES),
    "gru": 2 * gru_direction(8, 6) + dense(8 * 2 * 6, CLASSES),
}


@pytest.fixture(scope="module")
def mnist1d():
    return data.load_dataset("mnist1d")


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def test_the_expected_counts_are_the_ones_the_paper_prints():
    # Its quickstart notebook prints 410, 15210, 5210 and 5134 parameters.
    assert PAPER_PARAMETERS == {"logistic": 410, "mlp": 15210, "cnn": 5210, "gru": 5134}


def test_every_name_has_an_expected_count():
    assert set(models.MODELS) == set(PAPER_PARAMETERS) == set(DIGITS_PARAMETERS)


@pytest.mark.parametrize("name", models.MODELS)
def test_mnist1d_model_has_the_paper_parameter_count_and_outputs_probabilities(name, mnist1d):
    model = models.build_model(name, mnist1d, seed=0)
    assert model.count_params() == PAPER_PARAMETERS[name]
    probabilities = keras.ops.convert_to_numpy(model(mnist1d.x_val[:32]))
    assert probabilities.shape == (32, CLASSES)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    keras.backend.clear_session()


@pytest.mark.parametrize("name", models.MODELS)
def test_digits_model_has_its_parameter_count_and_outputs_probabilities(name, digits):
    model = models.build_model(name, digits, seed=0)
    assert model.count_params() == DIGITS_PARAMETERS[name]
    probabilities = keras.ops.convert_to_numpy(model(digits.x_val[:8]))
    assert probabilities.shape == (8, CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    keras.backend.clear_session()


def test_paper_cnn_zero_pads_one_step_each_side_like_pytorch(mnist1d):
    # Keras' padding="same" would pad 1 and 2 for width 5 at stride 2 and
    # give lengths 20 -> 10 -> 5 with different alignments; the paper's
    # Conv1d(padding=1) gives 19 -> 10 -> 5.
    model = models.build_model("cnn", mnist1d, seed=0)
    lengths = [layer.output.shape[1] for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert lengths == [19, 10, 5]
    keras.backend.clear_session()


def test_paper_gru_reads_all_forty_steps_in_both_directions(mnist1d):
    model = models.build_model("gru", mnist1d, seed=0)
    (recurrent,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert tuple(recurrent.input.shape[1:]) == (SEQUENCE_LENGTH, 1)
    assert tuple(recurrent.output.shape[1:]) == (SEQUENCE_LENGTH, 12)
    keras.backend.clear_session()


def _old_digits_mlp(dataset, seed):
    """The digits `mlp` as the lab built it before the paper's models."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((dataset.num_features,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    outputs = keras.layers.Dense(dataset.num_classes, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


def test_default_digits_mlp_starts_from_the_same_weights_as_before(digits):
    # `optlab compare`'s default run (and `make demo`) must not change.
    expected = runs.weights_fingerprint(_old_digits_mlp(digits, seed=3).get_weights())
    actual = runs.weights_fingerprint(models.build_model("mlp", digits, seed=3).get_weights())
    assert actual == expected
    keras.backend.clear_session()


def test_unknown_model_name_lists_the_known_names(digits):
    with pytest.raises(UsageError, match="Unknown model name 'resnet'. Known names: logistic, mlp, cnn, gru"):
        models.build_model("resnet", digits)


@pytest.mark.parametrize("command", ["compare", "find-lr"])
def test_cli_model_help_lists_every_model(command, capsys):
    from keras_optlab.lab import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"--model MODEL {', '.join(models.MODELS)} (default: mlp)" in help_text


def test_other_data_gets_the_one_dimensional_architectures(digits):
    """A user's arrays (any other dataset name) are read as 1-D signals, so
    each name builds the MNIST-1D architecture: the paper's CNN has Conv1D
    layers, where digits' CNN has Conv2D ones."""
    import dataclasses

    other = dataclasses.replace(digits, name="data", signal_shape=(digits.num_features, 1))
    layer_types = {type(layer).__name__ for layer in models.build_model("cnn", other).layers}
    assert "Conv1D" in layer_types and "Conv2D" not in layer_types
    digits_types = {type(layer).__name__ for layer in models.build_model("cnn", digits).layers}
    assert "Conv2D" in digits_types


def test_cnn_on_mnist1d_learns_in_five_epochs(mnist1d):
    """Smoke test, not a reproduction: five epochs of the paper's CNN with
    Adam through `compare` lift validation accuracy far above chance (10 %);
    docs/reproduce_mnist1d.py runs the paper's full budget."""
    results = runs.compare(
        ["adam"], dataset="mnist1d", model="cnn", epochs=5, batch_size=100,
        learning_rates={"adam": 1e-2}, verbose=0,
    )
    accuracy = results.runs[0].history["val_accuracy"]
    assert accuracy[-1] > 0.5
    assert accuracy[-1] > accuracy[0]
    keras.backend.clear_session()
