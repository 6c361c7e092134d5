"""Workers that start together race to make a candidate's study: the one
that makes it queues the default trial, then records the settings; the
others wait for the settings instead of taking the half-made study for a
foreign one (keras_optlab.lab.study.open_studies)."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from keras_optlab.lab import study as studies
from keras_optlab.lab.candidates import parse_candidates
from keras_optlab.lab.errors import UsageError

CANDIDATES = parse_candidates(["sgd"])
SPACES = {c.name: c.search_space() for c in CANDIDATES}
WANTED = {"sgd": {"format": "test", "epochs": 2}}


def open_sgd(storage):
    return studies.open_studies(
        storage, "memory", "s", CANDIDATES, SPACES, WANTED, minimise=False, trials=3, epochs=2
    )


def half_made(storage):
    """What another worker's `open_studies` has written between making the
    study and recording its settings."""
    made = optuna.create_study(study_name="s/sgd", storage=storage, direction="maximize")
    defaults = studies.to_optuna(SPACES["sgd"], CANDIDATES[0].defaults())
    made.enqueue_trial(defaults, user_attrs={"default": True})
    return made


def test_a_worker_waits_for_the_settings_of_a_study_another_worker_is_making():
    storage = optuna.storages.InMemoryStorage()
    made = half_made(storage)
    finisher = threading.Timer(0.5, made.set_user_attr, (studies.SETTINGS_ATTR, WANTED["sgd"]))
    began = time.monotonic()
    finisher.start()
    try:
        opened = open_sgd(storage)["sgd"]
    finally:
        finisher.join()
    assert time.monotonic() - began >= 0.5
    # The maker's default trial is the only one: not queued a second time.
    assert [t.state.name for t in opened.get_trials()] == ["WAITING"]


def test_a_study_left_half_made_is_finished_by_the_next_command(monkeypatch):
    monkeypatch.setattr(studies, "SETTINGS_WAIT_SECONDS", 0.3)
    storage = optuna.storages.InMemoryStorage()
    half_made(storage)
    opened = open_sgd(storage)["sgd"]
    assert opened.user_attrs[studies.SETTINGS_ATTR] == WANTED["sgd"]
    assert len(opened.get_trials()) == 1


def test_a_study_with_trials_and_no_settings_is_refused_at_once():
    storage = optuna.storages.InMemoryStorage()
    foreign = optuna.create_study(study_name="s/sgd", storage=storage, direction="maximize")
    foreign.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    began = time.monotonic()
    with pytest.raises(UsageError, match="'s/sgd' in memory was not made by optlab tune"):
        open_sgd(storage)
    assert time.monotonic() - began < studies.SETTINGS_WAIT_SECONDS / 2


class _MakerFinishesAfterTheFirstRead:
    """A study whose maker, between a reader's first and second read, records
    its settings and starts the default trial: every read after the first
    sees the finished study."""

    def __init__(self):
        self.reads = 0

    def _read(self):
        self.reads += 1
        return self.reads > 1

    def get_trials(self, deepcopy=False):
        state = optuna.trial.TrialState.RUNNING if self._read() else optuna.trial.TrialState.WAITING
        return [optuna.trial.create_trial(state=state)]

    @property
    def user_attrs(self):
        return {studies.SETTINGS_ATTR: dict(WANTED["sgd"])} if self._read() else {}


def test_a_maker_that_finishes_between_two_reads_is_not_taken_for_a_foreign_study(monkeypatch):
    # Read attributes first and trials second, this study would show no
    # settings and a running trial: "not made by optlab tune".
    study = _MakerFinishesAfterTheFirstRead()
    monkeypatch.setattr(optuna, "load_study", lambda **_: study)
    assert studies._stored_settings(None, "memory", "s/sgd") == WANTED["sgd"]
    assert study.reads == 2
