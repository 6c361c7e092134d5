"""`optlab tune` end to end: the study, the report, resuming, and the numbers.

Budgets are tiny (a few trials of two epochs, large batches): these tests
check the protocol and what is stored and written, not how well anything
trains.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3

import numpy as np
import pytest

from keras_optlab.lab import cli

# One xdist worker runs this file, so its module fixture runs once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_lab_tune")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CANDIDATES = ("sgd", "adam+step")
TRIALS = 2
SEEDS = 2
# The 0.975 quantile of Student's t with 1 degree of freedom, from a table.
T_975_DF1 = 12.7062047


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


def tune_argv(out, *extra, candidates=CANDIDATES, trials=TRIALS):
    return [
        "tune", "--candidates", ",".join(candidates), "--trials", str(trials),
        "--seeds", str(SEEDS), "--epochs", "2", "--batch-size", "256", "--out", str(out), *extra,
    ]


def trial_states(database, study):
    """Trial number -> state, read with sqlite3 from Optuna's tables."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT t.number, t.state FROM trials t JOIN studies s ON t.study_id = s.study_id "
            "WHERE s.study_name = ? ORDER BY t.number",
            (study,),
        ).fetchall()
    return {number: str(state) for number, state in rows}


def finished(states):
    return sum(state in ("COMPLETE", "PRUNED") for state in states.values())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "report"
    status, stdout, stderr = run_cli(tune_argv(out))
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    return out, stdout, results


def test_tune_writes_report_pictures_and_study(first_run):
    out, _, _ = first_run
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "progress.png", "report.md", "results.json", "seeds.png", "sensitivity.png", "study.sqlite3",
    ]
    for picture in ("progress.png", "seeds.png", "sensitivity.png"):
        data = (out / picture).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    text = (out / "report.md").read_text()
    for candidate in CANDIDATES:
        assert f"| `{candidate}` |" in text


def test_each_candidate_has_its_study_with_the_asked_number_of_finished_trials(first_run):
    out, _, results = first_run
    for candidate in CANDIDATES:
        states = trial_states(out / "study.sqlite3", f"optlab/{candidate}")
        assert finished(states) == TRIALS
        outcome = next(c for c in results["candidates"] if c["name"] == candidate)
        assert len(outcome["trials"]) == len(states)


def test_the_first_trial_is_the_default_setting_and_the_rest_stay_in_the_space(first_run):
    _, _, results = first_run
    for outcome in results["candidates"]:
        first = outcome["trials"][0]
        assert first["is_default"] and first["params"] == pytest.approx(outcome["default_params"])
        for trial in outcome["trials"]:
            for name, value in trial["params"].items():
                space = outcome["space"][name]
                assert space["low"] - 1e-12 <= value <= space["high"] + 1e-12, (name, value)
    step = next(c for c in results["candidates"] if c["name"] == "adam+step")
    assert {"learning_rate", "beta_1", "beta_2", "step.factor", "step.drop_every"} == set(step["space"])


def test_evaluation_seeds_are_new_and_shared_across_candidates(first_run):
    _, _, results = first_run
    fingerprints = {}
    for outcome in results["candidates"]:
        for run in outcome["default_runs"] + outcome["tuned_runs"]:
            assert run["seed"] in (1, 2)  # the tuning seed 0 is never reused
            fingerprints.setdefault(run["seed"], set()).add(run["initial_weights_sha256"])
        assert sorted(r["seed"] for r in outcome["tuned_runs"]) == [1, 2]
    assert all(len(prints) == 1 for prints in fingerprints.values())
    assert fingerprints[1] != fingerprints[2]


def test_confidence_intervals_and_gain_match_an_independent_computation(first_run):
    _, _, results = first_run
    for outcome in results["candidates"]:
        summary = results["summary"][outcome["name"]]
        tuned = {r["seed"]: max(r["history"]["val_accuracy"]) for r in outcome["tuned_runs"]}
        default = {r["seed"]: max(r["history"]["val_accuracy"]) for r in outcome["default_runs"]}
        values = np.array([tuned[s] for s in sorted(tuned)])
        half = T_975_DF1 * values.std(ddof=1) / np.sqrt(2)
        assert summary["tuned_best"]["mean"] == pytest.approx(values.mean())
        assert summary["tuned_best"]["ci_half_width"] == pytest.approx(half, rel=1e-7)
        gains = np.array([tuned[s] - default[s] for s in sorted(tuned)])
        assert summary["gain"]["mean"] == pytest.approx(gains.mean())
        assert summary["gain"]["ci_half_width"] == pytest.approx(
            T_975_DF1 * gains.std(ddof=1) / np.sqrt(2), rel=1e-7
        )


