"""Yogi: Adam with an additive, sign-controlled second moment."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class Yogi(SteerableOptimizer):
    r"""Yogi (Zaheer et al., 2018).

    Adam's second moment $v_t$ moves a fixed fraction of the way to $g_t^2$
    at every step, so one large gradient raises it fast and it then forgets
    that gradient at the rate $\beta_2$: the effective learning rate can grow
    quickly after it. Yogi changes $v_t$ additively, by $(1-\beta_2) g_t^2$,
    in the direction of $g_t^2$: $v_t$ rises when $g_t^2 > v_{t-1}$ and falls
    when $g_t^2 < v_{t-1}$, and the size of the change depends on $g_t^2$
    only, not on the gap, so the effective learning rate changes slowly.

    For each variable $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad m_0 = 0 \\
    v_t &= v_{t-1} - (1 - \beta_2)\, \operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2,
        \qquad v_0 = v_{\text{init}} \\
    \eta'_t &= \eta_t \,\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \quad\text{(with `bias_correction=True`; else } \eta'_t = \eta_t) \\
    \theta_t &= \theta_{t-1} - \eta'_t\, \frac{m_t}{\sqrt{v_t} + \epsilon}
    \end{aligned}
    $$

    With `activation="tanh"` the sign is replaced by the smooth
    $\tanh(10\,(g_t^2 - v_{t-1}))$, as in TensorFlow Addons. With L1 or L2
    strengths $\lambda_1, \lambda_2 > 0$, the step above gives $\tilde\theta$
    and a proximal step follows, with the per-coordinate rate
    $a = \eta'_t / (\sqrt{v_t} + \epsilon)$:
    $\theta_t = \operatorname{sign}(\tilde\theta)\,
    \max(|\tilde\theta| - \lambda_1 a, 0) / (1 + \lambda_2 a)$.

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $v_{\text{init}}$ `initial_accumulator_value`,
    $\lambda_1$ `l1_regularization_strength`, $\lambda_2$
    `l2_regularization_strength`.

    Departures and conventions:

    - **Bias correction.** The paper states Algorithm 2 without Adam's
      debiasing. TensorFlow Addons' `Yogi` multiplied the learning rate by
      Adam's factor $\sqrt{1 - \beta_2^t} / (1 - \beta_1^t)$ although $v$
      starts at $v_{\text{init}}$, not at 0; this class does the same by
      default, so that models ported from TensorFlow Addons train alike.
      `bias_correction=False` gives the paper's form.
    - **Argument names** are Keras' `beta_1`, `beta_2` where TensorFlow
      Addons had `beta1`, `beta2`. Its defaults are kept: learning rate
      0.01, $\epsilon = 10^{-3}$ (the paper's recommendation: Yogi wants a
      larger $\epsilon$ than Adam), $v_{\text{init}} = 10^{-6}$.
    - **Weight decay** (`weight_decay`) is decoupled, as in AdamW, and is
      applied by the Keras base class before the update; it is independent
      of the proximal L1/L2 step, which TensorFlow Addons also had.
    - **Non-finite gradients** are not filtered: they reach $m_t$ and $v_t$.
      Wrap the optimizer in `keras.optimizers.LossScaleOptimizer` to skip
      such steps without touching any state.

    Reference:
        Manzil Zaheer, Sashank J. Reddi, Devendra Sachan, Satyen Kale,
        Sanjiv Kumar. "Adaptive Methods for Nonconvex Optimization".
        NeurIPS 2018.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import Yogi

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=Yogi(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.01`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Sets the size $(1-\beta_2) g_t^2$ of each change of the
            second moment, in [0, 1). Defaults to `0.999`.
        epsilon: Added to $\sqrt{v_t}$, >= 0. Defaults to `1e-3`.
        initial_accumulator_value: The second moment's starting value
            $v_{\text{init}}$, >= 0. Defaults to `1e-6`.
        activation: `"sign"` (the paper) or `"tanh"` (the smooth
            $\tanh(10\,(g_t^2 - v_{t-1}))$ of TensorFlow Addons). Defaults to
            `"sign"`.
        l1_regularization_strength: $\lambda_1$ of the proximal step, >= 0.
            Defaults to `0.0`.
        l2_regularization_strength: $\lambda_2$ of the proximal step, >= 0.
            Defaults to `0.0`.
        bias_correction: Multiply the rate by $\sqrt{1-\beta_2^t} /
            (1-\beta_1^t)$ as TensorFlow Addons did (`True`), or not, as the
            paper's Algorithm 2 (`False`). Defaults to `True`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-3,
        initial_accumulator_value: float = 1e-6,
        activation: str = "sign",
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        bias_correction: bool = True,
        name: str = "yogi",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.initial_accumulator_value = _validation.check_float(
            "initial_accumulator_value", initial_accumulator_value, low=0.0
        )
        self.activation = _validation.check_choice("activation", activation, ("sign", "tanh"))
        self.l1_regularization_strength = _validation.check_float(
            "l1_regularization_strength", l1_regularization_strength, low=0.0
        )
        self.l2_regularization_strength = _validation.check_float(
            "l2_regularization_strength", l2_regularization_strength, low=0.0
        )
        self.bias_correction = _validation.check_bool("bias_correction", bias_correction)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._velocities = self.add_optimizer_variables(
            var_list,
            "velocity",
            initializer=keras.initializers.Constant(self.initial_accumulator_value),
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]

        self.assign_add(
            momentum,
            ops.multiply(ops.subtract(gradient, momentum), ops.cast(1.0 - self.beta_1, dtype)),
        )
        squared = ops.square(gradient)
        gap = ops.subtract(squared, velocity)
        if self.activation == "sign":
            direction = ops.sign(gap)
        else:
            direction = ops.tanh(ops.multiply(gap, ops.cast(10.0, dtype)))
        self.assign_add(
            velocity,
            ops.multiply(ops.multiply(direction, squared), ops.cast(1.0 - self.beta_2, dtype)),
        )

        # The scalar rate in float32 whatever the variable's dtype.
        rate = ops.cast(learning_rate, "float32")
        if self.bias_correction:
            correction_1, correction_2 = _numerics.bias_corrections(
                self.beta_1, self.beta_2, _numerics.step_count(self)
            )
            rate = rate * ops.sqrt(correction_2) / correction_1
        rate = ops.cast(rate, dtype)

        denominator = ops.add(ops.sqrt(velocity), ops.cast(self.epsilon, dtype))
        l1, l2 = self.l1_regularization_strength, self.l2_regularization_strength
        if l1 == 0.0 and l2 == 0.0:
            self.assign_sub(variable, ops.multiply(ops.divide(momentum, denominator), rate))
            return
        coordinate_rate = ops.divide(rate, denominator)
        value = ops.subtract(variable, ops.multiply(coordinate_rate, momentum))
        if l1 > 0.0:
            shrunk = ops.maximum(
                ops.subtract(ops.abs(value), ops.multiply(coordinate_rate, ops.cast(l1, dtype))),
                ops.cast(0.0, dtype),
            )
            value = ops.multiply(ops.sign(value), shrunk)
        if l2 > 0.0:
            value = ops.divide(
                value, ops.add(ops.multiply(coordinate_rate, ops.cast(l2, dtype)), ops.cast(1.0, dtype))
            )
        self.assign(variable, value)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value,
                "activation": self.activation,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "bias_correction": self.bias_correction,
            }
        )
        return config
