"""MARS: AdamW on a variance-reduced, norm-clipped gradient."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class MARS(SteerableOptimizer):
    r"""MARS-AdamW (Yuan et al., 2024).

    MARS ("Make vAriance Reduction Shine") feeds AdamW's moments with a
    variance-reduced gradient: the current gradient plus a scaled share of
    its change since the previous step, in the manner of STORM's recursive
    momentum. The corrected gradient of each matrix is clipped to norm 1.
    Variables that are not matrices (biases, normalisation scales, and any
    tensor of rank other than 2) take plain AdamW steps with their own
    betas, learning-rate factor and weight decay, as in the authors' code.

    For each variable $\theta$ of rank 2 (every variable with
    `optimize_1d=True`), with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    c_t &= g_t + \gamma\,\frac{\beta_1}{1 - \beta_1}\,(g_t - g_{t-1}),
        \qquad g_0 = 0 \\
    \tilde c_t &= c_t / \max(1, \lVert c_t \rVert_2) \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, \tilde c_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, \tilde c_t^2 \\
    \theta_t &= \theta_{t-1} - \eta_t \Big( \lambda\, \theta_{t-1}
        + \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
        \Big)
    \end{aligned}
    $$

    where $\lVert c_t \rVert_2$ is the norm of the whole variable's $c_t$.
    For every other variable (with `optimize_1d=False`), AdamW:

    $$
    \begin{aligned}
    m_t &= \beta'_1 m_{t-1} + (1 - \beta'_1)\, g_t, \qquad
    v_t = \beta'_2 v_{t-1} + (1 - \beta'_2)\, g_t^2 \\
    \theta_t &= \theta_{t-1} - r\,\eta_t \Big( \lambda'\, \theta_{t-1}
        + \frac{m_t / (1 - \beta_1'^t)}{\sqrt{v_t / (1 - \beta_2'^t)} + \epsilon}
        \Big)
    \end{aligned}
    $$

    With `amsgrad=True`, $v_t$ in the step (not in the moving average) is
    the running maximum $\max(v_1, \dots, v_t)$, on both paths.

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $\gamma$ `gamma`, $\lambda$ `weight_decay`,
    $\beta'_1$ `beta_1_1d`, $\beta'_2$ `beta_2_1d`, $r$
    `learning_rate_1d_factor`, $\lambda'$ `weight_decay_1d`.

    This class follows `MARS/optimizers/mars.py` of the authors' repository
    (github.com/AGI-Arena/MARS, commit 4831e28; the arithmetic is that of
    its first release, November 2024) with `mars_type="mars-adamw"` and
    `is_approx=True`, the setting of every run in the paper's tables
    labelled "MARS-approx" and of the authors' training scripts:

    - **Approximate form.** The paper's $c_t$ takes the difference
      $\nabla f(x_t, \xi_t) - \nabla f(x_{t-1}, \xi_t)$ of two gradients on
      the *same* batch, which costs a second gradient evaluation per step.
      The approximate form, the code's default, uses the previous step's
      gradient $g_{t-1} = \nabla f(x_{t-1}, \xi_{t-1})$ (previous
      variables, previous batch) instead; an optimizer, which sees one
      gradient per step, can only do this. $g_{t-1}$ is kept in a slot.
      Before the first step it is zero (the code's `zeros_like`), so $c_1 =
      (1 + \gamma\beta_1/(1-\beta_1))\, g_1$.
    - **Clip per tensor.** $\lVert c_t \rVert_2$ is the norm of each
      variable's $c_t$ (`torch.norm(c_t)` per parameter), not a global norm.
    - **Which variables take the MARS path**: those of rank exactly 2
      (`len(grad.shape) == 2` in the code). Rank-1 variables, scalars, and
      also convolution kernels (rank 3-5) take the AdamW path unless
      `optimize_1d=True`; the README speaks of "1D parameters" only.
    - **Epsilon** is added to $\sqrt{v_t / (1 - \beta_2^t)}$, PyTorch's
      AdamW convention (Keras' `Adam` adds it before the bias correction).
    - **Weight decay is the reference's, not Keras'.** It is decoupled and
      multiplied by the path's rate ($\eta_t$ or $r\eta_t$); the Keras base
      class' decay is not applied on top. Note the default
      $\lambda' = 0.1$: variables on the AdamW path decay by default, as
      in the authors' code. `exclude_from_weight_decay` is honoured on both
      paths.

    Departures and conventions:

    - `mars_type="mars-lion"` and `"mars-shampoo"`, and the exact form
      (`is_approx=False`, a second gradient per step, which needs a
      training loop of its own), are not provided.
    - The reference takes `lr_1d`, an absolute rate, and turns it into the
      factor `lr_1d / lr` at construction, so that a schedule moves both
      rates together; this class takes that factor,
      `learning_rate_1d_factor` (the reference's defaults `lr = lr_1d =
      3e-3` give 1).
    - **Memory.** A variable on the MARS path keeps three slots of its own
      size ($m$, $v$ and $g_{t-1}$; four with `amsgrad`), one more than
      AdamW; a variable on the AdamW path keeps two (three with
      `amsgrad`). The reference keeps $g_{t-1}$ for every parameter.
    - **Non-finite gradients** are not filtered: they reach $g_{t-1}$, $m$
      and $v$, and through the norm a single non-finite element spoils the
      variable's whole $\tilde c_t$ (zero or NaN everywhere). Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` to skip such steps without
      touching any state: $g_{t-1}$ then stays the last gradient that was
      applied.

    Reference:
        Huizhuo Yuan, Yifeng Liu, Shuang Wu, Xun Zhou, Quanquan Gu. "MARS:
        Unleashing the Power of Variance Reduction for Training Large
        Models". 2024 (ICML 2025). arXiv:2411.10438.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers.mars import MARS

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=MARS(learning_rate=3e-3, weight_decay=0.01),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.003`.
        beta_1: Decay rate of the first moment on the MARS path, in [0, 1);
            it also sets the correction's scale $\gamma\beta_1/(1-\beta_1)$.
            Defaults to `0.95`.
        beta_2: Decay rate of the second moment on the MARS path, in
            [0, 1). Defaults to `0.99`.
        epsilon: Added to the bias-corrected $\sqrt{v_t}$, >= 0. Defaults to
            `1e-8`.
        weight_decay: Decoupled weight decay $\lambda$ of the MARS path,
            >= 0, or `None` for none. Defaults to `0.0`.
        gamma: Strength $\gamma$ of the gradient correction, >= 0 (0 gives
            AdamW on the clipped gradient). Defaults to `0.025`.
        amsgrad: Divide by the running maximum of $v_t$. Defaults to
            `False`.
        optimize_1d: Take the MARS path for every variable (`True`), or only
            for those of rank 2 (`False`). Defaults to `False`.
        learning_rate_1d_factor: $r$, >= 0: the AdamW path's rate is
            $r\eta_t$. Defaults to `1.0`.
        beta_1_1d: First-moment decay of the AdamW path, in [0, 1).
            Defaults to `0.9`.
        beta_2_1d: Second-moment decay of the AdamW path, in [0, 1).
            Defaults to `0.95`.
        weight_decay_1d: Decoupled weight decay $\lambda'$ of the AdamW
            path, >= 0. Defaults to `0.1`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.003,
        beta_1: float = 0.95,
        beta_2: float = 0.99,
        epsilon: float = 1e-8,
        weight_decay: float | None = 0.0,
        gamma: float = 0.025,
        amsgrad: bool = False,
        optimize_1d: bool = False,
        learning_rate_1d_factor: float = 1.0,
        beta_1_1d: float = 0.9,
        beta_2_1d: float = 0.95,
        weight_decay_1d: float = 0.1,
        name: str = "mars",
        **kwargs: Any,
    ) -> None:
        if weight_decay is not None:
            weight_decay = _validation.check_float("weight_decay", weight_decay, low=0.0)
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.gamma = _validation.check_float("gamma", gamma, low=0.0)
        self.amsgrad = _validation.check_bool("amsgrad", amsgrad)
        self.optimize_1d = _validation.check_bool("optimize_1d", optimize_1d)
        self.learning_rate_1d_factor = _validation.check_float(
            "learning_rate_1d_factor", learning_rate_1d_factor, low=0.0
        )
        self.beta_1_1d = _validation.check_float(
            "beta_1_1d", beta_1_1d, low=0.0, high=1.0, high_open=True
        )
        self.beta_2_1d = _validation.check_float(
            "beta_2_1d", beta_2_1d, low=0.0, high=1.0, high_open=True
        )
        self.weight_decay_1d = _validation.check_float("weight_decay_1d", weight_decay_1d, low=0.0)

    def _on_mars_path(self, variable) -> bool:
        return self.optimize_1d or len(variable.shape) == 2

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        # The previous gradient only where the MARS path reads it.
        self._previous_gradients = [
            self.add_variable_from_reference(v, name="previous_gradient")
            if self._on_mars_path(v) and not self._overwrite_variable_with_gradient(v)
            else None
            for v in var_list
        ]
        if self.amsgrad:
            self._velocity_maxima = self.add_optimizer_variables(var_list, "velocity_max")

    def _apply_weight_decay(self, variables):
        # Both decays are the reference's, applied inside `update_step` with
        # the rate of each variable's path.
        return

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]

        # Scalar coefficients in float32; a hyperparameter may be a Python
        # float (then 1 - beta is formed in float64 on the host) or a
        # float32 variable (keras_optlab.lab.live).
        rate = ops.cast(learning_rate, "float32")
        if self._on_mars_path(variable):
            beta_1, beta_2, decay = self.beta_1, self.beta_2, self.weight_decay
            self._mars_moments(gradient, index, dtype, rate)
        else:
            beta_1, beta_2, decay = self.beta_1_1d, self.beta_2_1d, self.weight_decay_1d
            rate = rate * ops.cast(self.learning_rate_1d_factor, "float32")
            _numerics.update_moments(self, momentum, velocity, gradient, beta_1, beta_2)

        # A decay of 0 (the MARS path's default) is skipped: a shrink by 0
        # would rewrite the variable at every step.
        if decay and self._use_weight_decay(variable):
            shrink = ops.cast(rate * ops.cast(decay, "float32"), dtype)
            self.assign_sub(variable, ops.multiply(variable, shrink))
        if self.amsgrad:
            velocity_max = self._velocity_maxima[index]
            self.assign(velocity_max, ops.maximum(velocity_max, velocity))
            velocity = velocity_max

        correction_1, correction_2 = _numerics.bias_corrections(
            beta_1, beta_2, _numerics.step_count(self)
        )
        denominator = ops.add(
            ops.divide(ops.sqrt(velocity), ops.cast(ops.sqrt(correction_2), dtype)),
            ops.cast(self.epsilon, dtype),
        )
        self.assign_sub(
            variable,
            ops.multiply(ops.divide(momentum, denominator), ops.cast(rate / correction_1, dtype)),
        )

    def _mars_moments(self, gradient, index, dtype, rate):
        """m and v of the MARS path, from the clipped corrected gradient,
        and g_t kept as the next step's g_{t-1}.

        c_t is never stored: its norm's pass, m's loop and v's loop each
        form it from g_t and g_{t-1} (XLA:CPU gives each result its own
        loop; a stored c_t was a full-size temporary, written and read
        three times, at every step: 2.2x Keras Adam on JAX). Two of the
        three are written with `_numerics.unmerged`, the same values as
        expressions XLA does not merge back into one stored array. g_{t-1}
        is overwritten after m's and v's loops, which read it (`one_after`
        their first elements), so XLA writes it in place.
        """
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        previous = self._previous_gradients[index]
        k = ops.cast(self.gamma * self.beta_1 / (1.0 - self.beta_1), dtype)

        def correct(gradient, previous):
            return ops.add(gradient, ops.multiply(ops.subtract(gradient, previous), k))

        norm = ops.sqrt(_numerics.squared_norm(correct(gradient, previous)))
        clip = ops.cast(ops.maximum(norm, 1.0), dtype)
        corrected = correct(_numerics.unmerged(gradient, rate), previous)
        corrected_again = correct(gradient, _numerics.unmerged(previous, rate))
        self.assign_add(momentum, ops.multiply(
            ops.subtract(ops.divide(corrected, clip), momentum), ops.cast(1.0 - self.beta_1, dtype)
        ))
        self.assign_add(velocity, ops.multiply(
            ops.subtract(ops.square(ops.divide(corrected_again, clip)), velocity),
            ops.cast(1.0 - self.beta_2, dtype),
        ))
        after = _numerics.one_after_first(momentum, velocity)
        self.assign(previous, ops.multiply(gradient, ops.cast(after, dtype)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "gamma": self.gamma,
                "amsgrad": self.amsgrad,
                "optimize_1d": self.optimize_1d,
                "learning_rate_1d_factor": self.learning_rate_1d_factor,
                "beta_1_1d": self.beta_1_1d,
                "beta_2_1d": self.beta_2_1d,
                "weight_decay_1d": self.weight_decay_1d,
            }
        )
        return config
