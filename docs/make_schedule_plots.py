"""Draws one picture per registered schedule into docs/img/.

Run `PYTHONPATH=. python docs/make_schedule_plots.py` after adding a schedule
to the registry; each picture uses the registry entry's example arguments.
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_optlab import schedules  # noqa: E402

IMG = pathlib.Path(__file__).resolve().parent / "img"
STEPS = 1000


def main() -> int:
    IMG.mkdir(exist_ok=True)
    for name in schedules.list_schedules():
        entry = schedules.info(name)
        schedule = schedules.get(name, **entry.example())
        figure = schedules.plot(schedule, STEPS, title=f"{name}: {type(schedule).__name__}")
        path = IMG / f"schedule_{name}.png"
        figure.savefig(path, dpi=80)
        print(f"wrote {path.relative_to(IMG.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
