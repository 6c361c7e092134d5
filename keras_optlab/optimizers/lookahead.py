"""Lookahead: k steps forward with any optimizer, one step back."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers._wrapping import (
    WRAPPER_ONLY,
    InnerRate,
    check_inner,
    rate_already_scaled,
    under_tf_strategy,
)
from keras_optlab.optimizers.adabound import float32_adam
from keras_optlab.optimizers.base import SteerableOptimizer
from keras_optlab.optimizers.radam import RAdam

@keras.saving.register_keras_serializable(package="keras_optlab")
class Lookahead(InnerRate, SteerableOptimizer):
    r"""Lookahead (Zhang et al., 2019): k steps forward, one step back.

    Wraps any optimizer (Keras' own, keras_optlab's `RAdam`,
    `SwitchingOptimizer`, `SWATS`, ...), the *inner* or *fast* optimizer,
    which updates the weights $\theta$ at every step. Lookahead keeps a
    second copy of the weights, the *slow* weights $\phi$, equal to the
    weights when the optimizer is built. Every $k$ steps the slow weights
    move a fraction $\alpha$ of the way towards the fast ones, and the fast
    weights restart from there:

    $$
    \begin{aligned}
    \theta_t &= \mathrm{inner}(\theta_{t-1}, g_t;\ \eta_t)
        \qquad t = 1, 2, \dots \\
    \text{if } k \mid t: \quad
    \phi &\leftarrow \phi + \alpha\,(\theta_t - \phi), \qquad
    \theta_t \leftarrow \phi
    \end{aligned}
    $$

    Symbols map to arguments: $k$ is `sync_period`, $\alpha$
    `slow_step_size`, $\eta_t$ the inner optimizer's learning rate (times
    this optimizer's `lr_scale`), $t$ the number of steps the inner
    optimizer has taken.

    **Cost.** Under XLA (TensorFlow and JAX) the synchronisation is an
    element-wise select on the scalar $s_t = [k \mid t]$, with no
    conditional: $\phi \leftarrow \phi + \alpha(\theta_t - \phi)$ and
    $\theta_t \leftarrow \phi$ where $s_t = 1$, each left as it is where
    $s_t = 0$. A select on a scalar is measured free on the steps where it
    keeps the old value: the steps between two synchronisations cost what
    the inner step costs (`Lookahead(Adam)` 1.03 to 1.09 times Keras' Adam
    on TensorFlow, 0.97 to 1.14 on JAX; the same arithmetic with
    $s_t \alpha$ as a 0/1 coefficient cost 1.23 to 1.31 on TensorFlow, and
    a conditional 2.2 to 3 times there; docs/benchmarks.md).
    On PyTorch, which runs eagerly, it is a Python `if` (`ops.cond`).

    **Learning rate.** `learning_rate` is the inner optimizer's rate times
    `lr_scale`; setting it sets the inner optimizer's (as for
    `keras.optimizers.LossScaleOptimizer`), so Keras' own
    `ReduceLROnPlateau` and `LearningRateScheduler` work as they do on the
    inner optimizer, and `keras_optlab.callbacks.ReduceLROnPlateau` lowers
    `lr_scale` even under a schedule. The inner optimizer's own
    `learning_rate` reports, and everything it applies uses (its update, its
    decoupled weight decay), the scaled rate. A schedule of the inner
    optimizer runs on its own step count, which advances with every step.

    **What applies where.** This optimizer's own `weight_decay`, clipping,
    `use_ema`, `gradient_accumulation_steps` and `loss_scale_factor` apply
    before the inner update (EMA after the synchronisation); the inner
    optimizer's clipping and `weight_decay` apply as they would in its own
    `apply`. Its `use_ema`, `gradient_accumulation_steps` and
    `loss_scale_factor` are refused (set them on the Lookahead). Wrap the
    Lookahead, not the inner optimizer, in
    `keras.optimizers.LossScaleOptimizer`: a skipped step then leaves the
    inner state, the slow weights and the step count untouched.

    **Variables.** First this optimizer's own (`iteration`, `lr_scale`), then
    one slow-weight slot per trained variable (same shape and dtype), then
    the inner optimizer's variables; all are saved in `.keras` files and
    carried in JAX's train state, so training resumed in the middle of a
    synchronisation period continues exactly.

    Departures: TensorFlow Addons' `Lookahead` creates the slow weights at
    the first step from the weights of that moment; here they are created
    when the optimizer is built (Keras builds it at the start of `fit`),
    from the weights of that moment. The defaults are TensorFlow Addons':
    $k = 6$, $\alpha = 0.5$ (the paper's experiments mostly use $k = 5$
    or 10 and $\alpha = 0.5$ or 0.8).

    Reference:
        Michael R. Zhang, James Lucas, Geoffrey Hinton, Jimmy Ba.
        "Lookahead Optimizer: k steps forward, 1 step back". NeurIPS 2019.
        arXiv:1907.08610.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import Lookahead, RAdam

    ranger = Lookahead(RAdam(1e-3), sync_period=6, slow_step_size=0.5)
    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=ranger, loss="sparse_categorical_crossentropy")
    ```

    Args:
        optimizer: The inner (fast) `keras.optimizers.Optimizer`, not yet
            built; not a `LossScaleOptimizer` (wrap that around the
            Lookahead instead). A string is a registry name
            (`keras_optlab.optimizers.get`), as in TensorFlow Addons'
            `Lookahead("adam")`. Required (no default).
        sync_period: $k$, the number of inner steps between two
            synchronisations, an int >= 1 (1: every step). Defaults to `6`.
        slow_step_size: $\alpha$, the fraction of the way the slow weights
            move towards the fast ones, in (0, 1] (1: the inner optimizer
            alone). Defaults to `0.5`.
        name: Name of the optimizer. Defaults to `"lookahead"`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`.
    """

    def __init__(
        self,
        optimizer: keras.optimizers.Optimizer,
        sync_period: int = 6,
        slow_step_size: float = 0.5,
        name: str = "lookahead",
        **kwargs: Any,
    ) -> None:
        if isinstance(optimizer, str):
            # A registry name or Keras string, as TensorFlow Addons accepted:
            # Keras resolves the registry's names once the package is imported.
            try:
                optimizer = keras.optimizers.get(optimizer)
            except ValueError:
                raise ValueError(
                    f"Unknown optimizer name {optimizer!r} for argument `optimizer`: expected a "
                    "name of keras_optlab.optimizers.list_optimizers() or an optimizer instance."
                ) from None
        _check_inner(optimizer)
        sync_period = _validation.check_int("sync_period", sync_period, low=1)
        slow_step_size = _validation.check_float(
            "slow_step_size", slow_step_size, low=0.0, high=1.0, low_open=True
        )
        if "learning_rate" in kwargs:
            raise TypeError(
                "Lookahead applies the learning rate of `optimizer`: set it "
                "there. Received: learning_rate="
                f"{kwargs['learning_rate']!r}"
            )
        # The rate is a callable: the inner optimizer's own rate. The
        # wrapper has no rate of its own to save.
        super().__init__(learning_rate=self._inner_rate, name=name, **kwargs)
        self.inner_optimizer = optimizer
        self.sync_period = sync_period
        self.slow_step_size = slow_step_size
        # Variables and the scaled rate are delegated (`InnerRate`); the
        # step count is this optimizer's own.
        self.scale_inner_rate()

    # --- state ---------------------------------------------------------------

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Created with the weights' values, not assigned them: on TensorFlow
        # the first compiled step may build the optimizer inside its trace,
        # where only an initializer runs once, before the step.
        self._slow_weights = [
            None if self._overwrite_variable_with_gradient(variable)
            else self.add_variable_from_reference(
                variable, name="slow", initializer=_copy_of(variable)
            )
            for variable in var_list
        ]
        self.inner_optimizer.build(var_list)

    # --- the step ------------------------------------------------------------

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        inner = self.inner_optimizer
        trainable_variables = list(trainable_variables)
        # What `inner.apply` would do, with the rate given here.
        grads = inner._clip_gradients(grads)
        inner._apply_weight_decay(trainable_variables)
        inner._backend_update_step(grads, trainable_variables, learning_rate)
        step = ops.convert_to_tensor(inner._iterations) + 1
        inner._iterations.assign_add(1)
        sync = ops.equal(ops.mod(step, self.sync_period), 0)
        if under_tf_strategy():
            self._tf_distributed_sync(trainable_variables, sync)
        elif keras.backend.backend() == "torch":
            self._sync_when(trainable_variables, sync)
        else:
            for variable in trainable_variables:
                self._sync(variable, sync)

    def _sync_when(self, trainable_variables, sync):
        """The synchronisation behind a value-returning conditional: a
        Python `if` on PyTorch, where the select would compute the moved
        slow weights at every step."""
        slows = [self._slow_weights[self._get_variable_index(v)] for v in trainable_variables]
        thetas = [ops.convert_to_tensor(v) for v in trainable_variables]
        phis = [ops.convert_to_tensor(slow) for slow in slows]

        def synchronised():
            new = [
                ops.add(phi, ops.multiply(ops.subtract(theta, phi),
                                          ops.cast(self.slow_step_size, theta.dtype)))
                for theta, phi in zip(thetas, phis)
            ]
            return new, new

        new_phis, new_thetas = ops.cond(sync, synchronised, lambda: (phis, thetas))
        for slow, value in zip(slows, new_phis):
            self.assign(slow, value)
        for variable, value in zip(trainable_variables, new_thetas):
            self.assign(variable, value)

    def _sync(self, variable, sync, slow=None):
        """phi += alpha (theta - phi); theta = phi, where `sync` holds, for
        one variable (selects on the scalar, which cost nothing under XLA
        where they keep the old value)."""
        if slow is None:
            slow = self._slow_weights[self._get_variable_index(variable)]
        dtype = variable.dtype
        theta = ops.convert_to_tensor(variable)
        phi = ops.convert_to_tensor(slow)
        moved = ops.add(
            phi, ops.multiply(ops.subtract(theta, phi), ops.cast(self.slow_step_size, dtype))
        )
        new_phi = ops.where(sync, moved, phi)
        self.assign(slow, new_phi)
        self.assign(variable, ops.where(sync, new_phi, theta))

    def _tf_distributed_sync(self, trainable_variables, sync):
        """The synchronisation under a `tf.distribute` strategy.

        Mirrored variables are written in cross-replica context, one
        component per device, as Keras' own updates are.
        """
        import tensorflow as tf

        tf_variables = [variable.value for variable in trainable_variables]
        slows = [
            self._slow_weights[self._get_variable_index(variable)]
            for variable in trainable_variables
        ]

        def cross_replica_sync(distribution, tf_variables, sync):
            for tf_variable, slow in zip(tf_variables, slows):
                distribution.extended.update(
                    tf_variable,
                    lambda component, sync, slow=slow: self._sync(component, sync, slow),
                    args=(sync,),
                    group=False,
                )

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica_sync, self._distribution_strategy, tf_variables, sync
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("learning_rate", None)
        config.update(
            {
                "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
                "sync_period": self.sync_period,
                "slow_step_size": self.slow_step_size,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.pop("learning_rate", None)
        config["optimizer"] = keras.saving.deserialize_keras_object(
            config["optimizer"], custom_objects=custom_objects
        )
        return cls(**config)


def _copy_of(variable):
    """An initializer returning a copy of `variable`'s value (a copy: on JAX
    a shared buffer would be donated twice by the train step)."""

    def initializer(shape, dtype=None):
        dtype = dtype or variable.dtype
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # Read eagerly, even when building inside a traced step: a
            # constant initial value can be lifted out of the trace (under
            # XLA a variable read cannot).
            with tf.init_scope():
                return tf.identity(tf.cast(variable.value, dtype))
        return ops.copy(ops.cast(ops.convert_to_tensor(variable), dtype))

    return initializer


def _check_inner(optimizer: Any) -> None:
    # Base-class features that `Optimizer.apply` runs and the wrapper, which
    # calls the inner optimizer's update directly, does not: refused there.
    check_inner("optimizer", optimizer, "Lookahead")
    if rate_already_scaled(optimizer):
        raise ValueError(
            "Argument `optimizer` is already wrapped by another Lookahead or "
            f"a Steered; pass a fresh one. Received: optimizer={optimizer.name!r}"
        )


# Arguments of `keras.optimizers.Optimizer` that belong to the Lookahead
# wrapper rather than to the optimizer it wraps: those refused on the inner
# optimizer, the EMA's settings and the name.
_LOOKAHEAD_OWN = (*WRAPPER_ONLY, "ema_momentum", "ema_overwrite_frequency", "name")


def _split_lookahead_arguments(kwargs: dict) -> tuple[dict, dict]:
    own = {key: kwargs.pop(key) for key in _LOOKAHEAD_OWN if key in kwargs}
    return own, kwargs


def lookahead(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    sync_period: int = 6,
    slow_step_size: float = 0.5,
    **kwargs: Any,
) -> Lookahead:
    """`Lookahead` around Adam.

    Adam is computed with float32 coefficients (keras_optlab's `AdaBound`
    with its bounds off, whose update is exactly Keras' `Adam` formula), so
    that it also moves bfloat16 variables, which Keras' `Adam` does not.
    For another inner optimizer, build `Lookahead(optimizer)` directly.

    Args:
        learning_rate: Adam's rate: a float >= 0, a schedule or a callable.
            Defaults to `0.001`.
        beta_1: Adam's first-moment decay, in [0, 1). Defaults to `0.9`.
        beta_2: Adam's second-moment decay, in [0, 1). Defaults to `0.999`.
        epsilon: Adam's epsilon, >= 0. Defaults to `1e-7`, as Keras' `Adam`.
        sync_period: See `Lookahead`. Defaults to `6`.
        slow_step_size: See `Lookahead`. Defaults to `0.5`.
        **kwargs: `use_ema`, `ema_momentum`, `ema_overwrite_frequency`,
            `gradient_accumulation_steps`, `loss_scale_factor` and `name`
            go to the `Lookahead`; the others (`weight_decay`, clipping) to
            Adam.
    """
    own, inner = _split_lookahead_arguments(kwargs)
    adam = float32_adam(learning_rate, beta_1, beta_2, epsilon, **inner)
    return Lookahead(adam, sync_period=sync_period, slow_step_size=slow_step_size, **own)


def ranger(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    sync_period: int = 6,
    slow_step_size: float = 0.5,
    **kwargs: Any,
) -> Lookahead:
    """Ranger: `Lookahead` around `RAdam` (Wright, 2019).

    Args:
        learning_rate: RAdam's rate: a float >= 0, a schedule or a callable.
            Defaults to `0.001`.
        beta_1: RAdam's first-moment decay, in [0, 1). Defaults to `0.9`.
        beta_2: RAdam's second-moment decay, in [0, 1). Defaults to `0.999`.
        epsilon: RAdam's epsilon, >= 0. Defaults to `1e-7`.
        sync_period: See `Lookahead`. Defaults to `6`, as Ranger.
        slow_step_size: See `Lookahead`. Defaults to `0.5`, as Ranger.
        **kwargs: `use_ema`, `ema_momentum`, `ema_overwrite_frequency`,
            `gradient_accumulation_steps`, `loss_scale_factor` and `name`
            go to the `Lookahead`; the others (`threshold`,
            `degenerated_to_sgd`, `weight_decay`, clipping) to `RAdam`.
    """
    own, inner = _split_lookahead_arguments(kwargs)
    radam = RAdam(
        learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
        epsilon=epsilon, **inner,
    )
    return Lookahead(radam, sync_period=sync_period, slow_step_size=slow_step_size, **own)
