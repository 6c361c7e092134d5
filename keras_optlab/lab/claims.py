"""Evaluation runs claimed before they are trained, so that workers sharing
a study never train one twice.

Each evaluation run (a candidate's default or tuned setting on one seed)
is a trial of the study's evaluation study `<study>:evaluation`, marked by
its key in the user attribute `run`. A worker claims a run by moving the
lowest-numbered live trial of that key from WAITING to RUNNING in one
conditional UPDATE, which the database does atomically (a trial another
worker moved first is not moved again); the trial is created WAITING if
the run has none (two workers creating one at once leave a spare, which
the lowest-number rule ignores). A claimed run sends Optuna's heartbeat while it trains; a
worker that dies leaves it to go stale, and Optuna's retry callback queues
it again, for another worker to claim.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

RUN_ATTR = "run"
SUFFIX = ":evaluation"


def open_evaluations(storage: Any, study: str) -> Any:
    """The evaluation study of `study` (made on first use)."""
    import optuna

    return optuna.create_study(
        study_name=study + SUFFIX, storage=storage, direction="maximize", load_if_exists=True
    )


def claim(evaluations: Any, storage: Any, key: str) -> int | None:
    """The trial id of `key`'s run if this process now holds it; `None` if
    another process holds it or finished it."""
    import optuna

    state = optuna.trial.TrialState
    for _ in range(2):
        live = [
            t for t in evaluations.get_trials(deepcopy=False)
            if t.user_attrs.get(RUN_ATTR) == key and t.state != state.FAIL
        ]
        if live:
            first = min(live, key=lambda t: t.number)
            if first.state != state.WAITING:
                return None
            return first._trial_id if _take(storage, first._trial_id) else None
        evaluations.enqueue_trial({}, user_attrs={RUN_ATTR: key})
    return None


def _take(storage: Any, trial_id: int) -> bool:
    """Moves trial `trial_id` from WAITING to RUNNING in one conditional
    UPDATE; true if this call moved it. Optuna's `set_trial_state_values`
    reads the state and writes it in two statements, with the row locked
    between them on PostgreSQL but not on SQLite, where two processes could
    both read WAITING and both believe they hold the run."""
    import datetime

    engine = getattr(storage, "engine", None)
    if engine is None:  # not a database: Optuna's own check
        import optuna

        return storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING)
    import sqlalchemy

    with engine.begin() as connection:
        moved = connection.execute(
            sqlalchemy.text(
                "UPDATE trials SET state = 'RUNNING', datetime_start = :now "
                "WHERE trial_id = :trial_id AND state = 'WAITING'"
            ),
            {"now": datetime.datetime.now(), "trial_id": trial_id},
        )
        return moved.rowcount == 1


def finish(storage: Any, trial_id: int, value: float | None) -> None:
    """Marks a claimed run done (`value` its best metric) or failed (`None`)."""
    import optuna

    state = optuna.trial.TrialState
    done = value is not None and value == value
    storage.set_trial_state_values(
        trial_id, state.COMPLETE if done else state.FAIL, values=[value] if done else None
    )


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int, interval: float) -> Iterator[None]:
    """Sends the storage's heartbeat for `trial_id` every `interval` seconds
    while the block runs (nothing for a storage without heartbeats)."""
    if not hasattr(storage, "record_heartbeat"):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def running(evaluations: Any) -> list[Any]:
    """Claimed runs still training somewhere."""
    import optuna

    return evaluations.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
