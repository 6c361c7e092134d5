import dataclasses

import keras
import numpy as np
import pytest

from conftest import apply_once
from keras_optlab import optimizers

SEED_NAMES = [
    "sgd", "momentum", "nag", "adagrad", "adadelta", "rmsprop",
    "adam", "adamax", "nadam", "amsgrad", "adamw", "radam",
]


def test_seed_names_are_registered():
    assert set(SEED_NAMES) <= set(optimizers.list_optimizers())


def test_nag_is_keras_sgd_with_nesterov_momentum():
    nag = optimizers.get("nag")
    # On PyTorch, Keras returns a backend subclass of its SGD.
    assert isinstance(nag, keras.optimizers.SGD)
    assert nag.momentum == pytest.approx(0.9)
    assert nag.nesterov is True


@pytest.mark.parametrize(
    "name, cls, attribute, value",
    [
        ("sgd", keras.optimizers.SGD, "momentum", 0.0),
        ("momentum", keras.optimizers.SGD, "nesterov", False),
        ("amsgrad", keras.optimizers.Adam, "amsgrad", True),
        ("adam", keras.optimizers.Adam, "amsgrad", False),
        ("adamw", keras.optimizers.AdamW, "weight_decay", 0.004),
    ],
)
def test_builtin_names_are_keras_classes_configured(name, cls, attribute, value):
    optimizer = optimizers.get(name)
    assert isinstance(optimizer, cls)
    assert getattr(optimizer, attribute) == pytest.approx(value)


def test_keyword_arguments_override_defaults():
    optimizer = optimizers.get("nag", momentum=0.5, learning_rate=0.2)
    assert optimizer.momentum == pytest.approx(0.5)
    assert float(optimizer.learning_rate) == pytest.approx(0.2)


def test_integer_learning_rate_is_accepted_for_keras_classes():
    optimizer = optimizers.get("sgd", learning_rate=1)
    assert float(optimizer.learning_rate) == pytest.approx(1.0)


def test_names_are_case_insensitive():
    assert isinstance(optimizers.get("RAdam"), optimizers.RAdam)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="Unknown optimizer name 'adamm'") as error:
        optimizers.get("adamm")
    for name in SEED_NAMES:
        assert name in str(error.value)


def test_non_string_name_is_rejected():
    with pytest.raises(TypeError, match="`name`"):
        optimizers.get(3)


def test_filters_by_family_and_origin():
    ours = optimizers.list_optimizers(keras_builtin=False)
    assert "radam" in ours and "adam" not in ours
    assert "nag" in optimizers.list_optimizers(family="sgd")
    assert "adam" not in optimizers.list_optimizers(family="sgd")


def test_every_entry_documents_rule_and_paper():
    for name in optimizers.list_optimizers():
        entry = optimizers.info(name)
        assert entry.update_rule and entry.paper, name
        assert entry.suggested_learning_rate > 0, name


def test_builtin_flag_matches_the_class_module():
    for name in optimizers.list_optimizers():
        entry = optimizers.info(name)
        module = type(optimizers.get(name)).__module__
        assert module.startswith("keras.") == entry.keras_builtin, name


def test_duplicate_registration_is_rejected():
    entry = optimizers.info("adam")
    with pytest.raises(ValueError, match="already registered"):
        optimizers.register(entry)


def test_aliases_resolve_to_their_entry_and_are_not_listed():
    assert optimizers.info("RectifiedAdam") is optimizers.info("radam")
    assert type(optimizers.get("rectifiedadam")).__name__ == "RAdam"
    assert optimizers.info("sgdw") is optimizers.info("sgd")
    assert "rectifiedadam" not in optimizers.list_optimizers()
    # Keras' own optimizer strings accept an alias too.
    assert type(keras.optimizers.get("rectifiedadam")).__name__ == "RAdam"
    # Keras' own names are left to Keras.
    assert isinstance(keras.optimizers.get("adamw"), keras.optimizers.AdamW)


def test_an_alias_cannot_take_a_registered_name():
    entry = optimizers.info("radam")
    clash = dataclasses.replace(entry, name="radam_again", aliases=("adam",))
    with pytest.raises(ValueError, match="'adam' is already registered"):
        optimizers.register(clash)
    assert "radam_again" not in optimizers.list_optimizers()


def test_aliases_must_be_lowercase():
    entry = optimizers.info("radam")
    with pytest.raises(ValueError, match="Aliases must be lowercase"):
        dataclasses.replace(entry, name="radam_upper", aliases=("RAdamW",))


def test_lamb_is_a_keras_string_and_deserializes_after_import():
    # Keras 3.15 exports Lamb but leaves it out of its table of names: its
    # string failed, and `keras.optimizers.deserialize` returned "Lamb".
    assert isinstance(keras.optimizers.get("lamb"), keras.optimizers.Lamb)
    config = keras.optimizers.serialize(keras.optimizers.Lamb(learning_rate=0.01))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, keras.optimizers.Lamb)
    assert float(restored.learning_rate) == pytest.approx(0.01)


def test_adafactor_name_stays_finite_where_a_gradient_row_and_column_are_zero():
    # Keras' Adafactor forms V = R Cᵀ / mean(R) before dividing: with its
    # epsilon_1 = 1e-30, V underflows to 0 where a row and a column of the
    # gradient are zero, g / √V is 0/0 there, and the RMS scaling of the
    # update spreads the NaN over the whole variable. The registry's
    # epsilon_1 keeps V a normal float32.
    gradient = np.ones((3, 4), dtype="float32")
    gradient[0, :] = 0.0
    gradient[:, 0] = 0.0
    results = {}
    for label, optimizer in (
        ("keras", keras.optimizers.Adafactor(learning_rate=0.01)),
        ("registry", optimizers.get("adafactor", learning_rate=0.01)),
    ):
        variable = keras.Variable(np.ones((3, 4), dtype="float32"))
        apply_once(optimizer, [keras.ops.convert_to_tensor(gradient)], [variable])
        results[label] = np.array(variable)
    assert np.all(np.isnan(results["keras"]))
    assert np.all(np.isfinite(results["registry"]))
    # Where the gradient is zero the weight stays; elsewhere it moves down.
    np.testing.assert_array_equal(results["registry"][0, :], 1.0)
    np.testing.assert_array_equal(results["registry"][:, 0], 1.0)
    assert np.all(results["registry"][1:, 1:] < 1.0)
