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
    from keras_optlab.optimizers import list_optimizers

    text = (DOCS / "optimizers.md").read_text()
    for name in list_optimizers():
        assert f"| `{name}` |" in text


def test_schedule_table_lists_every_name():
    from keras_optlab.schedules import list_schedules

    text = (DOCS / "schedules.md").read_text()
    for name in list_schedules():
        assert f"| `{name}` |" in text
        assert f"(img/schedule_{name}.png)" in text, f"no picture of {name}"
