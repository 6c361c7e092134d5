"""Step time of `optimizer.apply` on ~10M parameters, against Keras' own.

Run: `make bench` (all benches, TensorFlow and JAX, one table), or one
backend alone: `KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_optimizers.py`
(`BENCH_CASES="RAdam,keras Adam"` in the environment times only those cases).

One process per backend (TensorFlow: `tf.function(jit_compile=True)` of
`apply`; JAX: `jax.jit` of `stateless_apply`, with the state donated as the
trainer does). 20 variables of 500,000 float32 each; the gradients are fixed
tensors, so only the optimizer's work is timed. After warm-up, the cases are
timed round-robin, one step each per round, so that a noisy neighbour slows
all cases alike; the table reports medians and the ratio of medians. Writes
bench/results.json through `make bench`.

Goals: `SwitchingOptimizer(Adam, SGD(momentum))` at most 1.10 times Keras
`Adam` in both phases, SWATS at most 1.15 in both, other optimizers at most
1.15 against the Keras method they extend, `Lookahead(Adam)` at most 1.35
(one more array per step). Rows without a goal are there to
be read: the switch after the switch against Keras `SGD(momentum)` (which
keeps one slot where the switch keeps two), and the branch that pairs
outside the fused update's table still take (`fused=False` here).

What was measured while writing the fused update (minimal pure-JAX and
Keras programs on this 2-core CPU; see docs/benchmarks.md):

- Behind a conditional, XLA:CPU copies the state that passes through it when
  the state is donated: an Adam update of 10M parameters took 8.6 ms, and
  40.6 ms inside `lax.cond`. The fused update has no conditional around the
  state; its three loop fusions per variable are those of Keras' Adam.
- A select on a scalar, written back to the array it keeps, costs nothing
  on the steps where it keeps it: Lookahead's synchronisation, SWA's
  snapshot, the second moment after a switch to SGD, and the branch for
  pairs outside the table (both optimizers traced, selects keep the active
  one's results) all cost what the step without them costs. Later reads
  must go through the selected value, or XLA copies the donated input
  (reading the computed v as well took the fused switch to 2.1x Adam).
- XLA:CPU does not fuse a reduction into an element-wise loop (no
  multi-output fusion), so each sum over all elements is a pass of its own
  over the arrays; a value used by both keeps a whole temporary. SWATS'
  two projections therefore cost about one more Adam step while it runs
  Adam (1.7x to 2.3x measured), whatever their form (shared step, `dot`,
  recomputed separately, chunked loops: all measured, none better). In the
  SGD phase they are skipped (a conditional that only reads).
- AMSBound reads and writes one more slot than Adam: compare it with Keras'
  `Adam(amsgrad=True)`.
- NovoGrad does the array work of SGD with momentum (one full-size slot)
  plus one reduction over the gradient for its scalar second moment: its
  goal is against Keras' `SGD(momentum=0.9)`; the row against `Adam`, the
  method it stands in for, is there to be read.
- COCOB keeps five full-size slots where Adam keeps two, and reads and
  writes 25 arrays per variable per step where Adam moves 10. Its
  divisions cost nothing measurable (the same loops with the bet's
  divisions replaced by a product time alike). What did cost was a copy:
  XLA copies a donated slot at every step when a loop other than the one
  that writes it reads its old value. Written with `maximum(r, 0)`, the new
  reward was recomputed inside the bet's loop, so the reward and the bet
  were both copied; as a select the reward is computed once and only the
  bet is copied (the weight needs the old and the new bet): 4.25x to 3.38x
  Keras Adam on JAX, 3.45x to 3.34x on TensorFlow, measured interleaved.
  The bet's copy went when the weight's loop computed the new bet itself
  (`_numerics.unmerged`, so that XLA does not merge the two) and the bet's
  slot was written after that loop: 24 arrays with the copy, 25 without;
  JAX 3.19x to 2.55x, TensorFlow 2.40x to 2.55x (medians of 3 pairs).
- SOAP on vectors (its Adam path) first kept the variable, m and v
  unchanged on its first step with `where(first, old, new)` on each array:
  3.3x Keras Adam on JAX, the old values being copied at every step. With
  scalar coefficients that make the first step's update a no-op (as
  ADOPT's), 0.98x to 1.03x on JAX and 0.97x on TensorFlow. The rotation of
  matrices is not timed here (the variables are vectors).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

VARIABLES = 20
SIZE = 500_000
# (case, reference it is compared with, goal or None)
PAIRS = [
    ("switching, before the switch", "keras Adam", 1.10),
    ("switching, after the switch", "keras Adam", 1.10),
    ("switching, after the switch", "keras SGD(momentum=0.9)", None),
    ("SWATS (Adam phase)", "keras Adam", 1.15),
    ("SWATS (SGD phase)", "keras Adam", 1.15),
    ("SWATS (SGD phase)", "keras SGD(momentum=0.9)", None),
    ("switching, branch, before the switch", "keras Adam", None),
    ("switching, branch, after the switch", "keras SGD(momentum=0.9)", None),
    ("AdaBound", "keras Adam", 1.15),
    ("AMSBound", "keras Adam", None),
    ("AMSBound", "keras Adam(amsgrad=True)", 1.15),
    ("RAdam", "keras Adam", 1.15),
    ("ProximalAdagrad", "keras Adagrad", 1.15),
    ("ProximalAdagrad (L1 and L2)", "keras Adagrad", 1.15),
    ("ConditionalGradient", "keras SGD", 1.15),
    ("LazyAdam", "keras Adam", 1.15),
    ("SWA(SGD(momentum=0.9))", "keras SGD(momentum=0.9)", 1.15),
    ("SWA(Adam)", "keras Adam", 1.15),
    ("SWA(SGD(momentum=0.9)) snapshot every step", "keras SGD(momentum=0.9)", None),
    ("SWA(Adam) snapshot every step", "keras Adam", None),
    ("Yogi", "keras Adam", 1.15),
    ("AdaBelief", "keras Adam", 1.15),
    ("AdaBelief(rectify=True)", "keras Adam", 1.15),
    ("NovoGrad", "keras SGD(momentum=0.9)", 1.15),
    ("NovoGrad", "keras Adam", None),
    ("COCOB", "keras Adam", 1.15),
    ("Lookahead(Adam)", "keras Adam", 1.35),
    ("Ranger", "keras Adam", None),
    ("SOAP (1-D: Adam path)", "keras Adam", 1.15),
    # The learning-rate-free and schedule-free generation: no goal in the
    # table; each is read against its memory traffic (bench_copies: the
    # time ratio over the ratio of arrays moved, goal 1.15).
    ("Prodigy", "keras Adam", None),
    ("DAdaptAdam", "keras Adam", None),
    ("ScheduleFreeSGD", "keras SGD(momentum=0.9)", None),
    ("ScheduleFreeAdamW", "keras Adam", None),
    ("ADOPT", "keras Adam", None),
    ("MARS (optimize_1d: MARS path)", "keras Adam", None),
]


def make_optimizers():
    import keras

    from keras_optlab import optimizers

    def switching(phase, fused=None):
        optimizer = optimizers.SwitchingOptimizer(
            keras.optimizers.Adam(1e-3), keras.optimizers.SGD(1e-2, momentum=0.9),
            fused=fused,
        )
        return optimizer, phase

    def swats(phase):
        # A tolerance of 0 never switches; the phase is set by hand.
        return optimizers.SWATS(1e-3, switch_tolerance=0.0), phase

    return {
        "keras Adam": (keras.optimizers.Adam(1e-3), None),
        "keras SGD(momentum=0.9)": (keras.optimizers.SGD(1e-2, momentum=0.9), None),
        "keras Adam(amsgrad=True)": (keras.optimizers.Adam(1e-3, amsgrad=True), None),
        "switching, before the switch": switching(0),
        "switching, after the switch": switching(1),
        "switching, branch, before the switch": switching(0, fused=False),
        "switching, branch, after the switch": switching(1, fused=False),
        "SWATS (Adam phase)": swats(0),
        "SWATS (SGD phase)": swats(1),
        "AdaBound": (optimizers.AdaBound(1e-3), None),
        "AMSBound": (optimizers.AdaBound(1e-3, amsbound=True), None),
        "RAdam": (optimizers.RAdam(1e-3), None),
        "keras Adagrad": (keras.optimizers.Adagrad(1e-3), None),
        "keras SGD": (keras.optimizers.SGD(1e-2), None),
        "ProximalAdagrad": (optimizers.ProximalAdagrad(1e-3), None),
        "ProximalAdagrad (L1 and L2)": (
            optimizers.ProximalAdagrad(
                1e-3, l1_regularization_strength=1e-4, l2_regularization_strength=1e-4
            ),
            None,
        ),
        "ConditionalGradient": (optimizers.ConditionalGradient(1e-2, lambda_=30.0), None),
        "LazyAdam": (optimizers.LazyAdam(1e-3), None),
        # TensorFlow Addons' default period, 10: one step in ten takes a
        # snapshot, so the median is a step between snapshots.
        "SWA(SGD(momentum=0.9))": (
            optimizers.SWA(keras.optimizers.SGD(1e-2, momentum=0.9), average_period=10), None
        ),
        "SWA(Adam)": (optimizers.SWA(keras.optimizers.Adam(1e-3), average_period=10), None),
        # The worst case, a snapshot at every step.
        "SWA(SGD(momentum=0.9)) snapshot every step": (
            optimizers.SWA(keras.optimizers.SGD(1e-2, momentum=0.9), average_period=1), None
        ),
        "SWA(Adam) snapshot every step": (
            optimizers.SWA(keras.optimizers.Adam(1e-3), average_period=1), None
        ),
        "Yogi": (optimizers.Yogi(1e-3), None),
        "AdaBelief": (optimizers.AdaBelief(1e-3), None),
        "AdaBelief(rectify=True)": (optimizers.AdaBelief(1e-3, rectify=True), None),
        "NovoGrad": (optimizers.NovoGrad(1e-3), None),
        "COCOB": (optimizers.COCOB(), None),
        "Lookahead(Adam)": (optimizers.Lookahead(keras.optimizers.Adam(1e-3)), None),
        "Ranger": (optimizers.Lookahead(optimizers.RAdam(1e-3)), None),
        # The variables here are vectors, which SOAP does not rotate: this
        # times its Adam path only. The rotation's cost (mode products,
        # and an eigendecomposition or QR on some steps) depends on the
        # shapes of a model's matrices and is not timed here.
        "SOAP (1-D: Adam path)": (optimizers.SOAP(1e-3), None),
        "Prodigy": (optimizers.Prodigy(), None),
        "DAdaptAdam": (optimizers.DAdaptAdam(), None),
        "ScheduleFreeSGD": (optimizers.ScheduleFreeSGD(), None),
        "ScheduleFreeAdamW": (optimizers.ScheduleFreeAdamW(), None),
        "ADOPT": (optimizers.ADOPT(), None),
        # Vectors take MARS' AdamW path unless optimize_1d.
        "MARS (optimize_1d: MARS path)": (optimizers.MARS(optimize_1d=True), None),
    }


def _case_names(chosen: str, known) -> list[str]:
    """The case names in a comma-separated list; a name that itself holds
    commas ("switching, before the switch") is taken whole."""
    names, pending = [], []
    for piece in chosen.split(","):
        pending.append(piece)
        name = ",".join(pending).strip()
        if name in known or not any(k.startswith(name + ",") for k in known):
            names.append(name)
            pending = []
    if pending:
        names.append(",".join(pending).strip())
    return names


def jax_update(optimizer):
    """`update(optimizer_values, trainable_values, gradients)`, returning the
    new optimizer values and the new trainable values: the optimizer's
    `stateless_apply` in the order that `jax.jit(update, donate_argnums=(0, 1))`
    donates, as the trainer donates its state."""

    def update(optimizer_values, trainable_values, gradients):
        new_trainable, new_optimizer = optimizer.stateless_apply(
            optimizer_values, gradients, trainable_values
        )
        return new_optimizer, new_trainable

    return update


def run_backend(repetitions: int, warmup: int) -> dict[str, list[float]]:
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=(SIZE,)).astype("float32") for _ in range(VARIABLES)]
    gradient_values = [rng.normal(size=(SIZE,)).astype("float32") * 1e-2 for _ in range(VARIABLES)]
    cases = make_optimizers()
    chosen = os.environ.get("BENCH_CASES")
    if chosen:
        names = _case_names(chosen, cases)
        unknown = [name for name in names if name not in cases]
        if unknown:
            raise SystemExit(f"Unknown BENCH_CASES {unknown}; known: {list(cases)}")
        cases = {name: cases[name] for name in names}
    steps = {}
    for name, (optimizer, phase) in cases.items():
        variables = [keras.Variable(value) for value in initial]
        optimizer.build(variables)
        if phase is not None:
            optimizer.phase.assign(phase)
        if backend == "tensorflow":
            import tensorflow as tf

            def compiled_step(optimizer, variables):
                # A closure: tf.function would turn default arguments into
                # inputs and the variables into tensors.
                grads = [tf.constant(g) for g in gradient_values]

                @tf.function(jit_compile=True)
                def step():
                    optimizer.apply(grads, variables)
                    return optimizer.iterations

                return lambda: step().numpy()

            run = compiled_step(optimizer, variables)

        elif backend == "jax":
            import jax

            grads = [jax.numpy.asarray(g) for g in gradient_values]
            state = {
                "optimizer": [v.value for v in optimizer.variables],
                "trainable": [v.value for v in variables],
            }

            def apply(
                optimizer_values, trainable_values, update=jax_update(optimizer), grads=grads
            ):
                return update(optimizer_values, trainable_values, grads)

            jitted = jax.jit(apply, donate_argnums=(0, 1))

            def run(jitted=jitted, state=state):
                state["optimizer"], state["trainable"] = jitted(
                    state["optimizer"], state["trainable"]
                )
                jax.block_until_ready(state["trainable"])

        else:
            raise SystemExit(f"Backend {backend!r} is not benchmarked.")
        steps[name] = run

    for run in steps.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in steps}
    for _ in range(repetitions):
        for name, run in steps.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    """Times the backend of KERAS_BACKEND and prints medians; `make bench`
    (bench/run.py) runs every bench on TensorFlow and JAX in one table."""
    for case, values in run_backend(repetitions=25, warmup=3).items():
        print(f"{case:32} {1e3 * statistics.median(values):8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
