"""Proximal Adagrad: Adagrad's step followed by the proximal step of L1 and L2
penalties (forward-backward splitting)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class ProximalAdagrad(SteerableOptimizer):
    r"""Proximal Adagrad (Duchi & Singer, 2009, with Adagrad's rates).

    Forward-backward splitting takes a plain gradient step on the loss
    (forward), then solves the proximal problem of the regulariser around
    the point reached (backward). For $\ell_1 \lVert\theta\rVert_1 +
    \tfrac{\ell_2}{2} \lVert\theta\rVert_2^2$ that problem has a closed
    form: soft-thresholding followed by a shrinkage. Unlike a subgradient of
    $\lvert\theta\rvert$ added to the loss, the soft-threshold sets weights
    exactly to zero and keeps them there while their gradient stays below
    the threshold, so the L1 penalty really gives sparse weights. The step
    size of each coordinate is Adagrad's.

    For each variable $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$,
    element by element:

    $$
    \begin{aligned}
    G_t &= G_{t-1} + g_t^2, \qquad G_0 = G_{\text{init}}, \qquad
    \eta_{t,i} = \frac{\eta_t}{\sqrt{G_{t,i}}} \\
    p_t &= \theta_{t-1} - \eta_{t,i}\, g_t \\
    \theta_t &= \frac{\operatorname{sign}(p_t)\,
        \max\bigl(\lvert p_t\rvert - \eta_{t,i}\, \ell_1,\ 0\bigr)}
        {1 + \eta_{t,i}\, \ell_2}
    \end{aligned}
    $$

    Symbols to arguments: $\eta_t$ is `learning_rate` (times `lr_scale`),
    $G_{\text{init}}$ is `initial_accumulator_value`, $\ell_1$ is
    `l1_regularization_strength` and $\ell_2$ is
    `l2_regularization_strength`. This is the update of TensorFlow's
    `ApplyProximalAdagrad` kernel, which TensorFlow Addons'
    `ProximalAdagrad` called; with $\ell_1 = \ell_2 = 0$ it is Adagrad
    without an epsilon.

    Departures:

    - **`initial_accumulator_value`** must be > 0. TensorFlow Addons
      accepted 0, which divides by zero at the first step of any coordinate
      whose gradient is zero.
    - **No epsilon**, as in TensorFlow's kernel: $G_t \ge G_{\text{init}} >
      0$ already keeps the rates finite.
    - **Weight decay** (`weight_decay`) is decoupled and applied by the Keras
      base class before the update above; it is separate from
      `l2_regularization_strength`, which acts inside the proximal step.
    - **Non-finite gradients** are not filtered: they reach $G_t$. Wrap the
      optimizer in `keras.optimizers.LossScaleOptimizer` to skip such steps
      without touching any state.

    Reference:
        John Duchi, Yoram Singer. "Efficient Online and Batch Learning Using
        Forward Backward Splitting". JMLR 10, 2009 (NeurIPS 2009 as
        "Efficient Learning using Forward-Backward Splitting"). Rates from
        John Duchi, Elad Hazan, Yoram Singer. "Adaptive Subgradient Methods
        for Online Learning and Stochastic Optimization". JMLR 12, 2011.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import ProximalAdagrad

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(
        optimizer=ProximalAdagrad(learning_rate=0.05, l1_regularization_strength=1e-4),
        loss="sparse_categorical_crossentropy",
    )
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        initial_accumulator_value: Starting value of every accumulator $G$,
            > 0. Defaults to `0.1`.
        l1_regularization_strength: $\ell_1$, >= 0. Defaults to `0.0`.
        l2_regularization_strength: $\ell_2$, >= 0. Defaults to `0.0`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        name: str = "proximal_adagrad",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = _validation.check_float(
            "initial_accumulator_value", initial_accumulator_value, low=0.0, low_open=True
        )
        self.l1_regularization_strength = _validation.check_float(
            "l1_regularization_strength", l1_regularization_strength, low=0.0
        )
        self.l2_regularization_strength = _validation.check_float(
            "l2_regularization_strength", l2_regularization_strength, low=0.0
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        initializer = keras.initializers.Constant(self.initial_accumulator_value)
        self._accumulators = self.add_optimizer_variables(
            var_list, "accumulator", initializer=initializer
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(accumulator, ops.square(gradient))

        learning_rate = ops.cast(learning_rate, "float32")
        rate = ops.multiply(
            ops.rsqrt(accumulator), ops.cast(learning_rate, dtype)
        )
        proximal_point = ops.subtract(variable, ops.multiply(rate, gradient))
        # The penalties are constants: a zero one costs nothing in the step.
        if self.l1_regularization_strength > 0.0:
            # sign(p) max(|p| - a, 0) == p - clip(p, -a, a), zeros exactly
            # where |p| <= a.
            threshold = ops.multiply(
                rate, ops.cast(self.l1_regularization_strength, dtype)
            )
            proximal_point = ops.subtract(
                proximal_point,
                ops.minimum(ops.maximum(proximal_point, ops.negative(threshold)), threshold),
            )
        if self.l2_regularization_strength > 0.0:
            proximal_point = ops.divide(
                proximal_point,
                ops.add(
                    ops.multiply(rate, ops.cast(self.l2_regularization_strength, dtype)),
                    ops.cast(1.0, dtype),
                ),
            )
        self.assign(variable, proximal_point)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
            }
        )
        return config
