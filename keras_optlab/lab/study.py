"""The tune study in its storage: Optuna's studies, trials and stored runs.

Each candidate `c` has its own Optuna study `<study>/<c>` in one storage
(any database URL Optuna accepts; SQLite by default). A study remembers the
settings it was made with (`SETTINGS_ATTR`); a command with other settings
is refused before anything is written. Evaluation runs are stored as the
study's user attributes (`run:default:seed=S`, `run:tuned:N:seed=S`), so a
run that another worker stored is never repeated.

The storage runs Optuna's heartbeat: a trial whose process died (SIGKILL, a
lost machine) stops sending it and is failed after `GRACE_INTERVALS`
heartbeat intervals, then retried once. A process killed between creating
a trial and its first heartbeat leaves a running trial with no heartbeat at
all, which Optuna's own check does not see: `fail_silent_trials` fails it
once it is older than the grace period.

Hyperparameters named `1-β` in Optuna are tuned log-uniformly in `1 − β`
(`keras_optlab.search_space.OneMinusLogUniform`); `from_optuna` turns them
back into `β`.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any, Mapping

from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError
from keras_optlab.lab.records import RunRecord, TrialRecord, best_index

HEARTBEAT_INTERVAL = 10
# A trial is stale after this many heartbeat intervals without one.
GRACE_INTERVALS = 3
SETTINGS_ATTR = "optlab_settings"
# How long a worker that finds a study without settings waits for the
# worker that is making it to record them (milliseconds, unless the
# database is overloaded).
SETTINGS_WAIT_SECONDS = 30.0
RUN_ATTR_PREFIX = "run:"
ONE_MINUS = "1-"
# The package that brings each SQLAlchemy driver, and the extra of ours
# that installs it.
DRIVER_PACKAGES = {
    "psycopg": ('"psycopg[binary]"', '"keras-optlab[postgres]"'),
    "psycopg2": ("psycopg2-binary", None),
    "pg8000": ("pg8000", None),
    "asyncpg": ("asyncpg", None),
    "pymysql": ("PyMySQL", None),
    "mysqldb": ("mysqlclient", None),
    "mysqlconnector": ("mysql-connector-python", None),
}


# --- search space <-> Optuna ---------------------------------------------

def suggest(trial, name: str, dimension) -> Any:
    from keras_optlab import search_space as space

    if isinstance(dimension, space.IntUniform):
        return trial.suggest_int(name, int(dimension.low), int(dimension.high))
    if isinstance(dimension, space.OneMinusLogUniform):
        complement = trial.suggest_float(ONE_MINUS + name, 1 - dimension.high, 1 - dimension.low, log=True)
        return 1.0 - complement
    return trial.suggest_float(
        name, dimension.low, dimension.high, log=isinstance(dimension, space.LogUniform)
    )


def to_optuna(space_: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    from keras_optlab import search_space as space

    out = {}
    for name, dimension in space_.items():
        value = values[name]
        if isinstance(dimension, space.OneMinusLogUniform):
            out[ONE_MINUS + name] = 1.0 - value
        else:
            out[name] = value
    return out


def from_optuna(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if name.startswith(ONE_MINUS):
            out[name[len(ONE_MINUS):]] = 1.0 - value
        else:
            out[name] = value
    return out



# --- storage ----------------------------------------------------------------

def redact(url: str) -> str:
    """The URL with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown as given
        return url


