"""One training run: a candidate on a workload from given initial weights,
every number recorded. `compare` and `tune` both train through here, so a
run means the same in both.

Same initial weights: the caller builds a template from the seed once and
passes its weights; each run builds a fresh model and loads them. Same
batches: Keras' global generator is reseeded with the run's seed right
before `fit`, so shuffling (of arrays) gives every candidate the same order.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.records import RunRecord, weights_fingerprint
from keras_optlab.lab.workload import Workload

# Steps run per call of the compiled train function. On a small model the
# time goes into the per-call Python overhead, not the arithmetic: 16 steps
# per call make the default comparison about 1.6 times faster on TensorFlow.
# The progress bar then moves in jumps of 16 steps.
DEFAULT_STEPS_PER_EXECUTION = 16


def steps_per_execution(value: int | None) -> int:
    """Checks `value`; `None` gives 16, or 1 on PyTorch (which accepts no other)."""
    import keras

    from keras_optlab import _validation
    from keras_optlab.lab.errors import UsageError

    torch = keras.backend.backend() == "torch"
    if value is None:
        return 1 if torch else DEFAULT_STEPS_PER_EXECUTION
    value = _validation.check_int("steps_per_execution", value, low=1)
    if torch and value != 1:
        raise UsageError(
            "Argument `steps_per_execution` must be 1 with the PyTorch backend. "
            f"Received: steps_per_execution={value}"
        )
    return value


class _RunProbe:
    """Builds the callback that times epochs and fingerprints the weights a
    run starts from (read from the model being trained, at train begin)."""

    def __init__(self, on_epoch: Callable[[int, Mapping[str, float]], None] | None):
        import keras

        probe = self

        class Probe(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                probe.fingerprint = weights_fingerprint(self.model.get_weights())

            def on_epoch_begin(self, epoch, logs=None):
                probe.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                probe.epoch_seconds.append(time.perf_counter() - probe.started)
                if on_epoch is not None:
                    on_epoch(epoch, dict(logs or {}))

        self.fingerprint = ""
        self.started = 0.0
        self.epoch_seconds: list[float] = []
        self.callback = Probe()


def run(
    workload: Workload,
    candidate: Candidate,
    hyperparameters: Mapping[str, Any],
    seed: int,
    initial_weights: Sequence[np.ndarray],
    epochs: int,
    batch_size: int,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
    verbose: int = 0,
    switch_epoch: int | None = None,
    on_epoch: Callable[[int, Mapping[str, float]], None] | None = None,
) -> RunRecord:
    """Trains `candidate` with `hyperparameters` once and records it.

    Args:
        on_epoch: Called with the 0-based epoch and its logs after each
            epoch (the tuner reports to its pruner there; raising stops
            the run).

    Returns:
        The `RunRecord`. A run stopped by `on_epoch` raises instead.
    """
    import keras

    from keras_optlab.callbacks import LearningRateLogger

    steps = workload.steps_per_epoch(batch_size)
    # More steps per call than an epoch has would make Keras warn that the
    # data ran out.
    per_call = max(1, min(steps_per_execution, steps))
    keras.backend.clear_session()
    network = workload.build_model()
    if not network.built or not network.weights:
        network = workload.template(seed)
    network.set_weights(list(initial_weights))
    optimizer, callbacks = candidate.build(hyperparameters, steps, epochs, switch_epoch)
    network.compile(
        optimizer=optimizer,
        loss=workload.loss,
        metrics=list(workload.metrics),
        jit_compile=jit_compile,
        steps_per_execution=per_call,
    )
    probe = _RunProbe(on_epoch)
    # Same seed before every fit: the same shuffled batches for all.
    keras.utils.set_random_seed(seed)
    history = network.fit(
        **workload.fit_data(batch_size),
        epochs=epochs,
        verbose=verbose,
        # Switch and plateau callbacks first, so the logger sees their effect.
        callbacks=callbacks + [LearningRateLogger(), probe.callback],
    )
    rate = float(dict(hyperparameters).get("learning_rate", candidate.defaults()["learning_rate"]))
    return RunRecord(
        optimizer=candidate.name,
        seed=seed,
        learning_rate=rate,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        epoch_seconds=probe.epoch_seconds,
        initial_weights_sha256=probe.fingerprint,
        hyperparameters={k: _plain(v) for k, v in dict(hyperparameters).items()},
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value
