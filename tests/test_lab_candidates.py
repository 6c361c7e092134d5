"""Candidates: `optimizer[+schedule][+callback]`, parsed, built and run."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_optlab.callbacks import ReduceLROnPlateau, SwitchOptimizer
from keras_optlab.lab import candidates
from keras_optlab.lab.errors import UsageError
from keras_optlab.optimizers import Steered
from keras_optlab.schedules import StepDecay


@pytest.mark.parametrize(
    "text, optimizer, schedule, callbacks, name",
    [
        ("adam", "adam", None, (), "adam"),
        ("adam+step_decay", "adam", "step", (), "adam+step"),
        ("adam+step", "adam", "step", (), "adam+step"),
        ("adam+time_based", "adam", "time_based", (), "adam+time_based"),
        ("ADAM+Plateau", "adam", None, ("plateau",), "adam+plateau"),
        ("adam+plateau+step", "adam", "step", ("plateau",), "adam+step+plateau"),
        (" nag + one_cycle ", "nag", "one_cycle", (), "nag+one_cycle"),
        ("adam_then_sgd", "adam_then_sgd", None, (), "adam_then_sgd"),
        ("swats", "swats", None, (), "swats"),
        # TensorFlow Addons' class names are aliases of the textbook names.
        ("LazyAdam+plateau", "lazy_adam", None, ("plateau",), "lazy_adam+plateau"),
        ("rectifiedadam", "radam", None, (), "radam"),
        # Run at its defaults, with no search.
        ("Prodigy@Default", "prodigy", None, (), "prodigy@default"),
        ("adam+plateau+step @default", "adam", "step", ("plateau",), "adam+step+plateau@default"),
    ],
)
def test_good_candidates_parse_to_their_canonical_name(text, optimizer, schedule, callbacks, name):
    candidate = candidates.parse_candidate(text)
    assert (candidate.optimizer, candidate.schedule, candidate.callbacks) == (optimizer, schedule, callbacks)
    assert candidate.name == name
    assert candidate.untuned == name.endswith("@default")


def test_a_candidate_at_its_defaults_keeps_the_same_defaults_and_space():
    searched, untuned = candidates.parse_candidates(["prodigy", "prodigy@default"])
    assert untuned.defaults() == searched.defaults() == {"learning_rate": 1.0, "d_coef": 1.0}
    assert set(untuned.search_space()) == set(searched.search_space())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("adamx+step", ["Unknown candidate 'adamx+step'", "Known optimizers:", "adam", "radam", "nag"]),
        ("adam+foo", ["Unknown candidate 'adam+foo'", "'foo'", "Schedules:", "step", "Callbacks: plateau"]),
        ("adam+", ["empty part"]),
        ("", ["empty part"]),
        ("adam+step+cosine", ["two schedules"]),
        ("adam+warmup", ["'warmup'", "other schedules"]),
        ("adam+plateau+plateau", ["'plateau' twice"]),
        ("adam+sgd", ["two optimizers", "adam_then_sgd"]),
        ("adam@tuned", ["'adam@tuned'", "only 'default'", "prodigy@default"]),
        ("adam@", ["'adam@'", "only 'default'"]),
    ],
)
def test_bad_candidates_are_refused_with_one_message_naming_the_part(text, expected):
    with pytest.raises(UsageError) as error:
        candidates.parse_candidate(text)
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_a_candidate_twice_is_refused():
    with pytest.raises(UsageError, match="twice"):
        candidates.parse_candidates(["adam+step_decay", "adam+step"])


def test_search_space_prefixes_schedule_and_callback_parameters():
    space = candidates.parse_candidate("adam+step+plateau").search_space()
    assert {"learning_rate", "beta_1", "beta_2", "step.factor", "step.drop_every",
            "plateau.factor", "plateau.patience"} == set(space)
    nag = candidates.parse_candidate("nag+one_cycle").search_space()
    assert set(nag) == {"learning_rate", "momentum", "one_cycle.warmup_fraction"}


def test_adam_then_sgd_tunes_where_it_switches_and_swats_does_not():
    space = candidates.parse_candidate("adam_then_sgd+plateau").search_space()
    at = space["switch.at"]
    assert (at.low, at.high, at.default) == (0.1, 0.9, 0.5)
    # SWATS switches by its own criterion; Adam never switches.
    assert "switch.at" not in candidates.parse_candidate("swats").search_space()
    assert "switch.at" not in candidates.parse_candidate("adam").search_space()


@pytest.mark.parametrize("fraction, epochs, epoch", [
    # floor(fraction * epochs), at least 1 and at most epochs.
    (0.5, 8, 4), (0.5, 3, 1), (0.5, 1, 1), (0.1, 8, 1), (0.1, 30, 3),
    (0.26, 8, 2), (0.9, 8, 7), (0.9, 10, 9), (1.0, 4, 4), (0.05, 4, 1),
])
def test_switch_at_is_the_epoch_after_that_fraction_of_the_run(fraction, epochs, epoch):
    assert candidates.switch_epoch_at(fraction, epochs) == epoch
    _, callbacks = candidates.parse_candidate("adam_then_sgd").build({"switch.at": fraction}, 10, epochs)
    switches = [c for c in callbacks if isinstance(c, SwitchOptimizer)]
    # SwitchOptimizer counts epochs from 0.
    assert [c.at_epoch for c in switches] == [epoch - 1]


def test_an_explicit_switch_epoch_wins_over_switch_at():
    _, callbacks = candidates.parse_candidate("adam_then_sgd").build({"switch.at": 0.9}, 10, 8, switch_epoch=3)
    assert [c.at_epoch for c in callbacks] == [2]
    # Unset, switch.at takes its default: the middle epoch, as before.
    _, callbacks = candidates.parse_candidate("adam_then_sgd").build({}, 10, 8)
    assert [c.at_epoch for c in callbacks] == [3]


def test_learning_rate_range_replaces_the_registry_range():
    space = candidates.parse_candidate("adam").search_space(learning_rate_range=(1e-2, 1.0))
    assert (space["learning_rate"].low, space["learning_rate"].high) == (1e-2, 1.0)
    assert space["learning_rate"].default == 1e-2  # the suggestion 1e-3, clipped


def test_build_gives_the_schedule_the_tuned_rate():
    candidate = candidates.parse_candidate("adam+step")
    optimizer, callbacks = candidate.build(
        {"learning_rate": 0.02, "step.factor": 0.25, "step.drop_every": 0.5}, steps_per_epoch=5, epochs=4
    )
    schedule = optimizer._learning_rate
    assert isinstance(schedule, StepDecay)
    assert schedule.initial_learning_rate == 0.02
    assert schedule.decay_rate == 0.25
    assert schedule.decay_steps == 2 and schedule.steps_per_epoch == 5
    assert callbacks == []


def test_plateau_on_a_keras_optimizer_with_a_float_rate_needs_no_wrapper():
    optimizer, callbacks = candidates.parse_candidate("adam+plateau").build(
        {"plateau.patience": 3}, steps_per_epoch=5, epochs=4
    )
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert len(callbacks) == 1 and isinstance(callbacks[0], ReduceLROnPlateau)
    assert callbacks[0].patience == 3 and callbacks[0].factor == 0.5


def test_plateau_over_a_schedule_wraps_a_keras_optimizer_in_steered():
    optimizer, _ = candidates.parse_candidate("adam+cosine+plateau").build({}, 5, 4)
    assert isinstance(optimizer, Steered)


def test_adam_then_sgd_gets_a_switch_at_the_middle_epoch():
    _, callbacks = candidates.parse_candidate("adam_then_sgd").build({}, 5, 6)
    assert len(callbacks) == 1 and isinstance(callbacks[0], SwitchOptimizer)
    assert callbacks[0].at_epoch == 2  # end of the third epoch, 0-based


def test_compare_runs_a_step_decay_candidate_on_the_step_rule():
    from keras_optlab.lab import compare

    results = compare(["sgd+step_decay"], epochs=4, batch_size="full", verbose=0)
    run = results.runs[0]
    assert run.optimizer == "sgd+step"
    # Defaults: factor 0.5, a drop every round(0.3 * 4) = 1 epoch; one step
    # per epoch at full batch. The logged rate is the one at the end of
    # epoch e, after (e + 1) steps.
    expected = [0.05 * 0.5 ** (e + 1) for e in range(4)]
    np.testing.assert_allclose(run.history["learning_rate"], expected, rtol=1e-6)
