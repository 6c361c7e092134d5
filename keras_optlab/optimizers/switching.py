"""SwitchingOptimizer: one optimizer, two methods, a phase variable between."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _lineage, _phases
from keras_optlab.optimizers._wrapping import check_inner, under_tf_strategy
from keras_optlab.optimizers.adabound import float32_adam
from keras_optlab.optimizers.base import SteerableOptimizer

# Base-class features the wrapper applies itself, for whichever phase runs.
# Set on an inner optimizer they would be skipped silently, so they are
# refused there.
@keras.saving.register_keras_serializable(package="keras_optlab")
class SwitchingOptimizer(SteerableOptimizer):
    r"""Trains with `first`, then with `second`, switching inside the graph.

    One optimizer holds both methods. An integer variable `phase` (0 while
    `first` runs, 1 once `second` does) selects, at every step, which one
    updates the weights. The switch is a write to `phase`: by the optimizer
    itself at `switch_step`, by the `keras_optlab.callbacks.SwitchOptimizer`
    callback at an epoch or on a plateau, or by you. Nothing recompiles, and a
    saved model remembers its phase.

    **Two ways to run a step.** When both methods are in the table of
    `keras_optlab.optimizers._lineage` (Keras' `SGD` plain, with momentum or
    Nesterov; `RMSprop` not centered; `Adam` and `AdamW` without `amsgrad`;
    keras_optlab's `AdaBound` with `final_lr=None`; none with an inner
    `global_clipnorm` or an overridden `update_step`), a step is one fused
    element-wise update whose per-step scalar coefficients the phase
    selects (`fused=True`, chosen automatically): one kernel per variable,
    the same arrays read and written before and after the switch, no
    branch. For any other pair, or with `fused=False`, each optimizer runs
    its own update: on JAX, and on TensorFlow unless a gradient is sparse
    or an optimizer replaces Keras' loop over the variables (`Nadam`), both
    run as data flow and element-wise selects on the phase keep the active
    one's results (XLA skips a select's loop where it keeps the old value,
    so a step costs what the active optimizer's step costs); otherwise, and
    on PyTorch, a value-returning `ops.cond` runs the active one only. All
    forms give the same weights, to float32 rounding; under TensorFlow's
    XLA the conditional costs several steps, as it copies the state passing
    through it (see docs/benchmarks.md).

    At step $t$ (0-based `iterations`), with phase $\phi_t$ and learning-rate
    scale $s$ (`lr_scale`):

    $$
    \theta_{t+1} =
    \begin{cases}
      \mathrm{first}(\theta_t, g_t;\ s\,\eta^{(1)}_{t_1}) & \phi_t = 0 \\
      \mathrm{second}(\theta_t, g_t;\ s\,\eta^{(2)}_{t_2}) & \phi_t = 1
    \end{cases}
    \qquad
    \phi_{t+1} = \max\big(\phi_t,\ [\,t + 1 \ge T\,]\big)
    $$

    where $T$ is `switch_step`, $t_1$ and $t_2$ count the steps each method
    has taken (each method's schedule and bias corrections run on its own
    count, so a schedule given to `second` starts at the switch), and
    $\eta^{(1)}, \eta^{(2)}$ are the methods' learning rates.

    **Estimated learning rate for `second`.** With
    `second_learning_rate="estimate"`, $\eta^{(2)}$ is not `second`'s own
    rate but is measured from `first` while it runs. After each step of
    `first`, with $\Delta_t$ the change it made to all trained variables
    and $g_t$ the (clipped) gradient, both flattened over all variables:

    $$
    r_t = \frac{\lVert \Delta_t \rVert_2}{s\,\lVert g_t \rVert_2}, \qquad
    a_t = \rho\, a_{t-1} + (1 - \rho)\, r_t, \qquad
    \eta^{(2)} = (1 - \mu)\, \frac{a_t}{1 - \rho^{t_1}}
    $$

    ($r_t = 0$ when $g_t = 0$.) $r_t$ is the rate a plain gradient step
    would need to move as far as `first` did; $\rho$ is `estimate_decay`;
    $\mu$ is `second.momentum` if `second` has that attribute, else 0: with
    momentum, SGD's steady-state step is $\eta g / (1 - \mu)$, so the
    factor $1 - \mu$ makes `second`'s steps as long as `first`'s recent
    ones. The estimate is frozen at its value after `first`'s last step;
    the variable `estimated_learning_rate` holds it. Like every rate,
    it is multiplied by `lr_scale` when applied.

    **What applies where.** The wrapper's own `weight_decay`, clipping,
    `use_ema`, `gradient_accumulation_steps` and `loss_scale_factor`
    apply to both phases, with the active phase's rate. An inner optimizer's
    clipping and `weight_decay` apply in its own phase (with the rate it is
    given, `lr_scale` included); its `use_ema`, `gradient_accumulation_steps`
    and `loss_scale_factor` are refused (set them on the wrapper). Wrap the
    SwitchingOptimizer, not the inner ones, in
    `keras.optimizers.LossScaleOptimizer`: a step with non-finite gradients
    is then skipped without touching either method's state.

    **Variables.** Their number and order are fixed by the configuration,
    the same before and after the switch; everything is saved in `.keras`
    files and carried in JAX's train state. First the wrapper's own:
    `iteration`, `lr_scale`, `phase`, `switch_iteration` (the `iterations`
    value of `second`'s first step, -1 before it); with
    `second_learning_rate="estimate"` also `estimated_learning_rate` and
    `step_ratio_average` (both attributes are `None` otherwise) and, when
    fused, the per-step sums `step_square_sum`, `gradient_square_sum`.
    Then:

    - fused: one `first_moment` slot per trained variable if either method
      keeps a first moment, then one `second_moment` slot per variable if
      either keeps a second moment; then `first`'s and `second`'s own
      variables (step count and rate; they are not built). In phase 0 the
      slots hold `first`'s state (Adam's $m$ and $v$; RMSprop's mean square
      in `second_moment` and, with momentum, its velocity in
      `first_moment`; SGD's velocity, in Keras' sign, $-\eta g$ summed, in
      `first_moment`). At the first step of phase 1 the slots `second`
      keeps are emptied and then hold `second`'s state in the same roles
      (SGD's velocity in `first_moment`); a slot `second` does not keep
      (Adam's $v$ after a switch to SGD) keeps its last value and is
      neither read nor written (a select on the phase).
    - branch: all of `first`'s variables, then all of `second`'s.

    Departures: switching by hand in Keras means recompiling with a new
    optimizer, which starts `second` from fresh state and, mid-`fit` on
    TensorFlow, is silently ignored. Here `second`'s state starts at zero at
    the switch as it would then, but nothing else is lost.

    **Distributed training.** Under a `tf.distribute` strategy (tested with
    `MirroredStrategy`, without XLA) and `keras.distribution` on JAX, a step
    equals the single-device one. On TensorFlow, an inner optimizer that
    overrides `_backend_update_step` (such as `SWATS`) is refused there.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import SwitchingOptimizer

    optimizer = SwitchingOptimizer(
        keras.optimizers.Adam(1e-3),
        keras.optimizers.SGD(0.01, momentum=0.9),
        switch_step=1000,
    )
    ```

    Args:
        first: The optimizer used before the switch, not yet built. Required
            (no default).
        second: The optimizer used after it, not yet built. Required (no
            default).
        switch_step: The number of steps taken by `first` before the
            optimizer switches by itself, an int >= 0 (0: `second` from the
            start), or `None` to switch only when `phase` is written. Defaults
            to `None`.
        second_learning_rate: `None` to use `second`'s own learning rate,
            `"estimate"` for the estimate above, or a float > 0: the fixed
            rate of the second phase instead of `second`'s own (times
            `lr_scale`, like every rate). Defaults to `None`.
        estimate_decay: $\rho$, the decay of the average of step ratios, in
            [0, 1). Defaults to `0.9`.
        fused: `None` to take the fused update when both methods allow it,
            `False` for the branch, `True` to require the fused update (an
            error names the method it does not cover). Defaults to `None`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        first: keras.optimizers.Optimizer,
        second: keras.optimizers.Optimizer,
        switch_step: int | None = None,
        second_learning_rate: str | float | None = None,
        estimate_decay: float = 0.9,
        fused: bool | None = None,
        name: str = "switching",
        **kwargs: Any,
    ) -> None:
        for argument, optimizer in (("first", first), ("second", second)):
            check_inner(argument, optimizer, "SwitchingOptimizer",
                        refused_because="set it on the SwitchingOptimizer, which applies it to both phases")
        if first is second:
            raise ValueError(
                "Arguments `first` and `second` must be two optimizer "
                f"instances. Received the same one twice: {first.name!r}"
            )
        if switch_step is not None:
            switch_step = _validation.check_int("switch_step", switch_step, low=0)
        if second_learning_rate is not None and second_learning_rate != "estimate":
            if isinstance(second_learning_rate, str) or not _validation._is_number(second_learning_rate):
                error = ValueError if isinstance(second_learning_rate, str) else TypeError
                raise error(
                    "Argument `second_learning_rate` must be None, \"estimate\" or a "
                    f"float in (0, inf). Received: second_learning_rate={second_learning_rate!r}"
                )
            second_learning_rate = _validation.check_float(
                "second_learning_rate", second_learning_rate, low=0.0, low_open=True
            )
        estimate_decay = _validation.check_float(
            "estimate_decay", estimate_decay, low=0.0, high=1.0, high_open=True
        )
        methods = (_lineage.describe(first), _lineage.describe(second))
        if fused is None:
            fused = None not in methods
        elif _validation.check_bool("fused", fused) and None in methods:
            uncovered = "first" if methods[0] is None else "second"
            raise ValueError(
                f"Argument `fused` is True, but `{uncovered}` is not a method the "
                "fused update covers (Keras' SGD, RMSprop without `centered`, "
                "Adam or AdamW without `amsgrad`, keras_optlab's AdaBound with "
                "final_lr=None; no `global_clipnorm`, no subclass overriding "
                "`update_step`). Pass fused=None to choose automatically. "
                f"Received: fused=True, {uncovered}={type(first if uncovered == 'first' else second).__name__}"
            )
        # The base learning rate is a callable: the active phase's rate. The
        # wrapper has no rate of its own to save or to set.
        super().__init__(
            learning_rate=self._phase_learning_rate, name=name, **kwargs
        )
        self.first = first
        self.second = second
        self.switch_step = switch_step
        self.second_learning_rate = second_learning_rate
        self.estimate_decay = estimate_decay
        self.fused = fused
        self._methods = methods if fused else None
        self._step_cache = _lineage.StepCache()
        # Created here, after `iteration` and `lr_scale`, so that their
        # indices in `variables` do not depend on when the optimizer is built.
        self.phase = self._add_scalar("phase", "int32", 1 if switch_step == 0 else 0)
        self.switch_iteration = self._add_scalar("switch_iteration", "int32", -1)
        # The estimate's variables exist only when it is asked for: on JAX
        # every float scalar of the train state costs copies at each step
        # (the step's logs take the first donated scalar buffers).
        self.estimated_learning_rate = None
        self.step_ratio_average = None
        if second_learning_rate == "estimate":
            self.estimated_learning_rate = self._add_scalar("estimated_learning_rate")
            self.step_ratio_average = self._add_scalar("step_ratio_average")
        if fused and second_learning_rate == "estimate":
            # Sums over all variables of this step, filled in `update_step`.
            self._step_square_sum = self._add_scalar("step_square_sum")
            self._gradient_square_sum = self._add_scalar("gradient_square_sum")

    @property
    def variables(self):
        return self._variables + self.first.variables + self.second.variables

    @property
    def learning_rate(self):
        """The rate of the active phase times `lr_scale` (read-only)."""
        return self._get_current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value):
        raise TypeError(
            "The learning rate of a SwitchingOptimizer is that of its active "
            "phase: set `optimizer.first.learning_rate` or "
            "`optimizer.second.learning_rate`, or scale both with "
            "`optimizer.lr_scale`."
        )

    def _phase_learning_rate(self):
        first_rate = ops.cast(self.first.learning_rate, "float32")
        if self.second_learning_rate == "estimate":
            second_rate = ops.convert_to_tensor(self.estimated_learning_rate)
        elif self.second_learning_rate is not None:
            second_rate = ops.convert_to_tensor(self.second_learning_rate, "float32")
        else:
            second_rate = ops.cast(self.second.learning_rate, "float32")
        in_first = ops.equal(ops.convert_to_tensor(self.phase), 0)
        return ops.where(in_first, first_rate, second_rate)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if not self.fused:
            self.first.build(var_list)
            self.second.build(var_list)
            return
        # The fused update keeps the slots itself, shared by both phases;
        # the inner optimizers keep only their step counts and rates.
        slots = self._methods[0].slots | self._methods[1].slots
        self._first_moments = (
            self.add_optimizer_variables(var_list, "first_moment") if "m" in slots else None
        )
        self._second_moments = (
            self.add_optimizer_variables(var_list, "second_moment") if "v" in slots else None
        )

    def _phase_step(self, inner, grads, variables, learning_rate, measure, when=None):
        """`inner`'s update with the given rate; only assigns variables.

        `when` is `None` behind a conditional; when the step runs as data
        flow (`_phases.select_updates`) it is the scalar boolean saying
        whether this phase is active, and the estimate's sums are taken
        only where it holds.
        """
        grads = inner._clip_gradients(grads)
        if inner.weight_decay:
            for variable in variables:
                if inner._use_weight_decay(variable):
                    decay = ops.cast(learning_rate * inner.weight_decay, variable.dtype)
                    variable.assign(variable - variable * decay)
        if measure:
            # Copies: PyTorch's fused optimizers update tensors in place.
            before = [ops.copy(ops.convert_to_tensor(v)) for v in variables]
        if when is not None and keras.backend.backend() == "tensorflow":
            # Keras' per-variable steps, writing through the Keras variables
            # into the scope of `_phases.select_updates`.
            with _phases.plain_assignments(inner):
                for grad, variable in zip(grads, variables):
                    inner.update_step(grad, variable, learning_rate)
        else:
            inner._backend_update_step(grads, variables, learning_rate)
        inner._iterations.assign_add(1)
        if measure:
            self._update_estimate(grads, variables, before, when)

    def _update_estimate(self, grads, variables, before, when=None):
        """The branch path's estimate: sums from the change of `variables`
        (taken only where `when` holds, if given)."""
        after = [ops.convert_to_tensor(variable) for variable in variables]

        def sums():
            step_square = ops.zeros((), "float32")
            gradient_square = ops.zeros((), "float32")
            for grad, new, old in zip(grads, after, before):
                change = ops.cast(new, "float32") - ops.cast(old, "float32")
                step_square = step_square + ops.sum(ops.square(change))
                gradient_square = gradient_square + ops.sum(ops.square(ops.cast(grad, "float32")))
            return step_square, gradient_square

        if when is None:
            self._record_estimate(*sums())
        else:
            self._record_estimate(*_lineage.sums_when(when, sums, 2))

    def _record_estimate(self, step_square, gradient_square, measured=None):
        """Folds this step's ratio |step| / (s |g|) into the estimate.

        `measured` (a scalar boolean, or `None` for always) says whether
        this step was one of `first`'s; otherwise nothing changes.
        """
        # Measured per unit of lr_scale, so that the estimate does not carry
        # a plateau callback's reduction twice once it is applied.
        scale = ops.convert_to_tensor(self.lr_scale)
        denominator = ops.sqrt(gradient_square) * scale
        usable = ops.greater(denominator, 0.0)
        ratio = ops.where(
            usable, ops.sqrt(step_square) / ops.where(usable, denominator, 1.0), 0.0
        )
        decay = self.estimate_decay
        old_average = ops.convert_to_tensor(self.step_ratio_average)
        average = decay * old_average + (1.0 - decay) * ratio
        steps = ops.cast(ops.convert_to_tensor(self.first._iterations), "float32")
        correction = 1.0 - ops.power(decay, steps) if decay > 0 else 1.0
        momentum = float(getattr(self.second, "momentum", 0.0) or 0.0)
        estimate = (1.0 - momentum) * average / correction
        if measured is not None:
            average = ops.where(measured, average, old_average)
            estimate = ops.where(
                measured, estimate, ops.convert_to_tensor(self.estimated_learning_rate)
            )
        self.step_ratio_average.assign(average)
        self.estimated_learning_rate.assign(estimate)

    def _tf_distributed_step(self, grads, trainable_variables, learning_rate, measure):
        """The phase step under a `tf.distribute` strategy (TensorFlow only).

        An inner optimizer's `_backend_update_step` synchronises twice
        (gradient all-reduce, then `merge_call` into cross-replica context),
        and `tf.distribute` refuses a synchronisation inside a `cond` taken in
        replica context. So both happen here, once, outside the cond; the
        cond runs in cross-replica context, where each branch applies its
        optimizer's per-variable updates (`distribution.extended.update`),
        which synchronise nothing. Same arithmetic as `_phase_step`; inner
        clipping sees the reduced gradients, as it does on one device.
        """
        import tensorflow as tf

        for inner in (self.first, self.second):
            if type(inner)._backend_update_step is not keras.optimizers.Optimizer._backend_update_step:
                # Its override would be skipped: only the per-variable
                # update is run here.
                raise NotImplementedError(
                    "Under a tf.distribute strategy, SwitchingOptimizer cannot "
                    f"run {type(inner).__name__}, which overrides "
                    "`_backend_update_step`. Received: "
                    f"{'first' if inner is self.first else 'second'}={inner.name!r}"
                )
        tf_variables = [variable.value for variable in trainable_variables]
        reduced = self._all_reduce_sum_gradients(list(zip(grads, tf_variables)))
        grads = [grad for grad, _ in reduced]
        if any(o.clipnorm or o.clipvalue or o.global_clipnorm for o in (self.first, self.second)):
            # A value-returning cond with no synchronisation inside: allowed
            # in replica context.
            grads = ops.cond(
                ops.equal(ops.convert_to_tensor(self.phase), 0),
                lambda: self.first._clip_gradients(grads),
                lambda: self.second._clip_gradients(grads),
            )

        def cross_replica_step(distribution, grads, tf_variables, learning_rate):
            # Arguments arrive regrouped: per-replica gradients and rates,
            # mirrored variables. Reads of mirrored variables give the
            # (identical) value of the first replica.
            def decay(variable, rate, inner):
                factor = ops.cast(rate * inner.weight_decay, variable.dtype)
                variable.assign(variable - variable * factor)

            def phase_step(inner, measure):
                if inner.weight_decay:
                    for variable, tf_variable in zip(trainable_variables, tf_variables):
                        if inner._use_weight_decay(variable):
                            distribution.extended.update(
                                tf_variable, decay, args=(learning_rate, inner), group=False
                            )
                if measure:
                    before = [ops.copy(ops.convert_to_tensor(v)) for v in trainable_variables]
                inner._distributed_tf_update_step(
                    distribution, list(zip(grads, tf_variables)), learning_rate
                )
                inner._iterations.assign_add(1)
                if measure:
                    # All replicas hold the same reduced gradients.
                    local = [distribution.experimental_local_results(g)[0] for g in grads]
                    self._update_estimate(local, trainable_variables, before)

            ops.cond(
                ops.equal(ops.convert_to_tensor(self.phase), 0),
                lambda: phase_step(self.first, measure),
                lambda: phase_step(self.second, False),
            )

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica_step, self._distribution_strategy, grads, tf_variables, learning_rate
        )

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        trainable_variables = list(trainable_variables)
        phase = ops.convert_to_tensor(self.phase)
        if self.fused:
            self._fused_step(grads, trainable_variables, learning_rate, phase)
        else:
            self._branch_step(grads, trainable_variables, learning_rate, phase)
        # `iterations` is incremented by the base class after this returns.
        iteration = ops.cast(self.iterations, "int32")
        first_second_step = ops.logical_and(
            ops.equal(phase, 1),
            ops.less(ops.convert_to_tensor(self.switch_iteration), 0),
        )
        self.switch_iteration.assign(
            ops.where(first_second_step, iteration, self.switch_iteration.value)
        )
        if self.switch_step is not None:
            due = ops.greater_equal(iteration + 1, self.switch_step)
            self.phase.assign(ops.where(due, 1, phase))

    def _selectable(self, grads) -> bool:
        """Whether the branch can run as data flow with selects: on JAX
        always; on TensorFlow when no gradient is sparse (optimizers write
        those with scatters) and neither optimizer replaces Keras' loop over
        the variables; never on PyTorch, where a Python `if` is cheaper."""
        backend = keras.backend.backend()
        if backend == "jax":
            return True
        if backend != "tensorflow":
            return False
        import tensorflow as tf

        if any(isinstance(grad, tf.IndexedSlices) for grad in grads):
            return False
        keras_loop = keras.optimizers.Optimizer._backend_update_step
        return all(
            type(inner)._backend_update_step is keras_loop for inner in (self.first, self.second)
        )

    def _branch_step(self, grads, trainable_variables, learning_rate, phase):
        """Runs the active phase's own optimizer: both as data flow kept by
        selects (`_phases.select_updates`) where `_selectable`, else behind
        a conditional (a Python `if` in eager PyTorch)."""
        measure = self.second_learning_rate == "estimate"
        if under_tf_strategy():
            self._tf_distributed_step(grads, trainable_variables, learning_rate, measure)
            return
        in_first = ops.equal(phase, 0)
        estimate_state = [self.step_ratio_average, self.estimated_learning_rate] if measure else []
        if self._selectable(grads):
            _phases.select_updates(
                in_first,
                lambda: self._phase_step(
                    self.first, grads, trainable_variables, learning_rate, measure, in_first
                ),
                lambda: self._phase_step(
                    self.second, grads, trainable_variables, learning_rate, False,
                    ops.logical_not(in_first),
                ),
                true_owned=self.first.variables + estimate_state,
                false_owned=self.second.variables,
                # lr_scale is only read; on JAX a branch sees only these.
                shared=trainable_variables + [self.lr_scale],
            )
            return
        touched = trainable_variables + self.first.variables + self.second.variables
        if measure:
            # lr_scale is only read, but on JAX a branch sees only these.
            touched += estimate_state + [self.lr_scale]
        _phases.cond_with_updates(
            in_first,
            lambda: self._phase_step(
                self.first, grads, trainable_variables, learning_rate, measure
            ),
            lambda: self._phase_step(
                self.second, grads, trainable_variables, learning_rate, False
            ),
            touched,
        )

    # --- the fused update ----------------------------------------------------

    def _fused_step(self, grads, trainable_variables, learning_rate, phase):
        """Both phases as one coefficient-driven update (see `_lineage`).

        The per-variable work happens in `update_step`, called by the base
        class (which, on TensorFlow, all-reduces the gradients first under
        a `tf.distribute` strategy); this adds the per-step bookkeeping.
        """
        measure = self.second_learning_rate == "estimate"
        if measure:
            self._step_square_sum.assign(0.0)
            self._gradient_square_sum.assign(0.0)
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_cache.clear()
        in_first = ops.equal(phase, 0)
        for inner, active in ((self.first, in_first), (self.second, ops.logical_not(in_first))):
            inner._iterations.assign_add(ops.cast(active, inner._iterations.dtype))
        if measure:
            self._record_estimate(
                ops.convert_to_tensor(self._step_square_sum),
                ops.convert_to_tensor(self._gradient_square_sum),
                measured=in_first,
            )

    def _step_coefficients(self, learning_rate, dtype):
        """`(in_first, row)` for this step and `dtype`, computed once per step."""
        return self._step_cache.get(
            learning_rate, dtype, lambda: self._compute_coefficients(learning_rate, dtype)
        )

    def _compute_coefficients(self, learning_rate, dtype):
        in_first = ops.equal(ops.convert_to_tensor(self.phase), 0)
        first_method, second_method = self._methods
        # The second method starts from empty slots, as a fresh optimizer.
        fresh = ops.logical_and(
            ops.logical_not(in_first),
            ops.equal(ops.convert_to_tensor(self.second._iterations), 0),
        )
        second_row = second_method.row(learning_rate, dtype).restarted(
            fresh, second_method.slots
        )
        row = _lineage.select(in_first, first_method.row(learning_rate, dtype), second_row)
        return in_first, row

    def _clip_for_phase(self, gradient, in_first):
        """The active inner optimizer's `clipnorm` or `clipvalue`, as Keras'
        `_clip_gradients` applies it (`clipnorm` first)."""
        first, second = self.first, self.second
        norms = [o.clipnorm if o.clipnorm and o.clipnorm > 0 else None for o in (first, second)]
        values = [
            o.clipvalue if o.clipvalue and o.clipvalue > 0 and norm is None else None
            for o, norm in zip((first, second), norms)
        ]
        if any(norms):
            square_sum = ops.sum(ops.square(gradient), None, keepdims=True)
            positive = square_sum > 0
            # Keras' two-tap `where`, so that a NaN gradient stays NaN.
            norm = ops.where(
                positive, ops.sqrt(ops.where(positive, square_sum, ops.ones_like(square_sum))),
                square_sum,
            )

            def factor(clip):
                return (1.0, 1.0) if clip is None else (clip, ops.maximum(norm, clip))

            (scale_1, bound_1), (scale_2, bound_2) = factor(norms[0]), factor(norms[1])
            scale = _lineage.choose(in_first, scale_1, scale_2)
            gradient = ops.divide(
                ops.multiply(gradient, ops.cast(scale, gradient.dtype)),
                ops.cast(ops.where(in_first, bound_1, bound_2), gradient.dtype),
            )
        if any(values):
            bounds = [float("inf") if v is None else v for v in values]
            bound = ops.cast(_lineage.choose(in_first, *bounds), gradient.dtype)
            gradient = ops.clip(gradient, -bound, bound)
        return gradient

    def _decay_for(self, index, learning_rate, in_first):
        """The active phase's weight-decay factor for variable `index`."""
        variable = self._trainable_variables[index]
        rates = [
            float(o.weight_decay) if o.weight_decay and o._use_weight_decay(variable) else 0.0
            for o in (self.first, self.second)
        ]
        if rates == [0.0, 0.0]:
            return None
        return ops.cast(learning_rate, "float32") * _lineage.choose(in_first, *rates)

    def update_step(self, gradient, variable, learning_rate):
        """One variable's fused update (only with `fused=True`)."""
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        in_first, row = self._step_coefficients(learning_rate, dtype)
        gradient = self._clip_for_phase(gradient, in_first)
        index = self._get_variable_index(variable)
        decay = self._decay_for(index, learning_rate, in_first)
        slots = [
            None if moments is None else moments[index]
            for moments in (self._first_moments, self._second_moments)
        ]
        theta, m, v = _lineage.update(
            row,
            ops.convert_to_tensor(variable),
            *[None if slot is None else ops.convert_to_tensor(slot) for slot in slots],
            gradient,
            decay=decay,
        )
        for slot, value in zip(slots, (m, v)):
            if slot is not None:
                self.assign(slot, value)
        self.assign(variable, theta)
        if self.second_learning_rate == "estimate":

            def square_sums():
                taken = _lineage.step(row, m, v, gradient)
                step_square = (
                    ops.zeros((), "float32") if taken is None
                    else ops.sum(ops.square(ops.cast(taken, "float32")))
                )
                return step_square, ops.sum(ops.square(ops.cast(gradient, "float32")))

            step_square, gradient_square = _lineage.sums_when(in_first, square_sums, 2)
            self.assign_add(self._step_square_sum, step_square)
            self.assign_add(self._gradient_square_sum, gradient_square)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("learning_rate", None)
        config.update(
            {
                "first": keras.saving.serialize_keras_object(self.first),
                "second": keras.saving.serialize_keras_object(self.second),
                "switch_step": self.switch_step,
                "second_learning_rate": self.second_learning_rate,
                "estimate_decay": self.estimate_decay,
                "fused": self.fused,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.pop("learning_rate", None)
        for key in ("first", "second"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)


def adam_then_sgd(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    sgd_learning_rate: Any = 0.01,
    momentum: float = 0.9,
    switch_step: int | None = None,
    second_learning_rate: str | None = None,
    **kwargs: Any,
) -> SwitchingOptimizer:
    """Adam, then SGD with momentum: a `SwitchingOptimizer`.

    The Adam phase is computed with float32 coefficients (keras_optlab's
    `AdaBound` with its bounds off, whose update is exactly Keras' `Adam`
    formula), so that it also moves bfloat16 variables, which Keras' `Adam`
    does not. The second phase is `keras.optimizers.SGD(sgd_learning_rate,
    momentum=momentum)`. Without `switch_step`, switch with the
    `keras_optlab.callbacks.SwitchOptimizer` callback.

    Args:
        learning_rate: Adam's rate: a float >= 0, a schedule or a callable.
            Defaults to `0.001`.
        beta_1: Adam's first-moment decay, in [0, 1). Defaults to `0.9`.
        beta_2: Adam's second-moment decay, in [0, 1). Defaults to `0.999`.
        epsilon: Adam's epsilon, >= 0. Defaults to `1e-7`, as Keras' `Adam`.
        sgd_learning_rate: SGD's rate (ignored with
            `second_learning_rate="estimate"`). Defaults to `0.01`.
        momentum: SGD's momentum, in [0, 1). Defaults to `0.9`.
        switch_step: See `SwitchingOptimizer`. Defaults to `None`.
        second_learning_rate: See `SwitchingOptimizer`. Defaults to `None`.
        **kwargs: Passed to `SwitchingOptimizer`.
    """
    # Adam checks its own arguments, with the same messages.
    adam = float32_adam(learning_rate, beta_1, beta_2, epsilon)
    sgd_learning_rate = _validation.check_learning_rate(
        sgd_learning_rate, "sgd_learning_rate"
    )
    momentum = _validation.check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
    sgd = keras.optimizers.SGD(learning_rate=sgd_learning_rate, momentum=momentum)
    return SwitchingOptimizer(
        adam, sgd, switch_step=switch_step,
        second_learning_rate=second_learning_rate, **kwargs,
    )
