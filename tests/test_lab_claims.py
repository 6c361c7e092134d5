"""Evaluation runs are claimed before they are trained: one holder per run,
on a storage that several processes share (SQLite here; the three-worker
PostgreSQL test in test_lab_tune_workers.py runs the protocol end to end)."""

from __future__ import annotations

import optuna
import pytest

from conftest import BACKEND
from keras_optlab.lab import claims

KEY = "adam|run:default:seed=1"


@pytest.fixture
def shared(tmp_path):
    """Two handles on one storage, as two worker processes have."""
    import warnings

    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        first = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
        second = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    return (first, claims.open_evaluations(first, "s")), (second, claims.open_evaluations(second, "s"))


def test_a_run_has_one_holder(shared):
    (storage_a, study_a), (storage_b, study_b) = shared
    held = claims.claim(study_a, storage_a, KEY)
    assert held is not None
    assert claims.claim(study_b, storage_b, KEY) is None
    assert claims.claim(study_a, storage_a, KEY) is None
    # Another run is free.
    assert claims.claim(study_b, storage_b, "adam|run:default:seed=2") is not None


def test_a_finished_run_is_not_claimed_again(shared):
    (storage_a, study_a), (storage_b, study_b) = shared
    held = claims.claim(study_a, storage_a, KEY)
    claims.finish(storage_a, held, 0.9)
    assert claims.claim(study_b, storage_b, KEY) is None


def test_a_failed_run_is_claimed_again(shared):
    (storage_a, study_a), (storage_b, study_b) = shared
    held = claims.claim(study_a, storage_a, KEY)
    claims.finish(storage_a, held, None)
    again = claims.claim(study_b, storage_b, KEY)
    assert again is not None and again != held


def test_a_spare_trial_of_the_same_run_is_ignored(shared):
    # Two workers that both found no trial for the run and queued one.
    (storage_a, study_a), (storage_b, study_b) = shared
    study_a.enqueue_trial({}, user_attrs={claims.RUN_ATTR: KEY})
    study_b.enqueue_trial({}, user_attrs={claims.RUN_ATTR: KEY})
    held = claims.claim(study_a, storage_a, KEY)
    assert held is not None
    assert claims.claim(study_b, storage_b, KEY) is None


# Storage and threads only, no Keras: these run on one backend.
if BACKEND == "jax":

    def test_workers_claiming_at_once_leave_each_run_one_holder(tmp_path):
        # Four handles (as four worker processes have, each its own
        # connection) claim the same runs at the same moment. Read-then-write
        # claiming let two of them hold one run on SQLite, which has no row
        # lock: both trained it, and the second to finish failed on a
        # finished trial.
        import threading
        import warnings

        url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            handles = [
                optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
                for _ in range(4)
            ]
        studies = [claims.open_evaluations(storage, "s") for storage in handles]
        keys = [f"adam|run:default:seed={seed}" for seed in range(12)]
        held = {key: [] for key in keys}
        barrier = threading.Barrier(len(handles))

        def worker(storage, study):
            for key in keys:
                barrier.wait()
                if claims.claim(study, storage, key) is not None:
                    held[key].append(storage)

        threads = [threading.Thread(target=worker, args=pair) for pair in zip(handles, studies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {key: len(holders) for key, holders in held.items()} == {key: 1 for key in keys}

    def test_the_holder_sends_heartbeats_while_it_trains(shared):
        import time

        (storage_a, study_a), (_, study_b) = shared
        held = claims.claim(study_a, storage_a, KEY)
        with claims.heartbeat(storage_a, held, 0.2):
            time.sleep(2.5)
            optuna.storages.fail_stale_trials(study_b)
            assert [t.state.name for t in claims.running(study_b)] == ["RUNNING"]
        # SQLite stores heartbeats to the whole second and Optuna's test is
        # strict (age > grace): 2.5 s of silence reads as 2 or 3 s, both past
        # the 1 s grace period (with a 2 s grace, a 2 s reading is not stale).
        time.sleep(2.5)
        # Silent past the grace period: failed as stale, free for another worker.
        optuna.storages.fail_stale_trials(study_b)
        assert claims.running(study_b) == []
