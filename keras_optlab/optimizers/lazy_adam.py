"""LazyAdam: Adam that updates only the rows a sparse gradient touches."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


def _indexed_slices_type():
    """`tf.IndexedSlices` on the TensorFlow backend, else `None` (JAX and
    PyTorch hand Keras optimizers dense gradients only)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.IndexedSlices


@keras.saving.register_keras_serializable(package="keras_optlab")
class LazyAdam(SteerableOptimizer):
    r"""Adam applied lazily to sparse gradients (TensorFlow Addons' LazyAdam).

    An embedding table of $N$ rows receives, from a batch, a gradient on the
    few rows the batch looks up. Adam decays the moments of *every* row at
    every step, so each step costs $O(N)$ however few rows were used, and
    rows that were not looked up still move (their momentum keeps pushing).
    LazyAdam updates the moments and the weights of the looked-up rows only:
    a step costs time in proportion to the rows touched, and the other rows
    keep their $m$, $v$ and weights exactly.

    For a sparse gradient $g_t$ on the set of rows $R_t$ at step
    $t = 1, 2, \dots$ (duplicate row indices in the gradient are summed
    first), for each row $r \in R_t$:

    $$
    \begin{aligned}
    m_{t,r} &= \beta_1 m_{t-1,r} + (1 - \beta_1) g_{t,r}, \qquad
    v_{t,r} = \beta_2 v_{t-1,r} + (1 - \beta_2) g_{t,r}^2 \\
    \theta_{t,r} &= \theta_{t-1,r} - \eta_t\,
        \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
        \frac{m_{t,r}}{\sqrt{v_{t,r}} + \epsilon}
    \end{aligned}
    $$

    and $m$, $v$, $\theta$ are left unchanged on rows outside $R_t$. Here $t$
    is the optimizer's global step, not a per-row count of updates. With a
    dense gradient every row is in $R_t$ and the update is Keras' `Adam`
    (the same equations as `keras.optimizers.Adam.update_step`, with
    `amsgrad` likewise: $\hat v_t = \max(\hat v_{t-1}, v_t)$ replaces $v_t$
    in the denominator, row by row in the sparse case).

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`.

    When gradients are sparse:

    - **Only on TensorFlow.** A sparse gradient is a `tf.IndexedSlices`, as
      TensorFlow differentiates a gather (the lookup of
      `keras.layers.Embedding`). It stays sparse through `clipnorm`,
      `clipvalue`, `keras.optimizers.LossScaleOptimizer`,
      `tf.distribute.MirroredStrategy` (whose all-reduce concatenates the
      replicas' slices) and XLA (`jit_compile=True`). JAX and PyTorch have no
      sparse gradients in Keras: **on those backends LazyAdam is Adam**.
    - **Densified by Keras.** `global_clipnorm` and
      `gradient_accumulation_steps` turn the gradient into a dense tensor
      before it reaches this optimizer, which then takes Adam's dense step.
    - **Weight decay** (`weight_decay`) is decoupled and applied by the
      Keras base class to the whole variable, untouched rows included:
      $\theta \leftarrow \theta - \eta_t \lambda \theta$ before the update
      above. TensorFlow Addons' LazyAdam had no weight decay.

    Departures and conventions:

    - **Epsilon** is added to $\sqrt{v_t}$ before the bias correction
      $\sqrt{1 - \beta_2^t}$ is applied, as in TensorFlow Addons and Keras'
      `Adam`; the paper adds it to $\sqrt{\hat v_t}$. Defaults are
      TensorFlow Addons' (and Keras' `Adam`'s): `epsilon=1e-7` where the
      paper has `1e-8`.
    - **Bias corrections** $1 - \beta^t$ are computed in float32 as
      $-\operatorname{expm1}(t \log\beta)$. Keras' `Adam` raises
      $\beta$ to the power $t$ in the variable's dtype, which in float32
      puts a relative error of about $5 \times 10^{-6}$ on its step size;
      the two therefore agree to that order, not bit for bit.
    - **Non-finite gradients** are not filtered: they reach $m_t$ and $v_t$
      (of the touched rows only, for a sparse gradient). Wrap the optimizer
      in `keras.optimizers.LossScaleOptimizer` (as `mixed_float16` does) to
      skip such steps without touching any state.

    Reference:
        Diederik P. Kingma, Jimmy Ba. "Adam: A Method for Stochastic
        Optimization". ICLR 2015. arXiv:1412.6980. The lazy sparse update is
        TensorFlow Addons' `tfa.optimizers.LazyAdam` (and TensorFlow 1's
        `tf.contrib.opt.LazyAdamOptimizer`).

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import LazyAdam

    model = keras.Sequential([
        keras.Input((4,), dtype="int32"),
        keras.layers.Embedding(10_000, 16),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=LazyAdam(learning_rate=1e-3), loss="mse")
    ```

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.999`.
        epsilon: Added to $\sqrt{v_t}$ for numerical stability, >= 0.
            Defaults to `1e-7`, as TensorFlow Addons and Keras' `Adam`.
        amsgrad: Whether to divide by the running maximum of $v_t$ (AMSGrad,
            Reddi et al., 2018) instead of $v_t$. Defaults to `False`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        name: str = "lazy_adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.amsgrad = _validation.check_bool("amsgrad", amsgrad)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        if self.amsgrad:
            self._velocity_hats = self.add_optimizer_variables(var_list, "velocity_hat")

    def _step_size(self, learning_rate, dtype):
        """`eta * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, formed in float32."""
        correction_1, correction_2 = _numerics.bias_corrections(
            self.beta_1, self.beta_2, _numerics.step_count(self)
        )
        learning_rate = ops.cast(learning_rate, "float32")
        return ops.cast(learning_rate * ops.sqrt(correction_2) / correction_1, dtype)

    def update_step(self, gradient, variable, learning_rate):
        indexed_slices = _indexed_slices_type()
        if indexed_slices is not None and isinstance(gradient, indexed_slices):
            self._sparse_update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        _numerics.update_moments(
            self, momentum, velocity, gradient, self.beta_1, self.beta_2
        )
        if self.amsgrad:
            velocity_hat = self._velocity_hats[index]
            self.assign(velocity_hat, ops.maximum(velocity_hat, velocity))
            velocity = velocity_hat
        step_size = self._step_size(learning_rate, dtype)
        self.assign_sub(
            variable,
            ops.divide(
                ops.multiply(momentum, step_size),
                ops.add(ops.sqrt(velocity), ops.cast(self.epsilon, dtype)),
            ),
        )

    def _sparse_update_step(self, gradient, variable, learning_rate):
        """The lazy step for a `tf.IndexedSlices` gradient (TensorFlow only).

        State changes through Keras' `assign`/`assign_sub`, which scatter an
        `IndexedSlices` value into the variable's rows.
        """
        import tensorflow as tf

        dtype = variable.dtype
        # Rows looked up several times in a batch arrive as several slices;
        # the gradient of such a row is their sum.
        rows, positions = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), positions, tf.shape(rows)[0]
        )
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]

        def gather(state):
            return tf.gather(state.value, rows)

        def scatter(state, new_rows):
            self.assign(state, tf.IndexedSlices(new_rows, rows, gradient.dense_shape))

        rate_1 = tf.constant(1.0 - self.beta_1, dtype)
        rate_2 = tf.constant(1.0 - self.beta_2, dtype)
        old_momentum = gather(momentum)
        old_velocity = gather(velocity)
        # Same arithmetic as the dense step: m + (1 - beta)(g - m).
        new_momentum = old_momentum + (values - old_momentum) * rate_1
        new_velocity = old_velocity + (tf.square(values) - old_velocity) * rate_2
        scatter(momentum, new_momentum)
        scatter(velocity, new_velocity)
        denominator_rows = new_velocity
        if self.amsgrad:
            velocity_hat = self._velocity_hats[index]
            denominator_rows = tf.maximum(gather(velocity_hat), new_velocity)
            scatter(velocity_hat, denominator_rows)
        step_size = self._step_size(learning_rate, dtype)
        delta = (new_momentum * step_size) / (
            tf.sqrt(denominator_rows) + tf.constant(self.epsilon, dtype)
        )
        self.assign_sub(variable, tf.IndexedSlices(delta, rows, gradient.dense_shape))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsgrad": self.amsgrad,
            }
        )
        return config
