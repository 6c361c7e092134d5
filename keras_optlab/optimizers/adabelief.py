"""AdaBelief: Adam whose step is scaled by the spread of the gradient
around its own moving average."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class AdaBelief(SteerableOptimizer):
    r"""AdaBelief (Zhuang et al., 2020), optionally rectified as RAdam.

    Adam divides its step by the root mean square of the gradient. AdaBelief
    divides it by the root mean square of $g_t - m_t$, the gap between the
    observed gradient and its moving average (the "belief"): where the
    gradient is steady it takes large steps, where it keeps contradicting
    its average it takes small ones.

    For each variable $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    s_t &= \beta_2 s_{t-1} + (1 - \beta_2) (g_t - m_t)^2 + \epsilon \\
    \hat m_t &= \frac{m_t}{1 - \beta_1^t}, \qquad
    \hat s_t = \frac{s_t}{1 - \beta_2^t} \\
    \theta_t &= \theta_{t-1} - \eta_t\, \frac{\hat m_t}{\sqrt{\hat s_t} + \epsilon}
    \end{aligned}
    $$

    With `amsgrad=True`, $s_t$ in $\hat s_t$ is replaced by its running
    maximum $\max(s_1, \dots, s_t)$. With `rectify=True`, RAdam's
    rectification applies (see `keras_optlab.optimizers.RAdam`): with
    $\rho_\infty = 2/(1-\beta_2) - 1$ and
    $\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)$, the step is
    $\eta_t r_t \hat m_t / (\sqrt{\hat s_t} + \epsilon)$ while
    $\rho_t \ge \rho_{\min}$, where
    $r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty /
    ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}$, and before that the momentum
    step $\eta_t \hat m_t$ (or none, with `degenerated_to_sgd=False`).

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $\rho_{\min}$ `threshold`.

    Departures and conventions:

    - **Rectification is off by default**, as in the paper's algorithm.
      TensorFlow Addons' `AdaBelief` (and the authors' packages from their
      version 0.1) rectified by default: pass `rectify=True`, or use the
      registry name `"rectified_adabelief"`. Its `sma_threshold` is called
      `threshold` here, as in `RAdam`; the default, 5, is the same.
    - **Epsilon** defaults to `1e-14`, as in TensorFlow Addons and the
      authors' TensorFlow package (their PyTorch package uses `1e-16`). It
      is added twice, as in the paper: inside $s_t$, where it is a floor
      ($s_t \ge \epsilon / (1 - \beta_2)$ in the long run, reached when the
      gradient is steady), and beside $\sqrt{\hat s_t}$. In float32 the
      addition inside $s_t$ is lost whenever $s_t$ exceeds about
      $2^{24}\epsilon \approx 1.7 \times 10^{-7}$, a relative change below
      $10^{-7}$ that no float32 computation could keep. Near the floor it
      is kept, but float32 adds its own: $m_t$ stops a few ulps short of a
      perfectly steady $g$ (the increment $(1-\beta_1)(g - m)$ rounds
      away), leaving up to $(2^{-23}|g| / (1-\beta_1))^2$ in $s_t$, which
      exceeds $\epsilon / (1-\beta_2)$ only for steady gradients above
      about 3 in size with the defaults. In float16 and
      bfloat16 variables (whose state has the variable's dtype) `1e-14`
      rounds to 0, so the floor is gone: keep optimizer state in float32
      (mixed precision) if the gradient can be perfectly steady. Unlike
      TensorFlow Addons, `epsilon=0` means 0, not Keras' `1e-7`.
    - **Warmup** (TensorFlow Addons' `total_steps`, `warmup_proportion`,
      `min_lr`) is not built in: give a schedule instead. TensorFlow Addons'
      warmup then linear decay is
      `keras_optlab.schedules.Warmup(keras.optimizers.schedules.PolynomialDecay(lr, total_steps - W, min_lr), W)`
      with `W = warmup_proportion * total_steps`, up to a shift by one
      step (TensorFlow Addons counted steps from 1).
    - **Weight decay** (`weight_decay`) is decoupled and applied by the
      Keras base class: $\theta \leftarrow \theta - \eta_t \lambda \theta$
      before the update, which is what TensorFlow Addons' `weight_decay`
      did. A schedule for it, which TensorFlow Addons accepted, is not.
    - **Non-finite gradients** are not filtered: they reach $m_t$ and $s_t$.
      Wrap the optimizer in `keras.optimizers.LossScaleOptimizer` to skip
      such steps without touching any state.

    Reference:
        Juntang Zhuang, Tommy Tang, Yifan Ding, Sekhar Tatikonda, Nicha
        Dvornek, Xenophon Papademetris, James S. Duncan. "AdaBelief
        Optimizer: Adapting Stepsizes by the Belief in Observed Gradients".
        NeurIPS 2020. arXiv:2010.07468.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import AdaBelief

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=AdaBelief(learning_rate=1e-3, rectify=True),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the belief $s_t$, in [0, 1). Defaults to
            `0.999`.
        epsilon: Added to $s_t$ at every step and to $\sqrt{\hat s_t}$,
            >= 0. Defaults to `1e-14`.
        amsgrad: Use the running maximum of $s_t$. Defaults to `False`.
        rectify: Apply RAdam's rectification. Defaults to `False`.
        threshold: With `rectify=True`, the value of $\rho_t$ from which the
            rectified adaptive step is taken, >= 4. Defaults to `5`.
        degenerated_to_sgd: With `rectify=True`, below the threshold take
            the momentum step $\eta_t \hat m_t$ (`True`) or none (`False`).
            Defaults to `True`.
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
        epsilon: float = 1e-14,
        amsgrad: bool = False,
        rectify: bool = False,
        threshold: float = 5.0,
        degenerated_to_sgd: bool = True,
        name: str = "adabelief",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.amsgrad = _validation.check_bool("amsgrad", amsgrad)
        self.rectify = _validation.check_bool("rectify", rectify)
        self.threshold = _validation.check_float("threshold", threshold, low=4.0)
        self.degenerated_to_sgd = _validation.check_bool(
            "degenerated_to_sgd", degenerated_to_sgd
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._beliefs = self.add_optimizer_variables(
            var_list, ["momentum", "belief"]
        )
        if self.amsgrad:
            self._max_beliefs = self.add_optimizer_variables(var_list, "max_belief")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        belief = self._beliefs[index]

        self.assign_add(
            momentum,
            ops.multiply(ops.subtract(gradient, momentum), ops.cast(1.0 - self.beta_1, dtype)),
        )
        surprise = ops.square(ops.subtract(gradient, momentum))
        self.assign_add(
            belief,
            ops.add(
                ops.multiply(ops.subtract(surprise, belief), ops.cast(1.0 - self.beta_2, dtype)),
                ops.cast(self.epsilon, dtype),
            ),
        )
        if self.amsgrad:
            max_belief = self._max_beliefs[index]
            self.assign(max_belief, ops.maximum(max_belief, belief))
            belief = max_belief

        # Scalar coefficients in float32 whatever the variable's dtype. The
        # bias correction of s is moved out of the square root:
        # m_hat / (sqrt(s_hat) + eps) = m sqrt(c2) / (c1 (sqrt(s) + eps sqrt(c2))).
        step = _numerics.step_count(self)
        correction_1, correction_2 = _numerics.bias_corrections(self.beta_1, self.beta_2, step)
        root_2 = ops.sqrt(correction_2)
        learning_rate = ops.cast(learning_rate, "float32")
        adaptive_scale = learning_rate * root_2 / correction_1
        epsilon = self.epsilon * root_2

        if not self.rectify:
            denominator = ops.add(ops.sqrt(belief), ops.cast(epsilon, dtype))
            self.assign_sub(
                variable,
                ops.multiply(ops.divide(momentum, denominator), ops.cast(adaptive_scale, dtype)),
            )
            return

        rectified, rectifier = _numerics.radam_rectifier(self.beta_2, step, self.threshold)
        plain_scale = learning_rate / correction_1 if self.degenerated_to_sgd else 0.0
        # Both regimes as one quotient, m * scale / (sqrt(s) * weight + shift):
        # rectified, (r_t * adaptive_scale, 1, eps'); below the threshold,
        # (plain_scale, 0, 1), which is the momentum step. One pass over the
        # arrays, as for the plain update.
        scale = ops.where(rectified, adaptive_scale * rectifier, plain_scale)
        weight = ops.where(rectified, 1.0, 0.0)
        shift = ops.where(rectified, epsilon, 1.0)
        denominator = ops.add(
            ops.multiply(ops.sqrt(belief), ops.cast(weight, dtype)), ops.cast(shift, dtype)
        )
        self.assign_sub(
            variable, ops.multiply(ops.divide(momentum, denominator), ops.cast(scale, dtype))
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsgrad": self.amsgrad,
                "rectify": self.rectify,
                "threshold": self.threshold,
                "degenerated_to_sgd": self.degenerated_to_sgd,
            }
        )
        return config
