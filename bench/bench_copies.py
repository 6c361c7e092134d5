"""Full-size copies in each benchmarked optimizer's compiled update.

Run: `KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_copies.py`
(or through `make bench`, which prints the counts beside the timings).

XLA copies a donated slot at every step when a loop other than the one that
writes the slot's new value reads its old value, and XLA fuses cheap
producers into every consumer, so one innocent expression can make a later
loop read an old slot. Such a copy is as expensive as another pass over the
slot, and it is invisible in the Python code. This bench compiles the same
update `bench_optimizers` times (two variables of its size, gradients passed
in as arguments, the state donated on JAX as the trainer does; TensorFlow's
`jit_compile=True` function updates its variables in place) and counts, in
the optimised HLO, the copies of arrays of that size. Nothing runs; the
counts do not depend on the machine's load.
"""

from __future__ import annotations

import re
import sys

from bench_optimizers import SIZE, jax_update, make_optimizers

VARIABLES = 2


def count_full_copies(hlo_text: str, size: int) -> int:
    """Copies of rank-1 float32 arrays of `size` elements in the entry
    computation of an optimised HLO module's text."""
    entry = hlo_text.split("\nENTRY ", 1)[-1]
    return len(re.findall(rf"= f32\[{size}\]\{{0\}} copy\(", entry))


def _hlo_text(optimizer, variables, gradients) -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jitted = jax.jit(jax_update(optimizer), donate_argnums=(0, 1))
        lowered = jitted.lower(
            [v.value for v in optimizer.variables], [v.value for v in variables], gradients
        )
        return lowered.compile().as_text()
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(gradients):
        optimizer.apply(gradients, variables)
        return optimizer.iterations

    return step.experimental_get_compiler_ir(gradients)(stage="optimized_hlo")


def run_backend() -> dict[str, float]:
    """Full-size copies per variable, by case."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    counts = {}
    for name, (optimizer, phase) in make_optimizers().items():
        variables = [
            keras.Variable(rng.normal(size=(SIZE,)).astype("float32")) for _ in range(VARIABLES)
        ]
        optimizer.build(variables)
        if phase is not None:
            optimizer.phase.assign(phase)
        gradients = [
            keras.ops.convert_to_tensor(rng.normal(size=(SIZE,)).astype("float32"))
            for _ in range(VARIABLES)
        ]
        text = _hlo_text(optimizer, variables, gradients)
        counts[name] = count_full_copies(text, SIZE) / VARIABLES
    return counts


def main() -> int:
    for name, copies in run_backend().items():
        print(f"{name:45} {copies:4.1f} full-size copies per variable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
