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
            if attempt == 4 or not isinstance(
                error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError)
            ):
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
    missing ones are created with their default trial first in the queue.

    Raises:
        UsageError: A study not made by optlab, or made with other settings
            (naming them, as stored and as wanted).
    """
    import optuna

    existing = study_names(storage)
    for candidate in candidates:
        name = f"{study}/{candidate.name}"
        if name not in existing:
            continue
        loaded = optuna.load_study(study_name=name, storage=storage)
        stored = loaded.user_attrs.get(SETTINGS_ATTR)
        if not isinstance(stored, dict):
            raise UsageError(
                f"Study {name!r} in {shown} was not made by optlab tune; name another --study."
            )
        keys = _differences(stored, wanted[candidate.name])
        if keys:
            was = ", ".join(f"{k}={_short(stored.get(k))}" for k in keys)
            now = ", ".join(f"{k}={_short(wanted[candidate.name].get(k))}" for k in keys)
            raise UsageError(
                f"Study {name!r} in {shown} was made with {was}; this command has {now}. "
                "Use the study's settings, or name another --study."
            )
    studies = {}
    for candidate in candidates:
        created = optuna.create_study(
            study_name=f"{study}/{candidate.name}", storage=storage,
            direction="minimize" if minimise else "maximize", load_if_exists=True,
            sampler=sampler(trials), pruner=pruner(trials, epochs),
        )
        if SETTINGS_ATTR not in created.user_attrs:
            created.set_user_attr(SETTINGS_ATTR, dict(wanted[candidate.name]))
            space_ = spaces[candidate.name]
            defaults = {k: d.default for k, d in space_.items()}
            if all(d.contains(defaults[k]) for k, d in space_.items()):
                created.enqueue_trial(
                    to_optuna(space_, defaults), user_attrs={"default": True}, skip_if_exists=True
                )
        studies[candidate.name] = created
    return studies


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
