import pathlib
import sys

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
