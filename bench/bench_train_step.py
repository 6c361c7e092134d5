"""Full train step of a small MLP: does steering or a warmup cost anything?

Run: `make bench` (all benches, TensorFlow and JAX, one table), or one
backend alone: `KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_train_step.py`

A 784-256-256-10 MLP (relu, softmax, sparse categorical cross-entropy),
batch 128, compiled with `jit_compile=True`, trained with
`model.train_on_batch` on one fixed batch. Four cases, one model each, same
initial weights:

- `keras Adam(ExponentialDecay)`: the reference;
- `Steered(keras Adam(ExponentialDecay))`: the same, plus the `lr_scale`
  that keras_optlab's ReduceLROnPlateau writes (one more scalar variable and
  one multiplication per step);
- `keras Adam(Warmup(ExponentialDecay, 100))`: the schedule behind a linear
  warmup (the schedule is evaluated twice and one piece is selected with
  `ops.where`);
- `A/A control`: a second, identical reference model. Its ratio to the
  reference is the noise of the measurement: a ratio of another case is
  only meaningful where it is further from 1 than the control's.
- `SOAP(ExponentialDecay)`: keras_optlab's SOAP, to read what its rotations
  cost on layers of this size (784 x 256, 256 x 256 and 256 x 10 kernels:
  factors of 784, 256 and 10 rows); no goal.

Each backend runs in its own subprocess (`KERAS_BACKEND` is read when Keras
is imported). After warm-up, the cases are timed round-robin: one sample is
`--steps` consecutive `train_on_batch` calls of one case, then the next case,
so that a noisy neighbour slows every case alike; each round starts one
case later than the one before. The table gives the median
time per step over the `repetitions` samples and the ratio of medians against
the reference, all measured in the same process. Writes
bench/results.json through `make bench`.

Findings (2-core CPU shared with other jobs, load average 4-5):

- Four runs of this script (the first two with a fixed case order, the
  first without the control and with 40 samples): `Steered` read 1.018,
  1.018, 1.049, 1.017 on TensorFlow and 1.061, 0.992, 1.024, 1.005 on JAX;
  `Warmup` 0.990, 0.978, 1.015, 1.011 and 1.057, 0.994, 1.036, 1.001; the
  A/A control 0.996-1.005 and 0.995-1.008. The last run is the one in
  results.json.
- Timing the jitted JAX train step directly (no `train_on_batch` overhead,
  ~2.5 ms of the ~4-6 ms per call), with a fixed case order, the case timed
  right after the reference read 1.03-1.12 in three runs; with the order
  shuffled every round and 150 rounds, 1.01 (two A/A controls 1.00 and
  1.03). Hence the rotating order here.
- Profile of the compiled JAX step (optimized HLO): all three cases have
  the same 52 fusions and 3 dot products. `Steered` adds 3 scalar
  parameters (its `lr_scale`, iteration and unused rate) and 6 scalar
  copies; `Warmup` adds scalar arithmetic inside existing fusions. None of
  it touches an array of the model's size.
- TensorFlow: the optimized XLA HLO of the three steps has the same 38
  fusions and 8 dot products; `Steered` adds one scalar parameter
  (`lr_scale`). The compiled step alone (a `tf.function(jit_compile=True)`
  of `train_step`, ~3.5 ms; `train_on_batch` adds ~3.5 ms of Python and
  data conversion) read 1.012 for `Steered`, 0.989 for `Warmup`, 1.004 for
  the A/A control (150 shuffled rounds). cProfile of 300 `train_on_batch`
  calls: `Steered` makes 6 more Python calls per step; Python time 2.042 s
  against 2.034 s, time in TF's executor 1.094 s against 1.098 s.
- So: no work that scales with the model is added. What steering costs is
  about 1% of this small step on TensorFlow (one more scalar input, a few
  Python calls), steady across runs, and nothing distinguishable from 0 on
  JAX. The single ratios above 1.03 came with the machine at load 4-5
  (other jobs) and did not repeat.

`run_backend()` returns the per-case lists of seconds per step, for scripts
that aggregate several benches.
"""

