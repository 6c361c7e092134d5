"""Seconds per epoch of `adam_then_sgd` against `adam` in `optlab compare`.

Run: `make bench` (every bench, one table), or one backend alone:
`KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_compare.py`

The default comparison (digits, the lab's MLP, batch 32, 20 epochs, the
lab's `steps_per_execution`) is run `rounds` (7) times with just the two
names, in alternating order, through `keras_optlab.lab.compare`: the
figure is what a user of `optlab compare` sees. Each run's seconds per
epoch is compare's own (the median epoch without the first, which
compiles); the table gives the median over rounds and the ratio of medians.
`adam_then_sgd` switches at compare's default epoch, so both phases are
timed. Goal: at most 1.10.
"""

from __future__ import annotations

import statistics
import sys

REFERENCE = "adam"
CASE = "adam_then_sgd"
PAIRS = [(CASE, REFERENCE, 1.10)]


def run_backend(rounds: int = 7) -> dict[str, list[float]]:
    from keras_optlab import lab

    times: dict[str, list[float]] = {REFERENCE: [], CASE: []}
    for index in range(rounds):
        names = [REFERENCE, CASE] if index % 2 == 0 else [CASE, REFERENCE]
        results = lab.compare(optimizers=names, verbose=0)
        for name in names:
            (run,) = results.runs_of(name)
            times[name].append(run.summary()["seconds_per_epoch"])
    return times


def main() -> int:
    times = run_backend()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:16} {1e3 * value:8.2f} ms per epoch")
    print(f"ratio {medians[CASE] / medians[REFERENCE]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