def check_storage_url(url: str) -> str:
    """Checks that SQLAlchemy can parse `url`, knows its dialect and can
    import its driver (the error names the package to install)."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"Argument `storage` must be a database URL. Received: storage={url!r}")
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception as error:  # noqa: BLE001 - ArgumentError, NoSuchModuleError, ImportError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(
            f"Bad storage URL {redact(url)!r}: {reason}. Give a database URL such as "
            "sqlite:///study.sqlite3 or postgresql://user@host/db."
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError:
        driver = getattr(dialect, "driver", None) or parsed.get_driver_name()
        package, extra = DRIVER_PACKAGES.get(driver, (driver, None))
        hint = f"pip install {package}" + (f" (or pip install {extra})" if extra else "")
        raise UsageError(
            f"Cannot use storage {redact(url)!r}: its driver {driver!r} is not installed. "
            f"Install it with: {hint}"
        ) from None
    return url


def open_storage(url: str, heartbeat_interval: int):
    """An Optuna `RDBStorage` with heartbeats (see the module)."""
    import optuna

    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several processes write one file: wait for the lock instead of
        # failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=GRACE_INTERVALS * heartbeat_interval,
                heartbeat_stale_trial_callback=retry,
            )
        except sqlalchemy.exc.DBAPIError as error:
            # Workers starting together on a new database race to create
            # its tables; the loser finds them made on the next attempt.
            # PostgreSQL reports a type or table made meanwhile as
            # duplicate_object (42710) or duplicate_table (42P07).
            made_meanwhile = getattr(error.orig, "sqlstate", None) in ("42710", "42P07")
            if attempt == 4 or not (made_meanwhile or isinstance(
                error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)
            )):
                failure = error
                break
            time.sleep(0.5 + random.random())
        except Exception as error:  # noqa: BLE001 - no driver, not a database
            failure = error
            break
    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise UsageError(f"Cannot open storage {redact(url)!r}: {reason}")


def study_names(storage) -> set[str]:
    return {s.study_name for s in storage.get_all_studies()}


# --- studies ----------------------------------------------------------------

def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [key for key in keys if stored.get(key) != wanted.get(key)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def sampler(trials: int):
    """TPE, with a random start of a quarter of the trials (at least 3) and
    the constant liar, so that workers sharing a study spread out."""
    import optuna

    return optuna.samplers.TPESampler(n_startup_trials=max(3, trials // 4), constant_liar=True)


def pruner(trials: int, epochs: int):
    """The median pruner, after a quarter of the trials and of the epochs."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=max(2, trials // 4), n_warmup_steps=max(1, epochs // 4)
    )


def open_studies(
    storage: Any,
    shown: str,
    study: str,
    candidates: list[Candidate],
    spaces: Mapping[str, Mapping[str, Any]],
    wanted: Mapping[str, Mapping[str, Any]],
    *,
    minimise: bool,
    trials: int,
    epochs: int,
) -> dict[str, Any]:
    """`{candidate name: optuna.Study}`: every existing study is checked
    against `wanted` (its settings) before anything is created; then the
    missing ones are created with their default trial first in the queue
    (none for a candidate run at its defaults only).

    Workers started together race to create a study: the one whose
    `create_study` succeeds enqueues the default trial and then records the
    settings, which tell the others that the study is ready; the others
    wait for them (`_stored_settings`) and check them. A study left without
    settings by a maker that stopped in between is finished by the next
    command.

    Raises:
        UsageError: A study not made by optlab, or made with other settings
            (naming them, as stored and as wanted).
    """
    import optuna

    existing = study_names(storage)
    abandoned = set()
    for candidate in candidates:
        name = f"{study}/{candidate.name}"
        if name not in existing:
            continue
        stored = _stored_settings(storage, shown, name)
        if stored is None:
            abandoned.add(name)
        else:
            _check_settings(stored, wanted[candidate.name], name, shown)
    studies = {}
    for candidate in candidates:
        name = f"{study}/{candidate.name}"
        direction = "minimize" if minimise else "maximize"
        try:
            made = optuna.create_study(
                study_name=name, storage=storage, direction=direction,
                sampler=sampler(trials), pruner=pruner(trials, epochs),
            )
        except optuna.exceptions.DuplicatedStudyError:
            # It existed before, or another worker made it since.
            made = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler(trials), pruner=pruner(trials, epochs)
            )
            stored = None if name in abandoned else _stored_settings(storage, shown, name)
            if stored is not None:
                _check_settings(stored, wanted[candidate.name], name, shown)
                studies[candidate.name] = made
                continue
        space_ = spaces[candidate.name]
        defaults = {k: d.default for k, d in space_.items()}
        # A candidate run at its defaults only (`@default`) has no trial.
        if not candidate.untuned and all(d.contains(defaults[k]) for k, d in space_.items()):
            made.enqueue_trial(to_optuna(space_, defaults), user_attrs={"default": True}, skip_if_exists=True)
        made.set_user_attr(SETTINGS_ATTR, dict(wanted[candidate.name]))
        studies[candidate.name] = made
    return studies


