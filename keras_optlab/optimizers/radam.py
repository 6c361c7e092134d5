"""RAdam: Adam with the variance of its adaptive learning rate rectified."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class RAdam(SteerableOptimizer):
    r"""Rectified Adam (Liu et al., 2020).

    Early in training Adam's second-moment estimate rests on a few gradients,
    so its adaptive learning rate has a large, even unbounded, variance. RAdam
    multiplies the adaptive step by a factor $r_t$ that undoes this variance,
    and while the variance is not yet tractable it takes an un-adapted
    momentum step instead. It does the work of a learning-rate warmup without
    a warmup length to tune.

    For each variable $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
    \hat m_t = \frac{m_t}{1 - \beta_1^t} \\
    \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
    \text{if } \rho_t \ge \rho_{\min}: \quad
    r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\,\rho_\infty}
                       {(\rho_\infty - 4)(\rho_\infty - 2)\,\rho_t}}, \qquad
    \theta_t = \theta_{t-1} - \eta_t\, r_t\, \hat m_t\,
        \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} \\
    \text{otherwise}: \quad
    \theta_t &= \theta_{t-1} - \eta_t\, \hat m_t
        \quad\text{(or no change if `degenerated_to_sgd=False`)}
    \end{aligned}
    $$

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $\rho_{\min}$ `threshold`.

    Departures and conventions:

    - **Threshold.** The paper rectifies when $\rho_t > 4$; the authors' code
      (and this class, by default) when $\rho_t \ge 5$. With the defaults
      ($\beta_2 = 0.999$) $\rho_t$ passes 5 at step 6 and 4 at step 5. If
      $\rho_\infty < $ `threshold` (small `beta_2`), the rectified step never
      happens.
    - **Epsilon** is added to $\sqrt{v_t}$ before the bias correction
      $\sqrt{1 - \beta_2^t}$ is applied, as in the authors' code and in
      Keras' `Adam`; PyTorch's `RAdam` adds it to $\sqrt{\hat v_t}$. The two
      differ by a factor $\sqrt{1 - \beta_2^t}$ on $\epsilon$ only.
    - **Weight decay** (`weight_decay`) is decoupled, as in AdamW, and is
      applied by the Keras base class: $\theta \leftarrow \theta - \eta_t
      \lambda \theta$ before the update above.
    - **Non-finite gradients** are not filtered: they reach $m_t$ and $v_t$.
      Wrap the optimizer in `keras.optimizers.LossScaleOptimizer` (as
      `mixed_float16` does) to skip such steps without touching any state.

    Reference:
        Liyuan Liu, Haoming Jiang, Pengcheng He, Weizhu Chen, Xiaodong Liu,
        Jianfeng Gao, Jiawei Han. "On the Variance of the Adaptive Learning
        Rate and Beyond". ICLR 2020. arXiv:1908.03265.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import RAdam

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=RAdam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.999`.
        epsilon: Added to $\sqrt{v_t}$ for numerical stability, >= 0.
            Defaults to `1e-7`, as Keras' `Adam`.
        threshold: The value of $\rho_t$ from which the rectified adaptive
            step is taken, >= 4 (below 4, $r_t$ is not real). Defaults to `5`,
            the authors' code; the paper uses 4.
        degenerated_to_sgd: Below the threshold, take the momentum step
            $\eta_t \hat m_t$ if `True`, or leave the variable unchanged if
            `False` (the moments are updated in both cases). Defaults to
            `True`.
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
        threshold: float = 5.0,
        degenerated_to_sgd: bool = True,
        name: str = "radam",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.threshold = _validation.check_float("threshold", threshold, low=4.0)
        self.degenerated_to_sgd = _validation.check_bool(
            "degenerated_to_sgd", degenerated_to_sgd
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        _numerics.update_moments(
            self, momentum, velocity, gradient, self.beta_1, self.beta_2
        )

        # Scalar coefficients in float32 whatever the variable's dtype; see
        # _numerics for why rho_t is not formed by the textbook expression.
        step = _numerics.step_count(self)
        correction_1, correction_2 = _numerics.bias_corrections(
            self.beta_1, self.beta_2, step
        )
        rectify, rectifier = _numerics.radam_rectifier(self.beta_2, step, self.threshold)

        learning_rate = ops.cast(learning_rate, "float32")
        adaptive_scale = learning_rate * rectifier * ops.sqrt(correction_2) / correction_1
        plain_scale = learning_rate / correction_1 if self.degenerated_to_sgd else 0.0
        adaptive_scale = ops.cast(ops.where(rectify, adaptive_scale, 0.0), dtype)
        plain_scale = ops.cast(ops.where(rectify, 0.0, plain_scale), dtype)

        denominator = ops.add(ops.sqrt(velocity), ops.cast(self.epsilon, dtype))
        self.assign_sub(
            variable,
            ops.add(
                ops.multiply(ops.divide(momentum, denominator), adaptive_scale),
                ops.multiply(momentum, plain_scale),
            ),
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "threshold": self.threshold,
                "degenerated_to_sgd": self.degenerated_to_sgd,
            }
        )
        return config
