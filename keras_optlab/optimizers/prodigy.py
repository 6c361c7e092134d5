"""Prodigy: Adam whose step size d is estimated from the distance travelled."""

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
class Prodigy(SteerableOptimizer):
    r"""Prodigy (Mishchenko & Defazio, 2023): Adam without a learning rate.

    Adam's step is scaled by an estimate $d$ of the distance from the
    starting point $x_0$ to a solution. $d$ starts at a tiny $d_0$ and grows
    as long as the gradients keep pointing away from $x_0$: it is the ratio
    of a weighted sum of $\langle g_k, x_0 - x_k \rangle$ to the $\ell_1$
    norm of a weighted sum of gradients, both taken over **all** variables
    at once, so one scalar $d$ serves the whole model. `learning_rate`
    stays at 1 unless training is unstable; it multiplies $d$.

    At each step taken, $k = 0, 1, \dots$, with gradient $g_k$ and variables
    $x_k$ (all variables concatenated; $x_0$ the variables at the first
    step), $d^{\max}_0 = d_0$, $r_0 = 0$, $s_0 = m_0 = v_0 = 0$:

    $$
    \begin{aligned}
    \lambda_k &= \eta_k\, d_k\, \rho_k, \qquad
        \rho_k = \frac{\sqrt{1 - \beta_2^{k+1}}}{1 - \beta_1^{k+1}}
        \ \text{(with `bias_correction`; else } \rho_k = 1) \\
    m_{k+1} &= \beta_1 m_k + (1 - \beta_1)\, d_k\, g_k, \qquad
    v_{k+1} = \beta_2 v_k + (1 - \beta_2)\, d_k^2\, g_k^2 \\
    r_{k+1} &= \beta_3 r_k + \frac{d_k}{d_0}\, \lambda_k\,
        \langle g_k,\, x_0 - x_k \rangle, \qquad
    s_{k+1} = \beta_3 s_k + \frac{d_k}{d_0}\, \lambda_k\, g_k
        \ \text{(with `safeguard_warmup`: } \tfrac{d_k}{d_0}\, d_k\, g_k) \\
    \hat d_{k+1} &= c\, \frac{r_{k+1}}{\lVert s_{k+1} \rVert_1}, \qquad
    d^{\max}_{k+1} = \max(d^{\max}_k, \hat d_{k+1}), \qquad
    d_{k+1} = \min\big(d^{\max}_{k+1},\; G\, d'_k\big), \qquad
    d'_k = \begin{cases} \max(d_k, \hat d_{k+1}) & d_k = d_0 \\
                         d_k & \text{otherwise} \end{cases} \\
    x_{k+1} &= x_k - \lambda_k \Big( \omega\, x_k + \frac{m_{k+1}}
        {\sqrt{v_{k+1}} + d_{k+1}\, \epsilon} \Big)
    \end{aligned}
    $$

    Symbols map to arguments: $\eta_k$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\beta_3$ `beta_3` ($\sqrt{\beta_2}$ when `None`), $\epsilon$
    `epsilon`, $d_0$ `d0`, $c$ `d_coef`, $G$ `growth_rate`, $\omega$
    `weight_decay` (with `decouple=True`; with `decouple=False`, $g_k$ is
    replaced by $g_k + \omega x_k$ everywhere above and $\omega = 0$ in the
    last line).

    The order is the reference's: the moments and $s$ use the $d_k$ of the
    step before; $d_{k+1}$ is formed once every variable has added its
    share, and enters this step's update only through $d_{k+1}\epsilon$. On
    the first step $r_1 = 0$ ($x_k = x_0$), so $d_1 = d_0$ and the first
    move is about $3 \eta d_0$ per coordinate. While $d$ has never changed
    ($d_k = d_0$), $\hat d$ may raise it past the growth cap in one step.

    This class follows the authors' PyTorch package `prodigyopt` 1.1
    (github.com/konstmish/prodigy; 1.1.2 computes the same on one process):
    its defaults, its order of updates, and its skipped steps.

    Variables: `d` ($d_k$, the step size without `learning_rate`; what to
    watch), `d_max`, `d_numerator` ($r_k$), `steps_taken` ($k$);
    `d_max`, `d` and `d_numerator` change only on a step taken.

    Departures and conventions:

    - **Steps not taken.** The reference returns before changing anything
      when the learning rate is 0 or $\lVert s_{k+1} \rVert_1 = 0$ (every
      gradient so far zero): then every variable here stays as it was too,
      and `steps_taken`, which counts the steps of $\rho_k$, does not
      advance (Keras' `iterations` does). $x_0$ is the value at the first
      step taken; the reference takes it at the first call, which differs
      only if something else moved the variables in between.
    - **Weight decay is the reference's, not Keras'.** `weight_decay` is
      decoupled ($\lambda_k \omega x_k$, scaled by $d$) by default, coupled
      with `decouple=False`; the base class' decay is not applied on top.
      `exclude_from_weight_decay` is honoured by both forms.
    - **Float32 state and arithmetic.** The reference keeps $d$, $r$ and
      the sums in Python float64; here they are float32 scalars (relative
      error about 1e-7 per operation). The slots are float32 whatever the
      variables' dtype: they hold $d$-scaled values (1e-6 and 1e-12 at the
      start) that float16 cannot represent. $d$ is estimated from how far
      the variables moved: a float16 or bfloat16 variable does not register
      the first steps (about $3 \times 10^{-6}$), and $d$ then stays at
      $d_0$; train such models with a mixed-precision policy (float32
      variables).
    - **Not carried over:** parameter groups (the reference's per-group
      learning rate of 0), `slice_p` (statistics on every $p$-th entry;
      here every entry, the reference's default) and `fsdp_in_use` (under
      `tf.distribute` and `keras.distribution` the sums here are over the
      all-reduced gradients of all variables, so one device and several
      agree).
    - **Non-finite gradients** are not filtered: they reach the moments,
      $s$ and the sums, and make $d$ NaN. Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` (as `mixed_float16` does) to
      skip such steps without touching any state.

    Reference:
        Konstantin Mishchenko, Aaron Defazio. "Prodigy: An Expeditiously
        Adaptive Parameter-Free Learner". ICML 2024. arXiv:2306.06101.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers.prodigy import Prodigy

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=Prodigy(), loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate: a factor on the estimated step size $d$.
            Defaults to `1.0`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.999`.
        beta_3: Decay rate of $r$ and $s$, in [0, 1], or `None` for
            $\sqrt{\beta_2}$ (computed in the step, so it follows `beta_2`).
            Defaults to `None`.
        epsilon: Added to $\sqrt{v}$ after scaling by $d$, > 0. Defaults to
            `1e-8`.
        weight_decay: $\omega$, >= 0, or `None` for none. Defaults to `0.0`.
        decouple: Decoupled weight decay, scaled by $\lambda_k$ (`True`), or
            coupled, added to the gradient (`False`). Defaults to `True`.
        bias_correction: Multiply the step size by Adam's
            $\sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})$. Defaults to
            `False`.
        safeguard_warmup: Leave the learning rate and bias correction out of
            $s$ (the reference's remedy for a learning-rate warmup that
            makes $d$ overshoot). Defaults to `False`.
        d0: The initial estimate $d_0$, > 0. Defaults to `1e-6`.
        d_coef: $c$, a factor on the estimate, > 0 (the authors' preferred
            knob: 0.5 and 2 typically work too). Defaults to `1.0`.
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
        beta_3: float | None = None,
        epsilon: float = 1e-8,
        weight_decay: float | None = 0.0,
        decouple: bool = True,
        bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        name: str = "prodigy",
        **kwargs: Any,
    ) -> None:
        if weight_decay is not None:
            weight_decay = _validation.check_float("weight_decay", weight_decay, low=0.0)
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        if beta_3 is not None:
            beta_3 = _validation.check_float("beta_3", beta_3, low=0.0, high=1.0)
        self.beta_3 = beta_3
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0, low_open=True)
        self.decouple = _validation.check_bool("decouple", decouple)
        self.bias_correction = _validation.check_bool("bias_correction", bias_correction)
        self.safeguard_warmup = _validation.check_bool("safeguard_warmup", safeguard_warmup)
        self.d0 = _validation.check_float("d0", d0, low=0.0, low_open=True)
        self.d_coef = _validation.check_float("d_coef", d_coef, low=0.0, low_open=True)
        self.growth_rate = _dadapt.check_growth_rate(growth_rate)
        # Fixed order, right after `iteration` and `lr_scale`.
        self.d = self._add_scalar("d", initial=self.d0)
        self.d_max = self._add_scalar("d_max", initial=self.d0)
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
        self._starts = _dadapt.float32_slots(self, var_list, "start")

    def _apply_weight_decay(self, variables):
        # `weight_decay` is the reference's, scaled by d and applied inside
        # the step; the base class would apply another, scaled by the rate.
        return

    def _decays(self, variable) -> bool:
        # A weight decay of 0 (or None) costs nothing in the step.
        return bool(self.weight_decay) and self._use_weight_decay(variable)

    def _step_scalars(self, learning_rate):
        """`(first, d, d0, rate, step_size)`: whether no step was taken
        yet, $d_k$, $d_0$ and $\eta_k$ as float32, and $\lambda_k$."""
        steps = ops.convert_to_tensor(self.steps_taken)
        first = ops.equal(steps, 0)
        d0 = ops.cast(self.d0, "float32")
        d = _dadapt.current(first, d0, self.d)
        rate = ops.cast(learning_rate, "float32")
        step_size = d * rate
        if self.bias_correction:
            step_size = step_size * _dadapt.bias_correction(
                self.beta_1, self.beta_2, ops.cast(steps + 1, "float32")
            )
        return first, d, d0, rate, step_size

    def _beta_3(self):
        if self.beta_3 is None:
            beta_2 = self.beta_2
            return math.sqrt(beta_2) if isinstance(beta_2, (int, float)) else ops.sqrt(
                ops.cast(beta_2, "float32")
            )
        return _dadapt.float32(self.beta_3)

    def update_step(self, gradient, variable, learning_rate):
        # The first of two passes: the moments, s and this variable's share
        # of the sums. The variable moves in `_take_step`, once d_{k+1} is
        # known.
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        gradient_sum = self._gradient_sums[index]
        start = self._starts[index]

        first, d, d0, rate, step_size = self._step_scalars(learning_rate)
        gradient = ops.cast(gradient, "float32")
        value = ops.cast(variable, "float32")
        if self._decays(variable) and not self.decouple:
            gradient = gradient + value * _dadapt.float32(self.weight_decay)

        # A learning rate of 0 is a step not taken: every state stays.
        active = ops.greater(rate, 0.0)
        beta_1 = _dadapt.float32(self.beta_1)
        beta_2 = _dadapt.float32(self.beta_2)
        beta_3 = self._beta_3()
        scale = d / d0
        gradient_scale = scale * (d if self.safeguard_warmup else step_size)

        x0 = _dadapt.current(first, value, start)
        self.assign(start, x0)
        self.assign_add(
            self._numerator_increment,
            scale * step_size * _numerics.sum_of_products(gradient, x0 - value),
        )
        self.assign(
            momentum,
            momentum * ops.where(active, beta_1, 1.0)
            + gradient * ops.where(active, d * (1.0 - beta_1), 0.0),
        )
        self.assign(
            velocity,
            velocity * ops.where(active, beta_2, 1.0)
            + ops.square(gradient) * ops.where(active, d * d * (1.0 - beta_2), 0.0),
        )
        new_sum = gradient_sum * ops.where(active, beta_3, 1.0) + gradient * ops.where(
            active, gradient_scale, 0.0
        )
        self.assign(gradient_sum, new_sum)
        self.assign_add(self._denominator, _dadapt.l1_norm(new_sum))

    def _estimate(self, learning_rate):
        """`(taken, d, d_max, numerator)` after this step: the step is taken
        if the learning rate is > 0 and the sum of |s| is > 0; otherwise
        the values stay as they were."""
        first, d, d0, rate, _ = self._step_scalars(learning_rate)
        d_max = _dadapt.current(first, d0, self.d_max)
        numerator = self._beta_3() * ops.convert_to_tensor(self.d_numerator) + (
            ops.convert_to_tensor(self._numerator_increment)
        )
        denominator = ops.convert_to_tensor(self._denominator)
        taken = ops.logical_and(ops.greater(rate, 0.0), ops.greater(denominator, 0.0))
        d_hat = _dadapt.float32(self.d_coef) * numerator / ops.where(taken, denominator, 1.0)
        raised = ops.where(ops.equal(d, d0), ops.maximum(d, d_hat), d)
        new_d_max = ops.maximum(d_max, d_hat)
        new_d = ops.minimum(new_d_max, raised * _dadapt.float32(self.growth_rate))
        return (
            taken,
            ops.where(taken, new_d, d),
            ops.where(taken, new_d_max, d_max),
            _dadapt.kept_unless(taken, numerator, self.d_numerator),
        )

    def _take_step(self, variable, learning_rate):
        # The second pass: x -= lambda_k (omega x + m / (sqrt(v) + d_{k+1} eps)).
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        _, _, _, _, step_size = self._step_scalars(learning_rate)
        taken, new_d, _, _ = self._estimate(learning_rate)
        step_size = ops.where(taken, step_size, 0.0)
        denominator = ops.sqrt(velocity) + new_d * _dadapt.float32(self.epsilon)
        value = ops.cast(variable, "float32")
        change = momentum / denominator
        if self._decays(variable) and self.decouple:
            change = change + value * _dadapt.float32(self.weight_decay)
        self.assign(variable, ops.cast(value - step_size * change, variable.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self.assign(self._numerator_increment, 0.0)
        self.assign(self._denominator, 0.0)
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        _dadapt.for_each_variable(self, trainable_variables, self._take_step, learning_rate)
        taken, d, d_max, numerator = self._estimate(learning_rate)
        steps = ops.convert_to_tensor(self.steps_taken)
        self.assign(self.d, d)
        self.assign(self.d_max, d_max)
        self.assign(self.d_numerator, numerator)
        self.assign(self.steps_taken, ops.where(taken, steps + 1, steps))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "epsilon": self.epsilon,
                "decouple": self.decouple,
                "bias_correction": self.bias_correction,
                "safeguard_warmup": self.safeguard_warmup,
                "d0": self.d0,
                "d_coef": self.d_coef,
                "growth_rate": self.growth_rate,
            }
        )
        return config