def _stored_settings(storage, shown: str, name: str) -> dict[str, Any] | None:
    """The settings study `name` was made with. A study that has none yet,
    no other attribute and no trial but the queued default is being made
    by another worker, which records its settings last: they are waited for,
    up to `SETTINGS_WAIT_SECONDS`; `None` if they never came (its maker
    stopped before recording them).

    Raises:
        UsageError: A study with trials or attributes but no settings: not
            made by optlab.
    """
    import optuna

    deadline = time.monotonic() + SETTINGS_WAIT_SECONDS
    while True:
        loaded = optuna.load_study(study_name=name, storage=storage)
        # The trials first, then the attributes: the maker records its
        # settings before any trial runs, so trials read as all waiting and
        # attributes read later as empty mean it is still making the study.
        # (Read the other way round, its settings and its first running
        # trial could both land between the two reads.)
        only_waiting = all(
            t.state == optuna.trial.TrialState.WAITING for t in loaded.get_trials(deepcopy=False)
        )
        attributes = loaded.user_attrs
        stored = attributes.get(SETTINGS_ATTR)
        if isinstance(stored, dict):
            return stored
        being_made = not attributes and only_waiting
        if not being_made:
            raise UsageError(
                f"Study {name!r} in {shown} was not made by optlab tune; name another --study."
            )
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _check_settings(stored: Mapping[str, Any], wanted: Mapping[str, Any], name: str, shown: str) -> None:
    keys = _differences(stored, wanted)
    if keys:
        was = ", ".join(f"{k}={_short(stored.get(k))}" for k in keys)
        now = ", ".join(f"{k}={_short(wanted.get(k))}" for k in keys)
        raise UsageError(
            f"Study {name!r} in {shown} was made with {was}; this command has {now}. "
            "Use the study's settings, or name another --study."
        )


def finished(study) -> int:
    """Complete and pruned trials: what counts toward the budget."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


# --- trials and stored runs --------------------------------------------------

def fail_silent_trials(study, storage, running, grace_seconds: float) -> None:
    """Fails running trials that never sent a heartbeat and started more
    than `grace_seconds` ago: a process killed between creating a trial and
    its first heartbeat leaves one, and Optuna's stale-trial check only
    looks at trials that have a heartbeat."""
    import datetime

    import optuna

    engine = getattr(storage, "engine", None)
    if engine is None or not running:
        return
    import sqlalchemy

    try:
        with engine.connect() as connection:
            beating = {row[0] for row in connection.execute(
                sqlalchemy.text("SELECT trial_id FROM trial_heartbeats")
            )}
    except Exception:  # noqa: BLE001 - another schema: leave it to Optuna
        return
    now = datetime.datetime.now()
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial in running:
        started = trial.datetime_start
        if trial._trial_id in beating or started is None:
            continue
        if (now - started).total_seconds() <= grace_seconds:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another process failed it first
            continue
        if callback is not None:
            callback(study, study.get_trials(deepcopy=True)[trial.number])


def run_key(role: str, number: int | None, seed: int) -> str:
    middle = "default" if role == "default" else f"tuned:{number}"
    return f"{RUN_ATTR_PREFIX}{middle}:seed={seed}"


def stored_runs(study) -> dict[tuple[str, int | None, int], RunRecord]:
    out = {}
    for key, value in study.user_attrs.items():
        if not key.startswith(RUN_ATTR_PREFIX):
            continue
        parts = key[len(RUN_ATTR_PREFIX):].split(":")
        seed = int(parts[-1].removeprefix("seed="))
        if parts[0] == "default":
            out[("default", None, seed)] = RunRecord.from_dict(value)
        else:
            out[("tuned", int(parts[1]), seed)] = RunRecord.from_dict(value)
    return out


def is_default_trial(study, number: int) -> bool:
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return bool(trial.user_attrs.get("default"))


def best_setting(study, candidate: Candidate, space_) -> tuple[int | None, dict[str, Any]]:
    """The best finished trial (complete, or pruned by its best epoch:
    Optuna's own `best_trial` sees complete trials only) and its setting."""
    records = [t for t in trial_records(study) if t.state in ("complete", "pruned") and t.values]
    minimise = study.direction.name == "MINIMIZE"
    complete = [t for t in records if t.state == "complete"] or records
    if not complete:
        return None, candidate.defaults()
    values = [t.best(minimise) for t in complete]
    chosen = complete[best_index(values, minimise)]
    if chosen.is_default:
        return chosen.number, candidate.defaults()
    return chosen.number, {**candidate.defaults(), **chosen.params}


def trial_records(study) -> list[TrialRecord]:
    records = []
    for trial in study.get_trials(deepcopy=False):
        seconds = None
        if trial.datetime_start is not None and trial.datetime_complete is not None:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        values = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        records.append(
            TrialRecord(
                number=trial.number,
                state=trial.state.name.lower(),
                params=from_optuna(trial.params),
                values=[float(v) for v in values],
                seconds=seconds,
                diverged=bool(trial.user_attrs.get("diverged", False)),
                is_default=bool(trial.user_attrs.get("default", False)),
            )
        )
    return records
