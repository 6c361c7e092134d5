"""Stopping and sharing a study: a worker killed with SIGKILL mid-trial
loses only that trial, and two workers on one SQLite storage end with
between N and N + 1 finished trials."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time

from keras_optlab.lab import cli


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


def optlab(argv):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "keras_optlab", *argv], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


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

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        status = cli.main(argv)
    assert status == 0, err.getvalue()
    after = trial_states(database, "optlab/sgd")
    assert finished(after) == 3
    assert after[running[0]] == "FAIL"
    assert {n: after[n] for n in done} == done
    assert (out / "report.md").exists()


def test_two_workers_share_one_study(tmp_path):
    database = tmp_path / "shared.sqlite3"
    workers = [
        optlab(["tune", "--candidates", "sgd", "--trials", "3", "--seeds", "1", "--epochs", "2",
                "--batch-size", "256", "--storage", f"sqlite:///{database}",
                "--out", str(tmp_path / f"report{k}"), "--quiet"])
        for k in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=400)
        assert worker.returncode == 0, stderr
    states = trial_states(database, "optlab/sgd")
    assert 3 <= finished(states) <= 4
    for k in range(2):
        assert (tmp_path / f"report{k}" / "report.md").exists()
        assert not (tmp_path / f"report{k}" / "study.sqlite3").exists()
