import pathlib
import sys

from conftest import BACKEND

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS))

import update_tables  # noqa: E402


def test_generated_tables_are_up_to_date():
    for key, (path, body) in update_tables.tables().items():
        text = path.read_text()
        assert update_tables.replace_section(text, key, body) == text, (
            f"{path.name} is out of date: run `python docs/update_tables.py`"
        )


def test_optimizer_table_lists_every_name():
    from keras_optlab.optimizers import info, list_optimizers

    text = (DOCS / "optimizers.md").read_text()
    for name in list_optimizers():
        cell = ", ".join(f"`{n}`" for n in (name, *info(name).aliases))
        assert f"| {cell} |" in text


def test_schedule_table_lists_every_name():
    from keras_optlab.schedules import list_schedules

    text = (DOCS / "schedules.md").read_text()
    for name in list_schedules():
        assert f"| `{name}` |" in text
        assert f"(img/schedule_{name}.png)" in text, f"no picture of {name}"


def test_mnist1d_reproduction_table_is_the_stored_results():
    import json

    import reproduce_mnist1d

    stored = json.loads(reproduce_mnist1d.RESULTS.read_text())
    assert set(stored["models"]) == set(reproduce_mnist1d.MODELS)
    text = reproduce_mnist1d.COMPARE_MD.read_text()
    table = reproduce_mnist1d.markdown_table(stored)
    assert reproduce_mnist1d.replace_section(text, table) == text, (
        "compare.md's MNIST-1D table is out of date: run `python docs/reproduce_mnist1d.py --from-json`"
    )
    assert reproduce_mnist1d.FIGURE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mnist1d_reproduction_has_a_paper_accuracy_for_every_model():
    import reproduce_mnist1d

    from keras_optlab.lab.models import MODELS

    assert set(reproduce_mnist1d.PAPER_TEST_ACCURACY) == set(MODELS)


VERDICTS = ("supported", "contradicted", "not distinguishable at this budget")


def test_claims_page_is_the_stored_results_and_each_verdict_follows_its_numbers():
    import json

    import reproduce_claims

    stored = json.loads(reproduce_claims.RESULTS.read_text())
    assert sorted(stored["workloads"]) == sorted(reproduce_claims.WORKLOADS)
    text = reproduce_claims.PAGE.read_text()
    body = text.split(reproduce_claims.BEGIN, 1)[1].split(reproduce_claims.END, 1)[0]
    assert body == reproduce_claims.markdown(stored), (
        "claims.md is out of date: run `python docs/reproduce_claims.py --from-json`"
    )
    sections = [(name, section) for workload in stored["workloads"].values()
                for name, section in workload["sections"].items()]
    assert len(sections) == len(reproduce_claims.WORKLOADS) * len(reproduce_claims.SECTIONS)
    for name, section in sections:
        assert len(section["claims"]) == len(reproduce_claims.SECTIONS[name][1])
        check_verdicts(section)


def check_verdicts(section):
    """Each verdict follows from its numbers: the direction of the
    difference of means and whether the test told them apart."""
    for claim in section["claims"]:
        assert claim["verdict"] in VERDICTS
        higher = claim["measure"] == "test_accuracy"
        difference = claim["mean_a"]["mean"] - claim["mean_b"]["mean"]
        told_apart = claim["p_value"] < 0.05
        if claim["verdict"] == "supported":
            assert told_apart and (difference > 0 if higher else difference < 0), claim
        elif claim["verdict"] == "contradicted":
            assert told_apart and (difference < 0 if higher else difference > 0), claim
        else:
            assert not told_apart or difference == 0, claim
    for row in section["candidates"].values():
        assert 0.0 <= row["tuned_test"]["mean"] <= 1.0


# The miniature of reproduce_claims.py: one tiny study per section, so that
# the page's script cannot rot. The script does not depend on the backend
# the suite runs (it calls the lab's public API); it runs in the PyTorch
# pass, where eight candidates of one epoch cost no compile (8 s there,
# 15 s on JAX).
if BACKEND == "torch":

    def test_claims_script_runs_a_tiny_study_per_section(tmp_path):
        import json

        import reproduce_claims

        assert reproduce_claims.main(["--mini", "--out", str(tmp_path)]) == 0
        stored = json.loads((tmp_path / "claims.json").read_text())
        (workload,) = stored["workloads"].values()
        assert sorted(workload["sections"]) == sorted(reproduce_claims.MINI_SECTIONS)
        page = (tmp_path / "claims.md").read_text()
        assert page.count("\n#### ") == 4
        for section in workload["sections"].values():
            check_verdicts(section)
            for claim in section["claims"]:
                assert f"**{claim['verdict']}**" in page


def _runs(test_accuracies, reached_at):
    """Runs with the given test accuracy, whose validation accuracy first
    reaches 0.9 at epoch `reached_at` (1-based) of 4."""
    from keras_optlab.lab.records import RunRecord

    runs = []
    for seed, (accuracy, epoch) in enumerate(zip(test_accuracies, reached_at)):
        history = {"val_accuracy": [0.5 if e + 1 < epoch else 0.95 for e in range(4)], "val_loss": [1.0] * 4}
        runs.append(RunRecord("x", seed, 0.1, history, [1.0] * 4, "", test={"test_accuracy": accuracy}))
    return runs


def test_a_claim_is_judged_in_its_own_direction():
    import reproduce_claims as rc

    good = _runs([0.90, 0.91, 0.92, 0.93], [1, 1, 2, 1])
    bad = _runs([0.50, 0.52, 0.51, 0.53], [3, 4, 3, 4])
    runs = {"good": good, "bad": bad}
    budget = rc.Budget(trials=1, seeds=4, epochs=4)

    def verdict(a, b, measure):
        return rc._judge(rc.Claim("", a, b, measure), runs, 0.9, budget)["verdict"]

    assert verdict("good", "bad", "test_accuracy") == rc.SUPPORTED
    assert verdict("bad", "good", "test_accuracy") == rc.CONTRADICTED
    # Fewer epochs to the target is better.
    assert verdict("good", "bad", "epochs_to_target") == rc.SUPPORTED
    assert verdict("bad", "good", "epochs_to_target") == rc.CONTRADICTED
    runs["same"] = _runs([0.90, 0.93, 0.91, 0.92], [1, 2, 1, 1])
    assert verdict("good", "same", "test_accuracy") == rc.UNCLEAR
