"""Step time of LazyAdam against Keras' Adam on an embedding table's sparse
gradient (TensorFlow only: the other backends have no sparse gradients).

Run: `KERAS_BACKEND=tensorflow PYTHONPATH=. .venv/bin/python bench/bench_lazy_adam_sparse.py`

One table of ROWS x WIDTH float32 (12.8M parameters); each step's gradient is
a fixed `tf.IndexedSlices` on LOOKUPS row indices drawn with repetition, as
`keras.layers.Embedding` produces. Both optimizers run `apply` inside
`tf.function(jit_compile=True)`. Keras' Adam densifies the slices and updates
every row; LazyAdam updates the looked-up rows only. After warm-up the two are
timed round-robin, one step each per round; prints medians and their ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

ROWS = 200_000
WIDTH = 64
LOOKUPS = 4096


def run(repetitions: int = 25, warmup: int = 3) -> dict[str, list[float]]:
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_optlab import optimizers

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("Sparse gradients exist on the TensorFlow backend only.")
    rng = np.random.default_rng(0)
    table = rng.normal(size=(ROWS, WIDTH)).astype("float32")
    gradient = tf.IndexedSlices(
        tf.constant(rng.normal(size=(LOOKUPS, WIDTH)).astype("float32") * 1e-2),
        tf.constant(rng.integers(0, ROWS, size=LOOKUPS).astype("int32")),
        tf.constant([ROWS, WIDTH], dtype="int32"),
    )
    cases = {
        "keras Adam": keras.optimizers.Adam(1e-3),
        "LazyAdam": optimizers.LazyAdam(1e-3),
    }
    steps = {}
    for name, optimizer in cases.items():
        variables = [keras.Variable(table)]
        optimizer.build(variables)

        def compiled_step(optimizer=optimizer, variables=variables):
            @tf.function(jit_compile=True)
            def step():
                optimizer.apply([gradient], variables)
                return optimizer.iterations

            return lambda: step().numpy()

        steps[name] = compiled_step()
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repetitions):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    times = run()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:12} {1e3 * median:8.3f} ms")
    print(f"LazyAdam / keras Adam: {medians['LazyAdam'] / medians['keras Adam']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
