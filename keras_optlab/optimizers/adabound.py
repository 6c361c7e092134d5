"""AdaBound and AMSBound: Adam whose per-element step is clipped between
bounds that close in on a fixed SGD rate."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


def _initial_rate(learning_rate: Any) -> float:
    """The learning rate at step 0, without `lr_scale`, as a Python float."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        value = learning_rate(0)
    elif callable(learning_rate):
        value = learning_rate()
    else:
        value = learning_rate
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


@keras.saving.register_keras_serializable(package="keras_optlab")
class AdaBound(SteerableOptimizer):
    r"""AdaBound and AMSBound (Luo et al., 2019).

    Adam's per-element step size $\alpha_t / (\sqrt{v_t} + \epsilon)$ is
    clipped into $[\eta_l(t), \eta_u(t)]$. Both bounds start far apart (0 and
    $\infty$) and converge to the same `final_lr`, so the method starts like
    Adam and ends like SGD (with momentum $\beta_1$, as a moving average)
    at rate `final_lr`, smoothly instead of at a switch. AMSBound uses
    AMSGrad's running maximum of $v_t$ in the denominator.

    For each variable with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
    \hat v_t = \max(\hat v_{t-1}, v_t) \ \text{(AMSBound; else } \hat v_t = v_t) \\
    \alpha_t &= \eta_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}, \qquad
    \eta^*_t = \eta_{\text{final}} \frac{\eta_t}{\eta_0} \\
    \eta_l(t) &= \eta^*_t \Big(1 - \frac{1}{\gamma t + 1}\Big), \qquad
    \eta_u(t) = \eta^*_t \Big(1 + \frac{1}{\gamma t}\Big) \\
    \theta_t &= \theta_{t-1} - \operatorname{clip}\Big(
        \frac{\alpha_t}{\sqrt{\hat v_t} + \epsilon},\ \eta_l(t),\ \eta_u(t)\Big)
        \odot m_t
    \end{aligned}
    $$

    Symbols map to arguments: $\eta_t$ is `learning_rate` at step $t$ (times
    `lr_scale`), $\eta_0$ the learning rate given at construction (its value
    at step 0 for a schedule), $\eta_{\text{final}}$ `final_lr`, $\gamma$
    `gamma`, $\beta_1$ `beta_1`, $\beta_2$ `beta_2`, $\epsilon$ `epsilon`.

    Departures and conventions:

    - **Bias correction.** The paper's Algorithm 2 divides the clipped step
      by $\sqrt{t}$ and corrects no moment. This class follows the authors'
      code (github.com/Luolc/AdaBound), as most ports do: Adam's bias
      corrections are folded into $\alpha_t$, and the clipped quantity
      multiplies the uncorrected $m_t$. With the bounds off the update is
      exactly Keras' `Adam`.
    - **Scaled final rate.** As in the authors' code, the bounds follow the
      learning rate: $\eta^*_t = \eta_{\text{final}}\,\eta_t/\eta_0$. A
      schedule, a plateau callback (through `lr_scale`) or a new
      `learning_rate` therefore lowers the SGD rate the bounds converge to
      in proportion; with a constant rate $\eta^*_t = \eta_{\text{final}}$.
    - **Epsilon** is added to $\sqrt{\hat v_t}$ before the bias correction is
      applied, as in the authors' code and Keras' `Adam`.
    - `final_lr=None` turns the bounds off: the update is Adam's, computed
      with float32 coefficients (Keras' `Adam` computes them in the
      variable's dtype, in which `beta_2=0.999` rounds to 1 for bfloat16).
    - **Non-finite gradients** reach $m_t$ and $v_t$; wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` to skip such steps.

    Reference:
        Liangchen Luo, Yuanhao Xiong, Yan Liu, Xu Sun. "Adaptive Gradient
        Methods with Dynamic Bound of Learning Rate". ICLR 2019.
        arXiv:1902.09843.

    Example:

    ```python
    from keras_optlab.optimizers import AdaBound
    optimizer = AdaBound(learning_rate=1e-3, final_lr=0.1)
    amsbound = AdaBound(learning_rate=1e-3, final_lr=0.1, amsbound=True)
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate. Defaults to `0.001`.
        final_lr: The SGD rate both bounds converge to, >= 0, or `None` for
            no bounds. Defaults to `0.1`, the authors' default.
        gamma: Convergence speed of the bounds, > 0: the bounds are within
            a factor 2 of `final_lr` from step $1/\gamma$. Defaults to
            `1e-3`, the authors' default.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.999`.
        epsilon: Added to $\sqrt{\hat v_t}$, >= 0. Defaults to `1e-8`, the
            authors' default, so that runs compare with the paper's (Keras'
            `Adam` uses `1e-7`; pass it to match Keras).
        amsbound: Use the running maximum of $v_t$ (AMSBound). Defaults to
            `False`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        final_lr: float | None = 0.1,
        gamma: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        amsbound: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        amsbound = _validation.check_bool("amsbound", amsbound)
        if name is None:
            name = "amsbound" if amsbound else "adabound"
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.final_lr = (
            None if final_lr is None else _validation.check_float("final_lr", final_lr, low=0.0)
        )
        self.gamma = _validation.check_float("gamma", gamma, low=0.0, low_open=True)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.amsbound = amsbound
        self._initial_learning_rate = _initial_rate(self._learning_rate)

    # Attributes that hold the learning rate as given at construction: code
    # that sets that rate after construction (the lab, between runs of one
    # compiled model) sets these with it.
    learning_rate_copies = ("_initial_learning_rate",)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        if self.amsbound:
            self._velocity_maxima = self.add_optimizer_variables(
                var_list, "velocity_max"
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
        if self.amsbound:
            velocity_max = self._velocity_maxima[index]
            self.assign(velocity_max, ops.maximum(velocity_max, velocity))
            velocity = velocity_max

        # Scalars in float32 whatever the variable's dtype.
        step = _numerics.step_count(self)
        correction_1, correction_2 = _numerics.bias_corrections(
            self.beta_1, self.beta_2, step
        )
        learning_rate = ops.cast(learning_rate, "float32")
        step_size = learning_rate * ops.sqrt(correction_2) / correction_1
        denominator = ops.add(ops.sqrt(velocity), ops.cast(self.epsilon, dtype))
        coefficient = ops.divide(ops.cast(step_size, dtype), denominator)
        if self.final_lr is not None:
            if self._initial_learning_rate > 0:
                final = self.final_lr * learning_rate / self._initial_learning_rate
            else:
                final = ops.zeros_like(learning_rate)
            lower = final * (1.0 - 1.0 / (self.gamma * step + 1.0))
            upper = final * (1.0 + 1.0 / (self.gamma * step))
            coefficient = ops.clip(
                coefficient, ops.cast(lower, dtype), ops.cast(upper, dtype)
            )
        self.assign_sub(variable, ops.multiply(coefficient, momentum))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "final_lr": self.final_lr,
                "gamma": self.gamma,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsbound": self.amsbound,
            }
        )
        return config


def float32_adam(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    **kwargs: Any,
) -> AdaBound:
    """Adam whose coefficients are computed in float32: `AdaBound` with its
    bounds off (`final_lr=None`), whose update is exactly Keras' `Adam`
    formula, named `"adam"`. Unlike Keras' `Adam` it moves bfloat16
    variables. The Adam inside the `lookahead` and `adam_then_sgd`
    factories. `kwargs` go to `AdaBound` (`weight_decay`, clipping)."""
    return AdaBound(
        learning_rate=learning_rate, final_lr=None, beta_1=beta_1,
        beta_2=beta_2, epsilon=epsilon, name="adam", **kwargs,
    )
