"""Runs per minute of the lab's trial engine: a fresh build and compile for
every run, against one compiled model reused across runs.

Run: `make bench` (every bench, one table), or one backend alone:
`KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_engine.py`

The workload is `optlab tune`'s default: digits, the lab's MLP, batch 32,
8 epochs with validation, the lab's `steps_per_execution`. In one process,
`runs` Adam runs with a new learning rate and β's each are timed twice,
interleaved: on a new `Engine` each (what the lab did before it reused
compiled models), and on one shared `Engine` (the first shared run, which
compiles, left out). Per-run overhead is a reused run's wall time minus
the time of its own epochs, as a share of its wall time: what the engine
adds to training (goal: at most 20 %).
"""

from __future__ import annotations

import statistics
import sys
import time

EPOCHS = 8


def settings(index: int) -> dict[str, float]:
    return {
        "learning_rate": 1e-3 * (1.3 ** (index % 7)),
        "beta_1": 0.85 + 0.01 * (index % 5),
        "beta_2": 0.99 + 0.001 * (index % 9),
    }


def run_backend(runs: int = 6) -> dict[str, float]:
    from keras_optlab.lab import candidates, workload
    from keras_optlab.lab.engine import Engine, steps_per_execution

    work = workload.make_workload("mlp", "digits", seed=0)
    adam = candidates.parse_candidate("adam")

    def engine() -> Engine:
        return Engine(work, epochs=EPOCHS, batch_size=32, steps_per_execution=steps_per_execution(None))

    shared = engine()
    shared.run(adam, settings(0), 1)  # compiles
    fresh, reused, overhead = [], [], []
    for index in range(1, runs + 1):
        began = time.perf_counter()
        engine().run(adam, settings(index), 1 + index % 3)
        fresh.append(time.perf_counter() - began)
        began = time.perf_counter()
        record = shared.run(adam, settings(index), 1 + index % 3)
        wall = time.perf_counter() - began
        reused.append(wall)
        overhead.append((wall - sum(record.epoch_seconds)) / wall)
    return {
        "fresh_s": statistics.median(fresh),
        "reused_s": statistics.median(reused),
        "overhead": statistics.median(overhead),
        "compiled": shared.counts()["adam"]["compiled"],
        "retraces": shared.counts()["adam"]["retraces"],
    }


def describe(result: dict[str, float]) -> str:
    return (
        f"fresh {60 / result['fresh_s']:6.1f} runs/min, reused {60 / result['reused_s']:6.1f} runs/min "
        f"({result['fresh_s'] / result['reused_s']:.1f}x), per-run overhead "
        f"{100 * result['overhead']:.0f} %, compiled {result['compiled']}, retraces {result['retraces']}"
    )


def main() -> int:
    print(describe(run_backend()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
