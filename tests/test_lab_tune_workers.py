"""Stopping and sharing a study: a worker killed with SIGKILL mid-trial
loses only that trial; workers on one SQLite file, or on one PostgreSQL
server that the suite starts itself, share the work.

These tests run `optlab tune` processes on the JAX backend only (it starts
fastest): what they check is the protocol in the storage (trial states,
heartbeats, stored runs, reports), which does not depend on the backend, and
the per-backend runs of tests/test_lab_tune.py already cover training.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import BACKEND
from keras_optlab.lab import cli

WORKER_TIMEOUT = 400
EVALUATION_LINE = re.compile(r"^\[tune\] (\S+) (default|tuned) seed (\d+): ", re.M)


def trial_states(database, study):
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            rows = connection.execute(
                "SELECT t.number, t.state FROM trials t JOIN studies s ON t.study_id = s.study_id "
                "WHERE s.study_name = ? ORDER BY t.number",
                (study,),
            ).fetchall()
    except sqlite3.OperationalError:  # tables not made yet, or locked for a moment
        return {}
    return {number: str(state) for number, state in rows}


def finished(states):
    return sum(state in ("COMPLETE", "PRUNED") for state in states.values())


# `python -m keras_optlab`, as on a machine that has JAX and not TensorFlow
# (what a JAX user installs): with TensorFlow installed, Keras imports it to
# seed and to serialize, about 3 s of each worker's start.
WITHOUT_TENSORFLOW = (
    "import runpy, sys; sys.modules['tensorflow'] = None; "
    "runpy.run_module('keras_optlab', run_name='__main__', alter_sys=True)"
)


def optlab(argv, stdout=subprocess.DEVNULL):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": BACKEND}
    return subprocess.Popen(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, *argv], env=env,
        stdout=stdout, stderr=subprocess.PIPE, text=True,
    )


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


# --- PostgreSQL: who runs which trial ----------------------------------------
#
# To kill a worker in the middle of a trial, the test must know which
# process runs which trial, and Optuna does not store that. Each worker
# connects with its own `application_name`; a trigger on Optuna's `trials`
# table writes it down whenever a trial turns RUNNING. The workers make the
# tables themselves (racing, as on a real first start), so an event trigger
# adds the row trigger in the same transaction that creates `trials`.
RUNNER_BOOKKEEPING = """
CREATE TABLE trial_runner (trial_id integer PRIMARY KEY, worker text NOT NULL);

CREATE FUNCTION note_trial_runner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trial_runner VALUES (NEW.trial_id, current_setting('application_name'))
    ON CONFLICT (trial_id) DO UPDATE SET worker = EXCLUDED.worker;
    RETURN NULL;
END $$;

CREATE FUNCTION watch_for_trials_table() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE object_identity = 'public.trials') THEN
        CREATE TRIGGER note_trial_runner AFTER INSERT OR UPDATE OF state ON public.trials
            FOR EACH ROW WHEN (NEW.state = 'RUNNING') EXECUTE FUNCTION note_trial_runner();
    END IF;
END $$;

