"""Traces of the train function and compile time, with and without steering.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_traces.py --backend tensorflow`
(or through `make bench`, which runs every bench on TensorFlow and JAX).

The same small MLP is fitted for 8 epochs twice: with Keras Adam on an
ExponentialDecay schedule, and with a SwitchingOptimizer (Adam, then SGD
with momentum) steered by SwitchOptimizer (switch at epoch 3) and
ReduceLROnPlateau (set to reduce at every epoch from the second). The train
step counts its own traces (Python in `train_step` runs only when traced);
compile time is the first epoch's wall time minus the median of the others.
Goal: the steered run traces exactly as often as the plain one.
"""

from __future__ import annotations

import statistics
import time

EPOCHS, STEPS, BATCH = 8, 16, 32


def _run(steered: bool) -> dict:
    import keras
    import numpy as np

    from keras_optlab import callbacks, optimizers

    traces = {"count": 0}

    class CountingModel(keras.Sequential):
        def train_step(self, *args, **kwargs):
            traces["count"] += 1
            return super().train_step(*args, **kwargs)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 64)).astype("float32")
    y = rng.integers(0, 10, size=(STEPS * BATCH,))
    model = CountingModel(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
    epoch_times: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_times.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: epoch_times.__setitem__(-1, epoch_times[-1] + time.perf_counter()),
    )
    steering = []
    if steered:
        optimizer = optimizers.SwitchingOptimizer(
            keras.optimizers.Adam(schedule), keras.optimizers.SGD(1e-2, momentum=0.9)
        )
        # min_delta larger than any change: every epoch is a plateau.
        steering = [
            callbacks.SwitchOptimizer(at_epoch=3),
            callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9),
            callbacks.LearningRateLogger(),
        ]
    else:
        optimizer = keras.optimizers.Adam(schedule)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                        callbacks=[timer, *steering])
    result = {
        "traces": traces["count"],
        "compile_s": epoch_times[0] - statistics.median(epoch_times[1:]),
        "epoch_s": statistics.median(epoch_times[1:]),
    }
    if steered:
        result["learning_rate"] = history.history["learning_rate"]
        result["phase"] = history.history["optimizer_phase"]
    return result


def run_backend() -> dict:
    """Both runs in this process; returns their traces and times."""
    return {"plain": _run(steered=False), "steered": _run(steered=True)}


if __name__ == "__main__":
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    os.environ["KERAS_BACKEND"] = parser.parse_args().backend
    print(json.dumps(run_backend(), indent=2))
