"""SwitchingOptimizer: one optimizer, two methods, a phase variable between."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _phases
from keras_optlab.optimizers.base import SteerableOptimizer

# Base-class features the wrapper applies itself, for whichever phase runs.
# Set on an inner optimizer they would be skipped silently, so they are
# refused there.
_WRAPPER_ONLY = ("use_ema", "gradient_accumulation_steps", "loss_scale_factor")


def _check_inner(name: str, optimizer: Any) -> keras.optimizers.Optimizer:
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"Argument `{name}` must be a keras.optimizers.Optimizer instance. "
            f"Received: {name}={optimizer!r}"
        )
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise ValueError(
            f"Argument `{name}` must not be a LossScaleOptimizer: wrap the "
            "SwitchingOptimizer in it instead. "
            f"Received: {name}={optimizer!r}"
        )
    if optimizer.built:
        raise ValueError(
            f"Argument `{name}` must be an optimizer that is not built yet: it "
            f"is already built on {len(optimizer._trainable_variables)} "
            "variables and holds state for them. SwitchingOptimizer builds "
            "both optimizers on the variables it trains; pass a fresh one. "
            f"Received: {name}={optimizer.name!r}"
        )
    for attribute in _WRAPPER_ONLY:
        if getattr(optimizer, attribute, None):
            raise ValueError(
                f"Argument `{name}` must not set `{attribute}`: set it on the "
                "SwitchingOptimizer, which applies it to both phases. "
                f"Received: {name}.{attribute}={getattr(optimizer, attribute)!r}"
            )
    return optimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class SwitchingOptimizer(SteerableOptimizer):
    r"""Trains with `first`, then with `second`, switching inside the graph.

    One optimizer holds both methods. An integer variable `phase` (0 while
    `first` runs, 1 once `second` does) selects, at every step, which one
    updates the weights; the other is not run at all (a value-returning
    `ops.cond`), so a step costs what the active method's step costs. The
    switch is a write to `phase`: by the optimizer itself at `switch_step`,
    by the `keras_optlab.callbacks.SwitchOptimizer` callback at an epoch or on
    a plateau, or by you. Nothing recompiles, each method keeps its state, and
    a saved model remembers its phase.

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

    **Variables.** `variables` lists the wrapper's own (`iteration`,
    `lr_scale`, `phase`, `switch_iteration`, `estimated_learning_rate`,
    `step_ratio_average`), then all of `first`'s, then all of `second`'s:
    everything is saved in `.keras` files and carried in JAX's train state.
    `switch_iteration` is the `iterations` value of `second`'s first step,
    -1 before it.

    Departures: switching by hand in Keras means recompiling with a new
    optimizer, which starts `second` from fresh state and, mid-`fit` on
    TensorFlow, is silently ignored. Here `second`'s state starts at zero at
    the switch as it would then, but nothing else is lost. Not tested under
    `tf.distribute` strategies.

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
        second_learning_rate: `None` to use `second`'s own learning rate, or
            `"estimate"` for the estimate above. Defaults to `None`.
        estimate_decay: $\rho$, the decay of the average of step ratios, in
            [0, 1). Defaults to `0.9`.
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
        second_learning_rate: str | None = None,
        estimate_decay: float = 0.9,
        name: str = "switching",
        **kwargs: Any,
    ) -> None:
        _check_inner("first", first)
        _check_inner("second", second)
        if first is second:
            raise ValueError(
                "Arguments `first` and `second` must be two optimizer "
                f"instances. Received the same one twice: {first.name!r}"
            )
        if switch_step is not None:
            switch_step = _validation.check_int("switch_step", switch_step, low=0)
        if second_learning_rate is not None:
            _validation.check_choice(
                "second_learning_rate", second_learning_rate, ("estimate",)
            )
        estimate_decay = _validation.check_float(
            "estimate_decay", estimate_decay, low=0.0, high=1.0, high_open=True
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
        # Created here, after `iteration` and `lr_scale`, so that their
        # indices in `variables` do not depend on when the optimizer is built.
        self.phase = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(1 if switch_step == 0 else 0),
            dtype="int32",
            aggregation="only_first_replica",
            name="phase",
        )
        self.switch_iteration = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int32",
            aggregation="only_first_replica",
            name="switch_iteration",
        )
        self.estimated_learning_rate = self.add_variable(
            shape=(), dtype="float32", aggregation="only_first_replica",
            name="estimated_learning_rate",
        )
        self.step_ratio_average = self.add_variable(
            shape=(), dtype="float32", aggregation="only_first_replica",
            name="step_ratio_average",
        )

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
        else:
            second_rate = ops.cast(self.second.learning_rate, "float32")
        in_first = ops.equal(ops.convert_to_tensor(self.phase), 0)
        return ops.where(in_first, first_rate, second_rate)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.first.build(var_list)
        self.second.build(var_list)

    def _phase_step(self, inner, grads, variables, learning_rate, measure):
        """`inner`'s update with the given rate; only assigns variables."""
        grads = inner._clip_gradients(grads)
        if inner.weight_decay:
            for variable in variables:
                if inner._use_weight_decay(variable):
                    decay = ops.cast(learning_rate * inner.weight_decay, variable.dtype)
                    variable.assign(variable - variable * decay)
        if measure:
            # Copies: PyTorch's fused optimizers update tensors in place.
            before = [ops.copy(ops.convert_to_tensor(v)) for v in variables]
        inner._backend_update_step(grads, variables, learning_rate)
        inner._iterations.assign_add(1)
        if measure:
            self._update_estimate(grads, variables, before, learning_rate)

    def _update_estimate(self, grads, variables, before, learning_rate):
        step_sq = ops.zeros((), "float32")
        grad_sq = ops.zeros((), "float32")
        for grad, variable, old in zip(grads, variables, before):
            change = ops.cast(ops.convert_to_tensor(variable), "float32") - ops.cast(old, "float32")
            step_sq = step_sq + ops.sum(ops.square(change))
            grad_sq = grad_sq + ops.sum(ops.square(ops.cast(grad, "float32")))
        # Measured per unit of lr_scale, so that the estimate does not carry
        # a plateau callback's reduction twice once it is applied.
        scale = ops.convert_to_tensor(self.lr_scale)
        denominator = ops.sqrt(grad_sq) * scale
        usable = ops.greater(denominator, 0.0)
        ratio = ops.where(
            usable, ops.sqrt(step_sq) / ops.where(usable, denominator, 1.0), 0.0
        )
        decay = self.estimate_decay
        average = decay * ops.convert_to_tensor(self.step_ratio_average) + (1.0 - decay) * ratio
        self.step_ratio_average.assign(average)
        steps = ops.cast(ops.convert_to_tensor(self.first._iterations), "float32")
        correction = 1.0 - ops.power(decay, steps) if decay > 0 else 1.0
        momentum = float(getattr(self.second, "momentum", 0.0) or 0.0)
        self.estimated_learning_rate.assign((1.0 - momentum) * average / correction)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        trainable_variables = list(trainable_variables)
        measure = self.second_learning_rate == "estimate"
        phase = ops.convert_to_tensor(self.phase)
        touched = trainable_variables + self.first.variables + self.second.variables
        if measure:
            # lr_scale is only read, but on JAX a branch sees only these.
            touched += [
                self.step_ratio_average, self.estimated_learning_rate, self.lr_scale
            ]
        _phases.cond_with_updates(
            ops.equal(phase, 0),
            lambda: self._phase_step(
                self.first, grads, trainable_variables, learning_rate, measure
            ),
            lambda: self._phase_step(
                self.second, grads, trainable_variables, learning_rate, False
            ),
            touched,
        )
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
