"""The lab's trial engine: compile once, run many.

Every run of `compare` and `tune` trains through an `Engine`. A fresh
Keras build, trace and compile costs seconds; an epoch of a small model
costs milliseconds. So the engine keeps, per candidate, a compiled model
and reuses it for every run whose optimizer has the same structure:

- **Hyperparameters live in variables.** The candidate's optimizer (and
  schedule) is built with the run's values, then every number a tuned
  hyperparameter feeds is replaced by a variable (`keras_optlab.lab.live`);
  a later run assigns its values and the compiled step reads them.
  Candidates whose optimizers are built alike (`adam` and `adam+plateau`)
  share one compiled model.
- **State is reset between runs**: every model variable to the value a
  fresh build with the run's seed gives (weights, and random-seed state),
  every optimizer variable to the value it had when the optimizer was
  built (slots at their initializers, step counters at 0, `lr_scale` at 1,
  the phase of a switch at 0).
- **Nothing recompiles silently.** A run whose optimizer differs in
  structure (a value that was read as a Python number, a list of
  boundaries) gets a new compiled model, counted in `compiles`; a trace of
  a compiled model's train or evaluation step after its first run is
  counted in `retraces`.

A reused run equals a fresh one with the same seed and setting: what the
engine resets is everything a run reads. Same batches: Keras' global
generator is reseeded with the run's seed right before `fit`.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Mapping

import numpy as np

from keras_optlab.lab import live, no_tensorflow
from keras_optlab.lab.candidates import Candidate
from keras_optlab.lab.errors import UsageError
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


@dataclasses.dataclass
class _Compiled:
    """One compiled model and what resets it."""

    model: Any
    bindings: live.Bindings
    variables: list[Any]
    # (variable, value after build, index of the model variable it starts
    # as, or None): see `_initial_state`.
    optimizer_state: list[tuple[Any, np.ndarray, int | None]]
    traces: list[int]
    runs: int = 0


class Engine:
    """Runs candidates on one workload, compiling as little as it can (see
    the module).

    Args:
        workload: What to train.
        epochs: Epochs per run.
        batch_size: Examples per step (array data).
        jit_compile: Passed to `compile`.
        steps_per_execution: Steps per call of the compiled function (at
            most the steps of an epoch are used).
        verbose: Passed to `fit`.
    """

    def __init__(
        self,
        workload: Workload,
        *,
        epochs: int,
        batch_size: int,
        jit_compile: bool | str = "auto",
        steps_per_execution: int = 1,
        verbose: int = 0,
    ) -> None:
        import keras

        self.workload = workload
        self.epochs = epochs
        self.batch_size = batch_size
        self.jit_compile = jit_compile
        self.steps = workload.steps_per_epoch(batch_size)
        # More steps per call than an epoch has would make Keras warn that
        # the data ran out.
        self.steps_per_execution = max(1, min(steps_per_execution, self.steps))
        self.verbose = verbose
        self.counts_traces = keras.backend.backend() != "torch"
        self._compiled: list[_Compiled] = []
        self._initial: dict[int, list[np.ndarray]] = {}
        # Candidates whose code could not trace with its values in variables.
        self._unbindable: set[str] = set()
        self.compiles: collections.Counter[str] = collections.Counter()
        self.retraces: collections.Counter[str] = collections.Counter()

    # --- state a fresh build would have ------------------------------------
    def initial_values(self, seed: int) -> list[np.ndarray]:
        """Every variable of a model built from `seed` (weights first)."""
        if seed not in self._initial:
            template = self.workload.template(seed)
            self._initial[seed] = [np.array(v) for v in template.variables]
        return self._initial[seed]

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """The weights of a model built from `seed`."""
        return self.workload.template(seed).get_weights()

    # --- compiled models ---------------------------------------------------
    def _compile(self, candidate: Candidate, values: Mapping[str, Any], optimizer: Any) -> _Compiled:
        import keras

        no_tensorflow.set_random_seed(0)
        model = self.workload.build_model()
        if not model.built or not model.weights:
            model = self.workload.template(0)
        variables = list(model.variables)
        varying = (
            set() if candidate.name in self._unbindable
            else live.varying(candidate, values, self.steps, self.epochs)
        )
        bindings = live.Bindings(optimizer, varying)
        with live.building():
            optimizer.build(model.trainable_variables)
        # Bound values are set by each run, not reset.
        bound = {id(v) for v in bindings.variables}
        state = _initial_state([v for v in optimizer.variables if id(v) not in bound], variables)
        model.compile(
            optimizer=optimizer,
            loss=self.workload.loss,
            metrics=list(self.workload.metrics),
            jit_compile=self.jit_compile,
            steps_per_execution=self.steps_per_execution,
        )
        # Keras builds the loss and metrics on the first call that sees
        # data; inside `fit` that first call draws a shuffle of its own, and
        # a first fit would shuffle differently from later ones. One
        # evaluation on a batch builds them here, before any seed is set: a
        # batch of the shape validation will have, so that its compiled
        # step serves the runs too.
        x, y = self.workload.scoring_batch(self.batch_size)
        model.evaluate(x, y, batch_size=len(x), verbose=0)
        traces = [0]
        if self.counts_traces:
            for name in ("train_step", "test_step"):
                step = getattr(model, name)

                def counted(*args, _step=step, **kwargs):
                    traces[0] += 1
                    return _step(*args, **kwargs)

                setattr(model, name, counted)
        compiled = _Compiled(model, bindings, variables, state, traces)
        self._compiled.append(compiled)
        self.compiles[candidate.name] += 1
        return compiled

    def _compiled_for(self, candidate: Candidate, values: Mapping[str, Any], optimizer: Any) -> _Compiled:
        config = live.config_of(optimizer)
        for compiled in self._compiled:
            if compiled.bindings.accepts(config):
                compiled.bindings.assign(config)
                return compiled
        return self._compile(candidate, values, optimizer)

    # --- one run ---------------------------------------------------------
    def run(
        self,
        candidate: Candidate,
        hyperparameters: Mapping[str, Any],
        seed: int,
        *,
        switch_epoch: int | None = None,
        on_epoch: Callable[[int, Mapping[str, float]], None] | None = None,
        test: bool = False,
    ) -> RunRecord:
        """Trains `candidate` with `hyperparameters` from the state a fresh
        build with `seed` has, with `seed`'s batch order, and records it.

        Args:
            switch_epoch: See `Candidate.build`.
            on_epoch: Called with the 0-based epoch and its logs after each
                epoch (the tuner reports to its pruner there; raising stops
                the run).
            test: Whether to score the trained model on the workload's test
                data, if it has any (`RunRecord.test`). Only runs whose
                result no choice depends on may ask for it.
        """
        values = {**candidate.defaults(), **dict(hyperparameters)}
        optimizer, callbacks = candidate.build(values, self.steps, self.epochs, switch_epoch)
        compiled = self._compiled_for(candidate, values, optimizer)
        new = compiled.runs == 0
        probe = _RunProbe(on_epoch)
        try:
            history = self._fit(candidate, compiled, seed, callbacks, probe)
        except Exception:
            if not new or not compiled.bindings.bound or probe.epoch_seconds:
                raise
            # The first trace failed with the values in variables: some code
            # used one as a Python number in a way no variable can serve.
            # This candidate's values are then built into each compile.
            self._compiled.remove(compiled)
            self._unbindable.add(candidate.name)
            optimizer, callbacks = candidate.build(values, self.steps, self.epochs, switch_epoch)
            compiled = self._compile(candidate, values, optimizer)
            probe = _RunProbe(on_epoch)
            history = self._fit(candidate, compiled, seed, callbacks, probe)
        scores = {}
        if test and self.workload.test is not None:
            scores = compiled.model.evaluate(
                **self.workload.test_data(self.batch_size), verbose=0, return_dict=True
            )
        return RunRecord(
            optimizer=candidate.name,
            seed=seed,
            learning_rate=float(values["learning_rate"]),
            history={k: [float(v) for v in vs] for k, vs in history.items()},
            epoch_seconds=probe.epoch_seconds,
            initial_weights_sha256=probe.fingerprint,
            hyperparameters={k: _plain(v) for k, v in dict(hyperparameters).items()},
            test={f"test_{k}": float(v) for k, v in scores.items()},
        )

    def _fit(self, candidate: Candidate, compiled: _Compiled, seed: int, callbacks, probe) -> Any:
        import keras

        from keras_optlab.callbacks import LearningRateLogger

        for variable, value in zip(compiled.variables, self.initial_values(seed)):
            variable.assign(value)
        initial = self.initial_values(seed)
        for variable, value, source in compiled.optimizer_state:
            variable.assign(value if source is None else initial[source])
        traces_before = compiled.traces[0]
        # Same seed before every fit: the same shuffled batches for all.
        no_tensorflow.set_random_seed(seed)
        try:
            return compiled.model.fit(
                **self.workload.fit_data(self.batch_size, seed),
                epochs=self.epochs,
                verbose=self.verbose,
                # Switch and plateau callbacks first, so the logger sees their effect.
                callbacks=callbacks + [LearningRateLogger(), probe.callback],
            ).history
        finally:
            if compiled.runs:
                self.retraces[candidate.name] += compiled.traces[0] - traces_before
            compiled.runs += 1

    def counts(self) -> dict[str, dict[str, int]]:
        """Compiled models and retraces per candidate."""
        names = sorted(set(self.compiles) | set(self.retraces))
        return {n: {"compiled": self.compiles[n], "retraces": self.retraces[n]} for n in names}


def _initial_state(state: list[Any], variables: list[Any]) -> list[tuple[Any, np.ndarray, int | None]]:
    """Each optimizer variable with the value it has after `build`, and the
    index of the model variable it was copied from, if any.

    Most state starts at a constant (zeros, a step count of 0) and is reset
    to it. Some starts as a copy of the weights (Keras' ScheduleFreeAdamW
    keeps z, which starts at the weights): such a slot is reset to the
    run's own initial weights, not to those the model was compiled with. A
    slot is taken for a copy when it equals a model variable of its shape
    that is not all zeros (a zero slot beside a zero bias is a constant
    either way)."""
    values = [np.array(v) for v in variables]
    initial = []
    for variable in state:
        value = np.array(variable)
        source = None
        if value.ndim and np.any(value != 0):
            source = next(
                (i for i, w in enumerate(values) if w.shape == value.shape and np.array_equal(w, value)),
                None,
            )
        initial.append((variable, value, source))
    return initial


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value
