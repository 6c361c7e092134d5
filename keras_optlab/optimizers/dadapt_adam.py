"""D-Adaptation Adam: Adam whose step size d is a lower bound on the
distance to the solution, estimated as training goes."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _d_adaptation as _dadapt
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class DAdaptAdam(SteerableOptimizer):
    r"""D-Adaptation Adam (Defazio & Mishchenko, 2023).

    Adam's step is scaled by $d$, a lower bound on the distance from the
    starting point to a solution. The bound comes from the gradients seen
    so far: a weighted sum $s$ of the past steps' gradients, and the sum
    $r$ of their inner products with $s$, over **all** variables at once,
    so one scalar $d$ serves the whole model. $d$ starts at a tiny $d_0$
    and never decreases. `learning_rate` stays at 1 unless training is
    unstable; it multiplies $d$.

    At each step taken, $k = 0, 1, \dots$, with gradient $g_k$ and variables
    $x_k$ (all variables concatenated), $r_0 = 0$, $s_0 = m_0 = v_0 = 0$,
    and $\gamma = \sqrt{\beta_2}$:

    $$
    \begin{aligned}
    \lambda_k &= \eta_k\, d_k\, \rho_k, \qquad
        \rho_k = \frac{\sqrt{1 - \beta_2^{k+1}}}{1 - \beta_1^{k+1}}
        \ \text{(with `bias_correction`; else } \rho_k = 1) \\
    r_{k+1} &= \gamma\, r_k + (1 - \gamma)\, \lambda_k
        \Big\langle g_k,\, \frac{s_k}{\sqrt{v_k} + \epsilon} \Big\rangle \\
    m_{k+1} &= \beta_1 m_k + (1 - \beta_1)\, \lambda_k\, g_k, \qquad
    v_{k+1} = \beta_2 v_k + (1 - \beta_2)\, g_k^2, \qquad
    s_{k+1} = \gamma\, s_k + (1 - \gamma)\, \lambda_k\, g_k \\
    \hat d_{k+1} &= \frac{r_{k+1}}{(1 - \gamma) \lVert s_{k+1} \rVert_1},
        \qquad
    d_{k+1} = \max\big(d_k,\; \min(\hat d_{k+1},\; G\, d_k)\big) \\
    x_{k+1} &= x_k - \lambda_k\, \omega\, x_k
        - \frac{m_{k+1}}{\sqrt{v_{k+1}} + \epsilon}
    \end{aligned}
    $$

    Symbols map to arguments: $\eta_k$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $d_0$ `d0`, $G$ `growth_rate`, $\omega$
    `weight_decay` with `decouple=True`; with `decouple=False` (the
    default), $g_k$ is replaced by $g_k + \omega x_k$ everywhere above and
    $\omega = 0$ in the last line.

    The order is the reference's: $r$ reads $s_k$ and $v_k$ before they
    are updated; $\lambda_k$ enters the first moment, so $m$ carries the
    step size, and the step itself is $m / (\sqrt{v} + \epsilon)$; the new
    $d_{k+1}$ is formed once every variable has added its share and is
    first used at the next step. On the first step $r_1 = 0$ ($s_0 = 0$),
    so $d_1 = d_0$.

    This class follows `DAdaptAdam` of the authors' PyTorch package
    `dadaptation` 3.2 (github.com/facebookresearch/dadaptation): its
    defaults (weight decay coupled), its order of updates and its skipped
    steps.

    Variables: `d` ($d_k$, the step size without `learning_rate`; what to
    watch), `d_numerator` ($r_k$), `steps_taken` ($k$); they change only on
    a step taken.

    Departures and conventions:

    - **Steps not taken.** The reference returns before stepping when the
      learning rate is 0 or $\lVert s_{k+1} \rVert_1 = 0$. In both cases
      $d$, $r$ and `steps_taken` (which counts the steps of $\rho_k$) stay
      as they were here too (Keras' `iterations` advances on all), and a
      learning rate of 0 leaves every variable as it was. At a rate > 0
      with $\lVert s_{k+1} \rVert_1 = 0$ the reference has updated $m$, $v$
      and $s$ (as here) but does not move the variables; here each variable
      moves before the sum over all of them is known, so it takes the step
      $m_{k+1} / (\sqrt{v_{k+1}} + \epsilon)$ and the decoupled weight
      decay. For $\beta_2 > 0$, $s_{k+1} = 0$ means every gradient so far
      was zero (barring exact cancellation), so $m_{k+1} = 0$ and only a
      decoupled weight decay moves the variables. With $\beta_2 = 0$,
      $s_{k+1} = \lambda_k g_k$: a step whose gradient is zero everywhere
      after nonzero ones moves the variables by $\beta_1 m_k / \epsilon$
      here ($v_{k+1} = 0$), where the reference leaves them.
    - **Weight decay is the reference's, not Keras'.** `weight_decay` is
      coupled (added to the gradient) by default, decoupled and scaled by
      $\lambda_k$ with `decouple=True`; the base class' decay is not applied
      on top. `exclude_from_weight_decay` is honoured by both forms.
    - **Float32 state and arithmetic.** The reference keeps $d$ and $r$ in
      Python float64; here they are float32 scalars. The slots are float32
      whatever the variables' dtype: $m$ and $s$ are scaled by $d$ (1e-6 at
      the start), below float16's range.
    - **Not carried over:** parameter groups (the reference's per-group
      learning rate of 0 and `layer_scale`), `log_every` (the variables
      above can be logged instead) and `fsdp_in_use` (under `tf.distribute`
      and `keras.distribution` the sums here are over the all-reduced
      gradients of all variables, so one device and several agree).
    - **Non-finite gradients** are not filtered: they reach the moments,
      $s$ and the sums, and make $d$ NaN. Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` (as `mixed_float16` does) to
      skip such steps without touching any state.

    Reference:
        Aaron Defazio, Konstantin Mishchenko. "Learning-Rate-Free Learning
        by D-Adaptation". ICML 2023. arXiv:2301.07733.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers.dadapt_adam import DAdaptAdam

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=DAdaptAdam(), loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate: a factor on the estimated step size $d$.
            Defaults to `1.0`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1); $r$ and $s$
            decay at $\sqrt{\beta_2}$. Defaults to `0.999`.
        epsilon: Added to $\sqrt{v}$, > 0. Defaults to `1e-8`.
        weight_decay: $\omega$, >= 0, or `None` for none. Defaults to `0.0`.
        decouple: Decoupled weight decay, scaled by $\lambda_k$ (`True`), or
            coupled, added to the gradient (`False`). Defaults to `False`.
        bias_correction: Multiply the step size by Adam's
            $\sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})$. Defaults to
            `False`.
        d0: The initial estimate $d_0$, > 0. Defaults to `1e-6`.
        growth_rate: $G$, the most $d$ may grow in one step, in [1, inf]
            (values such as 1.02 act as a warmup). Defaults to `inf`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 1.0,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float | None = 0.0,
        decouple: bool = False,
        bias_correction: bool = False,
        d0: float = 1e-6,
        growth_rate: float = math.inf,
        name: str = "dadapt_adam",
        **kwargs: Any,
    ) -> None:
        if weight_decay is not None:
            weight_decay = _validation.check_float("weight_decay", weight_decay, low=0.0)
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.decouple = _validation.check_bool("decouple", decouple)
        self.bias_correction = _validation.check_bool("bias_correction", bias_correction)
        self.d0 = _validation.check_float("d0", d0, low=0.0, low_open=True)
        self.growth_rate = _dadapt.check_growth_rate(growth_rate)
        # Fixed order, right after `iteration` and `lr_scale`.
        self.d = self._add_scalar("d", initial=self.d0)
        self.d_numerator = self._add_scalar("d_numerator")
        self.steps_taken = self._add_scalar("steps_taken", "int32", 0)
        # This step's sums over all variables, reset at every step.
        self._numerator_increment = self._add_scalar("numerator_increment")
        self._denominator = self._add_scalar("denominator")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = _dadapt.float32_slots(self, var_list, "momentum")
        self._velocities = _dadapt.float32_slots(self, var_list, "velocity")
        self._gradient_sums = _dadapt.float32_slots(self, var_list, "gradient_sum")

    def _apply_weight_decay(self, variables):
        # `weight_decay` is the reference's (coupled by default), applied
        # inside `update_step`; the base class would add a decoupled one.
        return

    def _step_scalars(self, learning_rate):
        """`(d, rate, step_size)`: $d_k$ and $\eta_k$ as float32, and
        $\lambda_k$."""
        steps = ops.convert_to_tensor(self.steps_taken)
        d = _dadapt.current(ops.equal(steps, 0), ops.cast(self.d0, "float32"), self.d)
        rate = ops.cast(learning_rate, "float32")
        step_size = d * rate
        if self.bias_correction:
            step_size = step_size * _dadapt.bias_correction(
                self.beta_1, self.beta_2, ops.cast(steps + 1, "float32")
            )
        return d, rate, step_size

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        gradient_sum = self._gradient_sums[index]

        _, rate, step_size = self._step_scalars(learning_rate)
        gradient = ops.cast(gradient, "float32")
        value = ops.cast(variable, "float32")
        decays = bool(self.weight_decay) and self._use_weight_decay(variable)
        if decays and not self.decouple:
            gradient = gradient + value * _dadapt.float32(self.weight_decay)

        # A learning rate of 0 is a step not taken: every state stays.
        active = ops.greater(rate, 0.0)
        beta_1 = _dadapt.float32(self.beta_1)
        beta_2 = _dadapt.float32(self.beta_2)
        sum_rate = _dadapt.one_minus_sqrt(self.beta_2)
        epsilon = _dadapt.float32(self.epsilon)

        # r reads s_k and v_k, before this step changes them: their new
        # values are computed after r's sum (`one_after`), so that XLA
        # writes them in place rather than copying them at every step.
        increment = _numerics.sum_of_products(
            gradient, gradient_sum / (ops.sqrt(velocity) + epsilon)
        )
        self.assign_add(self._numerator_increment, step_size * increment)
        after_sum = _numerics.one_after(increment)
        new_momentum = momentum * ops.where(active, beta_1, 1.0) + gradient * (
            step_size * (1.0 - beta_1)
        )
        new_velocity = velocity * (ops.where(active, beta_2, 1.0) * after_sum) + ops.square(
            gradient
        ) * ops.where(active, 1.0 - beta_2, 0.0)
        new_sum = gradient_sum * (ops.where(active, 1.0 - sum_rate, 1.0) * after_sum) + gradient * (
            step_size * sum_rate
        )
        self.assign(momentum, new_momentum)
        self.assign(velocity, new_velocity)
        self.assign(gradient_sum, new_sum)
        self.assign_add(self._denominator, _dadapt.l1_norm(new_sum))

        change = new_momentum / (ops.sqrt(new_velocity) + epsilon)
        change = ops.where(active, change, 0.0)
        if decays and self.decouple:
            change = change + value * (step_size * _dadapt.float32(self.weight_decay))
        self.assign(variable, ops.cast(value - change, variable.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self.assign(self._numerator_increment, 0.0)
        self.assign(self._denominator, 0.0)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

        # d_{k+1} from this step's sums; the step itself used d_k.
        d, rate, _ = self._step_scalars(learning_rate)
        sum_rate = _dadapt.one_minus_sqrt(self.beta_2)
        numerator = (1.0 - sum_rate) * ops.convert_to_tensor(self.d_numerator) + sum_rate * (
            ops.convert_to_tensor(self._numerator_increment)
        )
        denominator = ops.convert_to_tensor(self._denominator)
        taken = ops.logical_and(ops.greater(rate, 0.0), ops.greater(denominator, 0.0))
        d_hat = numerator / (sum_rate * ops.where(taken, denominator, 1.0))
        new_d = ops.maximum(d, ops.minimum(d_hat, d * _dadapt.float32(self.growth_rate)))
        steps = ops.convert_to_tensor(self.steps_taken)
        self.assign(self.d, ops.where(taken, new_d, d))
        self.assign(self.d_numerator, _dadapt.kept_unless(taken, numerator, self.d_numerator))
        self.assign(self.steps_taken, ops.where(taken, steps + 1, steps))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "decouple": self.decouple,
                "bias_correction": self.bias_correction,
                "d0": self.d0,
                "growth_rate": self.growth_rate,
            }
        )
        return config