CREATE EVENT TRIGGER watch_for_trials_table ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION watch_for_trials_table();
"""

Trial = collections.namedtuple("Trial", "state runner beating failed_trial")


def postgres_trials(server, database, study):
    """Trial number -> `Trial`: state, the worker that ran it, whether it
    has a heartbeat, and the trial it retries (Optuna's `failed_trial`)."""
    import psycopg

    query = """
        SELECT t.number, t.state::text, r.worker, h.trial_id IS NOT NULL, a.value_json
        FROM trials t JOIN studies s ON s.study_id = t.study_id
        LEFT JOIN trial_runner r ON r.trial_id = t.trial_id
        LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id
        LEFT JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'failed_trial'
        WHERE s.study_name = %s ORDER BY t.number
    """
    try:
        with psycopg.connect(server.conninfo(database)) as connection:
            rows = connection.execute(query, (study,)).fetchall()
    except psycopg.errors.UndefinedTable:  # the workers have not made the tables yet
        return {}
    return {
        number: Trial(state, runner, beating, None if retried is None else json.loads(retried))
        for number, state, runner, beating, retried in rows
    }


def study_snapshot(server, database):
    """Every trial row and every study attribute, to tell whether a command
    changed the storage."""
    import psycopg

    with psycopg.connect(server.conninfo(database)) as connection:
        return [
            connection.execute(query).fetchall()
            for query in (
                "SELECT trial_id, number, state::text, datetime_complete FROM trials ORDER BY trial_id",
                "SELECT trial_id, objective, value FROM trial_values ORDER BY trial_id, objective",
                "SELECT study_id, key, value_json FROM study_user_attributes ORDER BY study_id, key",
            )
        ]


def stored_runs(server, database):
    """`{(role, seed)}` of the evaluation runs stored in the study's user
    attributes (`run:default:seed=S`, `run:tuned:N:seed=S`)."""
    import psycopg

    with psycopg.connect(server.conninfo(database)) as connection:
        keys = [key for (key,) in connection.execute(
            "SELECT key FROM study_user_attributes WHERE key LIKE 'run:%'"
        )]
    return {(key.split(":")[1], int(key.rsplit("=", 1)[1])) for key in keys}


def kill_one_and_wait(server, database, study, workers):
    """Kills, with SIGKILL, the worker that runs the first trial to send a
    heartbeat, while that trial runs (a worker's first trial builds and
    compiles the model: seconds), then waits for the others. Returns the
    killed worker's name, its trial, and what the others printed."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    while True:
        for name, worker in workers.items():
            assert worker.poll() is None, f"{name} ended before the kill: {worker.communicate()[1]}"
        trials = postgres_trials(server, database, study)
        assert time.monotonic() < deadline, f"no trial ran: {trials}"
        running = [(number, trial.runner) for number, trial in trials.items()
                   if trial.state == "RUNNING" and trial.beating and trial.runner in workers]
        if running:
            killed_trial, victim = running[0]
            break
        time.sleep(0.05)
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].communicate()
    assert postgres_trials(server, database, study)[killed_trial].state == "RUNNING", (
        "the kill came after the trial ended"
    )
    printed = []
    for name, worker in workers.items():
        if name != victim:
            stdout, stderr = worker.communicate(timeout=WORKER_TIMEOUT)
            assert worker.returncode == 0, f"{name}: {stderr}"
            printed.append(stdout)
    return victim, killed_trial, printed


if BACKEND == "jax":

    def test_a_worker_killed_mid_trial_loses_only_that_trial(tmp_path):
        out = tmp_path / "report"
        database = out / "study.sqlite3"
        argv = ["tune", "--candidates", "sgd", "--trials", "3", "--seeds", "1", "--epochs", "5",
                "--batch-size", "16", "--heartbeat", "1", "--out", str(out), "--quiet"]
        worker = optlab(argv)
        deadline = time.monotonic() + 300
        while True:
            assert worker.poll() is None, "the worker ended before it could be killed: " + worker.stderr.read()
            assert time.monotonic() < deadline
            states = trial_states(database, "optlab/sgd")
            if finished(states) >= 1 and "RUNNING" in states.values():
                break
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_kill = trial_states(database, "optlab/sgd")
        running = [n for n, state in at_kill.items() if state == "RUNNING"]
        done = {n: state for n, state in at_kill.items() if state in ("COMPLETE", "PRUNED")}
        assert len(running) == 1 and 1 <= len(done) < 3
        assert not (out / "report.md").exists()

        status, _, stderr = run_cli(argv)
        assert status == 0, stderr
        after = trial_states(database, "optlab/sgd")
        assert finished(after) == 3
        assert after[running[0]] == "FAIL"
        assert {n: after[n] for n in done} == done
        assert (out / "report.md").exists()

    def test_two_workers_share_one_sqlite_study(tmp_path):
        database = tmp_path / "shared.sqlite3"
        workers = [
            optlab(["tune", "--candidates", "sgd", "--trials", "3", "--seeds", "1", "--epochs", "2",
                    "--batch-size", "256", "--storage", f"sqlite:///{database}",
                    "--out", str(tmp_path / f"report{k}"), "--quiet"])
            for k in range(2)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=WORKER_TIMEOUT)
            assert worker.returncode == 0, stderr
        states = trial_states(database, "optlab/sgd")
        assert 3 <= finished(states) <= 4
        for k in range(2):
            assert (tmp_path / f"report{k}" / "report.md").exists()
            assert not (tmp_path / f"report{k}" / "study.sqlite3").exists()

    def test_three_workers_on_postgresql_survive_one_killed_mid_trial(tmp_path, postgres_server):
        import psycopg

        trials, seeds = 3, 1
        database = postgres_server.create_database("workers")
        with psycopg.connect(postgres_server.conninfo(database), autocommit=True) as connection:
            connection.execute(RUNNER_BOOKKEEPING)
        study = "optlab/sgd"
        budget = ["--candidates", "sgd", "--trials", str(trials), "--seeds", str(seeds), "--epochs", "2",
                  "--batch-size", "256", "--heartbeat", "1"]

        def worker_argv(name):
            return ["tune", *budget, "--storage", postgres_server.url(database, application_name=name),
                    "--out", str(tmp_path / name)]

        workers = {name: optlab(worker_argv(name), stdout=subprocess.PIPE)
                   for name in ("worker0", "worker1", "worker2")}
        try:
            victim, killed_trial, printed = kill_one_and_wait(postgres_server, database, study, workers)
        finally:
            for worker in workers.values():
                if worker.poll() is None:  # a check failed while it ran
                    worker.kill()
                    worker.communicate()
        survivors = [name for name in workers if name != victim]
        assert not (tmp_path / victim / "report.md").exists()

        after = postgres_trials(postgres_server, database, study)
        finished_numbers = {n for n, trial in after.items() if trial.state in ("COMPLETE", "PRUNED")}
        # Each worker starts a trial only while fewer than N are finished, so
        # at most one trial per survivor runs on past N - 1 (the killed trial
        # never finishes): within the N + workers - 1 that the docs promise.
        assert trials <= len(finished_numbers) <= trials + len(survivors) - 1, after
        # The heartbeat failed the killed trial, and its retry callback
        # enqueued a copy of it: not the lab's own check of silent trials.
        assert after[killed_trial].state == "FAIL"
        assert [n for n, trial in after.items() if trial.failed_trial == killed_trial], after

        # A later command on the same storage has nothing to run: it only
        # writes the report.
        before = study_snapshot(postgres_server, database)
        status, stdout, stderr = run_cli(
            ["tune", *budget, "--storage", postgres_server.url(database), "--out", str(tmp_path / "final")]
        )
        assert status == 0, stderr
        assert "[tune]" not in stdout, stdout
        assert study_snapshot(postgres_server, database) == before

        # Each report lists each trial once, the killed one as failed and
        # not counted. The final report lists every trial; a survivor's may
        # lack one that the other survivor started in the milliseconds
        # between its budget check and the trial's start.
        for name in (*survivors, "final"):
            results = json.loads((tmp_path / name / "results.json").read_text())
            (outcome,) = results["candidates"]
            reported = [trial["number"] for trial in outcome["trials"]]
            assert len(reported) == len(set(reported)), name
            states = {trial["number"]: trial["state"] for trial in outcome["trials"]}
            reported_finished = {n for n, state in states.items() if state in ("complete", "pruned")}
            if name == "final":
                assert sorted(reported) == sorted(after) and reported_finished == finished_numbers
            else:
                assert trials <= len(reported_finished) and reported_finished <= finished_numbers, name
            assert states[killed_trial] == "fail"
            counts = results["summary"]["sgd"]["trials"]
            assert counts["complete"] + counts["pruned"] == len(reported_finished)
            assert counts["fail"] >= 1
            row = f"| {counts['complete']}/{counts['pruned']}/{counts['fail']} |"
            assert row in (tmp_path / name / "report.md").read_text(), name
            assert len(outcome["default_runs"]) == len(outcome["tuned_runs"]) == seeds

        # Each worker prints a line for each evaluation run it trains: every
        # stored run was trained by a survivor, and nothing else was.
        trained = collections.Counter(
            (role, int(seed)) for _, role, seed in EVALUATION_LINE.findall("".join(printed))
        )
        assert set(trained) == stored_runs(postgres_server, database), trained
        # Runs are claimed before they are trained (keras_optlab.lab.claims):
        # no worker repeats one another holds or stored.
        repeated = {unit: count for unit, count in trained.items() if count > 1}
        assert not repeated, f"evaluation runs trained by more than one worker: {repeated}"