from __future__ import annotations

import statistics
import sys
import time

REFERENCE = "keras Adam(ExponentialDecay)"
CASES = (
    REFERENCE,
    "Steered(keras Adam(ExponentialDecay))",
    "keras Adam(Warmup(ExponentialDecay, 100))",
    "A/A control: keras Adam(ExponentialDecay) again",
    "SOAP(ExponentialDecay)",
)
# (case, reference it is compared with) for bench/run.py's table. SOAP
# does more work per step by design (each kernel rotated into the
# eigenbasis of its factors and back, a QR every 10 steps): its row, an
# average over windows of 10 steps that each hold one refresh, is there to
# be read.
PAIRS = [
    (case, REFERENCE, None if case.startswith(("A/A", "SOAP")) else 1.03) for case in CASES[1:]
]
BATCH = 128
LAYERS = (784, 256, 256, 10)
WARMUP_STEPS = 100


def _make_optimizer(case: str):
    import keras

    from keras_optlab.optimizers import Steered
    from keras_optlab.schedules import Warmup

    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.9)
    if case == REFERENCE:
        return keras.optimizers.Adam(schedule)
    if case == CASES[1]:
        return Steered(keras.optimizers.Adam(schedule))
    if case == CASES[2]:
        return keras.optimizers.Adam(Warmup(schedule, warmup_steps=WARMUP_STEPS))
    if case == CASES[3]:
        return keras.optimizers.Adam(schedule)
    if case == CASES[4]:
        from keras_optlab.optimizers import SOAP

        return SOAP(schedule)
    raise ValueError(f"Unknown case {case!r}.")


def _make_model():
    import keras

    layers = [keras.Input((LAYERS[0],))]
    layers += [keras.layers.Dense(width, activation="relu") for width in LAYERS[1:-1]]
    layers.append(keras.layers.Dense(LAYERS[-1], activation="softmax"))
    return keras.Sequential(layers)


def run_backend(
    repetitions: int = 50, steps: int = 10, warmup: int = 20
) -> dict[str, list[float]]:
    """Times the cases on the backend Keras was imported with.

    Args:
        repetitions: Samples per case (the median is taken over them).
        steps: `train_on_batch` calls per sample.
        warmup: Untimed calls per case first (compilation included).

    Returns:
        Case name -> list of `repetitions` times, in seconds per step.
    """
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, LAYERS[0])).astype("float32")
    y = rng.integers(0, LAYERS[-1], size=(BATCH,)).astype("int32")
    template = _make_model()
    weights = template.get_weights()

    models = {}
    for case in CASES:
        model = _make_model()
        model.set_weights(weights)
        model.compile(
            optimizer=_make_optimizer(case),
            loss="sparse_categorical_crossentropy",
            jit_compile=True,
        )
        models[case] = model

    for model in models.values():
        for _ in range(warmup):
            model.train_on_batch(x, y)

    times: dict[str, list[float]] = {case: [] for case in CASES}
    cases = list(models)
    for repetition in range(repetitions):
        # Round-robin, starting one case later each round, so that no case
        # always runs right after the same one (see "Findings" above).
        shift = repetition % len(cases)
        for case in cases[shift:] + cases[:shift]:
            model = models[case]
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            # train_on_batch returns a Python float: the step has finished.
            times[case].append((time.perf_counter() - start) / steps)
            del loss

    # Same work in every case: same step count, and the steered rate equals
    # the reference rate while lr_scale is 1.
    iterations = {
        case: int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        for case, model in models.items()
    }
    assert len(set(iterations.values())) == 1, iterations
    rates = [float(keras.ops.convert_to_numpy(models[c].optimizer.learning_rate)) for c in CASES[:2]]
    assert abs(rates[0] - rates[1]) <= 1e-7 * rates[0], rates
    return times


def main() -> int:
    """Times the backend of KERAS_BACKEND and prints medians; `make bench`
    (bench/run.py) runs every bench on TensorFlow and JAX in one table."""

    for case, values in run_backend().items():
        print(f"{case:50} {1e3 * statistics.median(values):8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