def test_pairwise_table_is_welch_on_the_tuned_best_values(first_run):
    from scipy import stats as scipy_stats

    _, _, results = first_run
    a, b = results["candidates"]
    test = results["pairwise"][f"{a['name']}|{b['name']}"]
    x = [max(r["history"]["val_accuracy"]) for r in a["tuned_runs"]]
    y = [max(r["history"]["val_accuracy"]) for r in b["tuned_runs"]]
    if np.std(x) + np.std(y) > 0:
        expected = scipy_stats.ttest_ind(x, y, equal_var=False).pvalue
        assert test["p_value"] == pytest.approx(expected, rel=1e-6)
    assert test["distinguishable"] == (test["p_value"] < 0.05)


def test_progress_lines_count_what_is_left_and_estimate_the_time(first_run):
    _, stdout, _ = first_run
    lines = [line for line in stdout.splitlines() if line.startswith("[tune]")]
    assert len(lines) >= len(CANDIDATES) * TRIALS
    first = re.search(r"(\d+) trials and (\d+) seed runs left, about .+ to go", lines[0])
    assert first and int(first.group(1)) == len(CANDIDATES) * TRIALS - 1
    assert lines[-1].endswith("0 trials and 0 seed runs left, nothing left")


def test_running_again_continues_the_study(first_run):
    out, _, before = first_run
    status, stdout, stderr = run_cli(tune_argv(out, trials=TRIALS + 1))
    assert status == 0, stderr
    after = json.loads((out / "results.json").read_text())
    for candidate in CANDIDATES:
        assert finished(trial_states(out / "study.sqlite3", f"optlab/{candidate}")) == TRIALS + 1
        old = next(c for c in before["candidates"] if c["name"] == candidate)["trials"]
        new = next(c for c in after["candidates"] if c["name"] == candidate)["trials"]
        # The first trials are kept as they were, not run again.
        assert [t["values"] for t in new[:len(old)]] == [t["values"] for t in old]
    # Default runs are stored in the study: a second command does not redo them.
    assert "default seed" not in stdout


def test_the_report_gives_each_candidates_search_cost(first_run):
    # The tuning cost beside the quality: the finished trials, whichever
    # process ran them, and their summed wall time.
    # Read from the folder: a test above may have continued the study.
    out = first_run[0]
    results = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text()
    for outcome in results["candidates"]:
        cost = results["summary"][outcome["name"]]["tuning_cost"]
        seconds = [t["seconds"] for t in outcome["trials"] if t["state"] in ("complete", "pruned", "fail")]
        assert cost["trials"] == len(seconds) >= TRIALS
        assert cost["trial_seconds"] == pytest.approx(sum(seconds)) and cost["trial_seconds"] > 0
        row = next(line for line in text.splitlines() if line.startswith(f"| `{outcome['name']}` |"))
        assert row.endswith(f"| {cost['trials']} trials, {cost['trial_seconds']:.0f} s |")


def test_a_candidate_marked_default_runs_its_defaults_with_no_search(tmp_path):
    import warnings

    out = tmp_path / "report"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, stdout, stderr = run_cli(tune_argv(out, candidates=("sgd@default",)))
    assert status == 0, stderr
    # The pictures have nothing to plot for trials, and say so.
    assert not [w for w in caught if "legend" in str(w.message)]
    assert trial_states(out / "study.sqlite3", "optlab/sgd@default") == {}
    results = json.loads((out / "results.json").read_text())
    (outcome,) = results["candidates"]
    assert outcome["name"] == "sgd@default" and outcome["trials"] == []
    assert outcome["best_params"] == outcome["default_params"] and outcome["best_trial"] is None
    # Its setting is its defaults: the runs that evaluate it are the default runs.
    assert outcome["tuned_runs"] == outcome["default_runs"]
    assert sorted(r["seed"] for r in outcome["default_runs"]) == [1, 2]
    assert results["summary"]["sgd@default"]["tuning_cost"] == {"trials": 0, "trial_seconds": 0.0}
    assert "| none (defaults) |" in (out / "report.md").read_text()
    assert " trial " not in stdout
