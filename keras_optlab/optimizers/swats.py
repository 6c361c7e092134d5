"""SWATS: Adam that switches itself to SGD with momentum when its projected
learning rate has settled."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _lineage, _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class SWATS(SteerableOptimizer):
    r"""SWATS: switches from Adam to SGD (Keskar & Socher, 2017).

    Runs Adam, and after each Adam step projects the step $p_k$ onto the
    gradient to find the SGD learning rate $\gamma_k$ whose step along
    $-g_k$ has the same projection. When the bias-corrected running average
    $\Lambda_k$ of $\gamma_k$ has agreed with $\gamma_k$ for long enough, it
    switches for good to SGD with momentum at that averaged rate.

    At step $k = 1, 2, \dots$ with gradient $g_k$ (all variables
    concatenated):

    $$
    \begin{aligned}
    \textbf{Adam phase:}\quad
    m_k &= \beta_1 m_{k-1} + (1 - \beta_1) g_k, \qquad
    a_k = \beta_2 a_{k-1} + (1 - \beta_2) g_k^2 \\
    p_k &= -\eta_k \frac{\sqrt{1 - \beta_2^k}}{1 - \beta_1^k}
          \frac{m_k}{\sqrt{a_k} + \epsilon}, \qquad w_k = w_{k-1} + p_k \\
    \text{if } p_k^\top g_k \ne 0:\quad
    \gamma_k &= \frac{p_k^\top p_k}{-p_k^\top g_k}, \qquad
    \lambda_k = \beta_2 \lambda_{k-1} + (1 - \beta_2) \gamma_k \\
    \Lambda_k &= \frac{\lambda_k}{1 - \beta_2^k}, \qquad
    A_k = \big[\, k > K \ \text{and}\ |\Lambda_k - \gamma_k| < \epsilon\,|\gamma_k| \,\big] \\
    \text{if } A_{k-P+1} = \dots = A_k = 1:\quad
      &\text{switch, with } \Lambda = \Lambda_k,\ v = 0 \\
    \textbf{SGD phase:}\quad
    v_k &= \beta_1 v_{k-1} + g_k, \qquad
    w_k = w_{k-1} - (1 - \beta_1)\, \Lambda \frac{\eta_k}{\eta_s}\, v_k
    \end{aligned}
    $$

    Symbols map to arguments: $\eta_k$ is `learning_rate` (times
    `lr_scale`), $\beta_1$ `beta_1` (also SGD's momentum, as in the paper),
    $\beta_2$ `beta_2`, $\epsilon$ in the denominator `epsilon`, $\epsilon$ in
    the criterion `switch_tolerance`, $P$ `switch_patience`, $K$
    `switch_warmup`. $\eta_s$ is the learning rate of the last Adam step.
    Steps without a projection ($p_k^\top g_k = 0$) leave the run of
    agreeing steps as it is.

    **The switching criterion: the paper's and the default.** The paper
    switches on the first step $k > 1$ with
    $|\Lambda_k - \gamma_k| < 10^{-9}$, an absolute test at float32's
    resolution for rates of order $10^{-3}$ to $10^{-1}$: on a smooth
    problem where Adam converges within 600 steps it never fires, and
    neither do the PyTorch ports, which use the same tolerance. That form is
    `SWATS(switch_tolerance=1e-9, relative_tolerance=False,
    switch_patience=1, switch_warmup=1)`. The defaults measure the
    agreement relative to $|\gamma_k|$ (2 %), and ask for it on 10
    consecutive steps after the first 10, for two measured reasons:

    - A single step is a poor witness. With minibatch noise $\gamma_k$
      jitters across its slowly moving average, so a single-step test fires
      at a crossing rather than when the rate has settled: on a 64-128-10
      MLP on digits (batches of 32, 42 steps an epoch) a single-step test
      at any tolerance from 0.2 % to 2 % switched inside the first epoch in
      most of the seeds tried; 10 consecutive steps at 2 % switched in none
      of 10 seeds.
    - The first steps agree trivially: while Adam's first moment warms up
      (about $1/(1 - \beta_1) = 10$ steps), every coordinate moves by about
      $\eta$ and $\gamma_k$ barely changes, so $\Lambda_k \approx \gamma_k$
      before anything was learnt.

    With the defaults, the same MLP trained on the full batch (smooth,
    Adam converges in 600 steps) switches after about 20 steps. Once Adam
    has converged, its second moment decays freely and $\gamma_k$ grows
    like $\beta_2^{-k/2}$, so $\Lambda_k$ then lags $\gamma_k$ by about a
    third and the criterion no longer fires: SWATS switches early in
    training or not at all. The `SwitchOptimizer` callback can force the
    switch at an epoch or on a plateau instead.

    Variables: `phase` (0 Adam, 1 SGD; what `LearningRateLogger` and the
    `SwitchOptimizer` callback read), `switch_iteration` (the `iterations`
    value of the first SGD step, -1 before), `sgd_learning_rate` ($\Lambda$:
    while in the Adam phase, the latest $\lambda_k / (1 - \beta_2^k)$; frozen
    at the switch), `lambda_average` ($\lambda_k$), `switch_learning_rate`
    ($\eta_s$), `agreement_steps` (the current run of agreeing steps).
    Writing 1 into `phase` (the callback does) switches at once with the
    current $\Lambda$.

    Departures and conventions:

    - **Global or per-variable criterion.** The paper's $p_k$, $g_k$,
      $\gamma_k$ and $\lambda_k$ span all variables at once: one switch
      for the whole model (`criterion="global"`, the default). The PyTorch
      ports apply the test to each parameter tensor separately, so layers
      switch at different steps, each with its own $\Lambda$
      (`criterion="per_variable"`; then `phase` becomes 1 when every
      variable has switched). The global sums use the gradients after
      Keras' cross-replica reduction.
    - **Learning-rate decay after the switch.** The paper decays $\Lambda$
      when it decays the learning rate; here the SGD rate follows the
      learning rate as $\Lambda \eta_k / \eta_s$, so a schedule or a plateau
      callback (through `lr_scale`) acts on both phases.
    - **Sign of $\Lambda$.** As in the paper, nothing forces $\Lambda > 0$
      (some ports do); $\gamma_k > 0$ whenever the Adam step is a descent
      direction, which is the usual case.
    - **Epsilon** is added to $\sqrt{a_k}$ before the bias correction, as in
      the paper and Keras' `Adam`; the default is the paper's $10^{-9}$.
    - **One fused update.** Both phases are one element-wise update whose
      coefficients the phase selects (`keras_optlab.optimizers._lineage`);
      SGD's velocity $v$ lives in Adam's first-moment slot, emptied at the
      switch, so a step reads and writes the same arrays in both phases.
      The projections' sums are taken only in the Adam phase.
    - **Non-finite gradients** reach the moments and the projections; wrap
      the optimizer in `keras.optimizers.LossScaleOptimizer` to skip such
      steps without touching any state.

    Reference:
        Nitish Shirish Keskar, Richard Socher. "Improving Generalization
        Performance by Switching from Adam to SGD". 2017. arXiv:1712.07628.

    Example:

    ```python
    from keras_optlab.optimizers import SWATS
    optimizer = SWATS(learning_rate=1e-3)
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate. Defaults to `0.001`.
        beta_1: Adam's first-moment decay and SGD's momentum, in [0, 1).
            Defaults to `0.9`.
        beta_2: Adam's second-moment decay and the decay of $\lambda_k$, in
            [0, 1). Defaults to `0.999`.
        epsilon: Added to $\sqrt{a_k}$, >= 0. Defaults to `1e-9`, the paper's
            (Algorithm 1): the switch criterion is computed from Adam's
            steps, which epsilon changes (Keras' `Adam` uses `1e-7`).
        switch_tolerance: The criterion's $\epsilon$, >= 0. Defaults to
            `0.02`.
        relative_tolerance: Whether $\epsilon$ is relative to $|\gamma_k|$
            (`True`) or absolute, as in the paper (`False`). Defaults to
            `True`.
        switch_patience: $P$, the number of consecutive steps on which the
            criterion must hold, an int >= 1 (the paper: 1). Defaults to
            `10`.
        switch_warmup: $K$: the criterion is tested from step $K + 1$ on,
            an int >= 1 (the paper: 1). Defaults to `10`.
        criterion: `"global"` (the paper) or `"per_variable"` (the PyTorch
            ports). Defaults to `"global"`.
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
        epsilon: float = 1e-9,
        switch_tolerance: float = 0.02,
        relative_tolerance: bool = True,
        switch_patience: int = 10,
        switch_warmup: int = 10,
        criterion: str = "global",
        name: str = "swats",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.switch_tolerance = _validation.check_float(
            "switch_tolerance", switch_tolerance, low=0.0
        )
        self.relative_tolerance = _validation.check_bool("relative_tolerance", relative_tolerance)
        self.switch_patience = _validation.check_int("switch_patience", switch_patience, low=1)
        self.switch_warmup = _validation.check_int("switch_warmup", switch_warmup, low=1)
        self.criterion = _validation.check_choice(
            "criterion", criterion, ("global", "per_variable")
        )
        # Fixed order, right after `iteration` and `lr_scale`.
        self.phase = self._add_scalar("phase", "int32", 0)
        self.switch_iteration = self._add_scalar("switch_iteration", "int32", -1)
        self.sgd_learning_rate = self._add_scalar("sgd_learning_rate")
        self.lambda_average = self._add_scalar("lambda_average")
        self.switch_learning_rate = self._add_scalar("switch_learning_rate")
        # Per-step sums over all variables; reset at every step.
        self._projection_square = self._add_scalar("projection_square")
        self._projection_gradient = self._add_scalar("projection_gradient")
        # Consecutive Adam steps on which the criterion has held.
        self.agreement_steps = self._add_scalar("agreement_steps", "int32", 0)
        self._adam = _lineage.Method(self, "adam_float32", frozenset({"m", "v"}))
        self._step_cache = _lineage.StepCache()

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        if self.criterion == "per_variable":
            # One switch state per variable: phase, switch iteration,
            # lambda, Lambda, the learning rate at the switch and the run of
            # agreeing steps.
            self._variable_states = [
                [
                    self._add_scalar(f"{variable.name}_phase", "int32", 0),
                    self._add_scalar(f"{variable.name}_switch_iteration", "int32", -1),
                    self._add_scalar(f"{variable.name}_lambda_average"),
                    self._add_scalar(f"{variable.name}_sgd_learning_rate"),
                    self._add_scalar(f"{variable.name}_switch_learning_rate"),
                    self._add_scalar(f"{variable.name}_agreement_steps", "int32", 0),
                ]
                for variable in var_list
            ]

    def _criterion(
        self, lambda_average, projection_square, projection_gradient, step, in_adam, agreement
    ):
        """`(lambda_k, Lambda candidate, valid, fire, agreement)` from this
        step's sums and the run of agreeing steps before it."""
        valid = ops.logical_and(in_adam, ops.not_equal(projection_gradient, 0.0))
        gamma = projection_square / ops.where(valid, -projection_gradient, 1.0)
        updated = self.beta_2 * lambda_average + (1.0 - self.beta_2) * gamma
        lambda_new = ops.where(valid, updated, lambda_average)
        corrected = lambda_new / _numerics.one_minus_power(self.beta_2, step)
        tolerance = self.switch_tolerance
        if self.relative_tolerance:
            tolerance = tolerance * ops.abs(gamma)
        agrees = ops.logical_and(
            ops.less(ops.abs(corrected - gamma), tolerance),
            ops.greater(step, float(self.switch_warmup)),
        )
        # Steps without a projection (no gradient, or SGD) leave the run as it is.
        agreement = ops.where(
            valid, ops.where(agrees, agreement + 1, 0), agreement
        )
        fire = ops.logical_and(
            ops.logical_and(valid, agrees),
            ops.greater_equal(agreement, self.switch_patience),
        )
        return lambda_new, corrected, valid, fire, agreement

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._projection_square.assign(0.0)
        self._projection_gradient.assign(0.0)
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_cache.clear()

        step = _numerics.step_count(self)
        iteration = ops.cast(self.iterations, "int32")
        phase = ops.convert_to_tensor(self.phase)
        rate = ops.cast(learning_rate, "float32")
        if self.criterion == "global":
            in_adam = ops.equal(phase, 0)
            lambda_new, corrected, valid, fire, agreement = self._criterion(
                ops.convert_to_tensor(self.lambda_average),
                ops.convert_to_tensor(self._projection_square),
                ops.convert_to_tensor(self._projection_gradient),
                step,
                in_adam,
                ops.convert_to_tensor(self.agreement_steps),
            )
            self.lambda_average.assign(lambda_new)
            self.agreement_steps.assign(agreement)
            self.sgd_learning_rate.assign(
                ops.where(valid, corrected, ops.convert_to_tensor(self.sgd_learning_rate))
            )
            self.switch_learning_rate.assign(
                ops.where(in_adam, rate, ops.convert_to_tensor(self.switch_learning_rate))
            )
            new_phase = ops.where(fire, 1, phase)
        else:
            # 1 once every variable has switched (or the phase was written).
            all_switched = ops.ones((), "int32")
            for state in self._variable_states:
                all_switched = ops.minimum(all_switched, ops.convert_to_tensor(state[0]))
            new_phase = ops.maximum(all_switched, phase)
        # The first SGD step is the first step taken with phase 1.
        first_sgd_step = ops.logical_and(
            ops.equal(phase, 1),
            ops.less(ops.convert_to_tensor(self.switch_iteration), 0),
        )
        self.switch_iteration.assign(
            ops.where(first_sgd_step, iteration, ops.convert_to_tensor(self.switch_iteration))
        )
        self.phase.assign(new_phase)

    def _row(self, learning_rate, dtype, phase, switch_iteration, sgd_rate, switch_rate):
        """This step's coefficients (`_lineage`): Adam's row, or SGD's with
        momentum $\beta_1$ on the first-moment slot, which the first SGD
        step empties, as the paper resets $v$ at the switch."""
        in_sgd = ops.equal(phase, 1)
        first_sgd_step = ops.logical_and(in_sgd, ops.less(switch_iteration, 0))
        rate = ops.cast(learning_rate, "float32")
        usable = ops.greater(switch_rate, 0.0)
        ratio = ops.where(usable, rate / ops.where(usable, switch_rate, 1.0), 0.0)
        sgd = _lineage.Row(
            b1=self.beta_1, c1=1.0,
            k1=ops.cast((1.0 - self.beta_1) * sgd_rate * ratio, dtype),
            v_idle=True,
        ).restarted(first_sgd_step, frozenset({"m"}))
        return in_sgd, first_sgd_step, _lineage.select(
            in_sgd, sgd, self._adam.row(learning_rate, dtype)
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        iteration = ops.cast(self.iterations, "int32")
        step = _numerics.step_count(self)

        if self.criterion == "global":
            phase = ops.convert_to_tensor(self.phase)
            switch_iteration = ops.convert_to_tensor(self.switch_iteration)
            sgd_rate = ops.convert_to_tensor(self.sgd_learning_rate)
            switch_rate = ops.convert_to_tensor(self.switch_learning_rate)
            in_sgd, first_sgd_step, row = self._step_cache.get(
                learning_rate, dtype,
                lambda: self._row(
                    learning_rate, dtype, phase, switch_iteration, sgd_rate, switch_rate
                ),
            )
        else:
            state = self._variable_states[index]
            phase = ops.maximum(
                ops.convert_to_tensor(state[0]), ops.convert_to_tensor(self.phase)
            )
            switch_iteration = ops.convert_to_tensor(state[1])
            sgd_rate = ops.convert_to_tensor(state[3])
            switch_rate = ops.convert_to_tensor(state[4])
            in_sgd, first_sgd_step, row = self._row(
                learning_rate, dtype, phase, switch_iteration, sgd_rate, switch_rate
            )

        # Both phases are one fused update whose coefficients the phase
        # selects; SGD's velocity reuses Adam's first-moment slot.
        guard_zero = self.epsilon == 0.0
        theta, m_new, v_new = _lineage.update(
            row,
            ops.convert_to_tensor(variable),
            ops.convert_to_tensor(momentum),
            ops.convert_to_tensor(velocity),
            gradient,
            guard_zero=guard_zero,
        )
        self.assign(momentum, m_new)
        self.assign(velocity, v_new)
        self.assign(variable, theta)

        def projections():
            # Adam's step p_k is minus the step just subtracted.
            adam_step = ops.cast(_lineage.step(row, m_new, v_new, gradient, guard_zero), "float32")
            return (
                _numerics.squared_norm(adam_step),
                ops.negative(_numerics.sum_of_products(adam_step, gradient)),
            )

        square, dot = _lineage.sums_when(ops.logical_not(in_sgd), projections, 2)
        if self.criterion == "global":
            self.assign_add(self._projection_square, square)
            self.assign_add(self._projection_gradient, dot)
            return

        phase_var, switch_var, lambda_var, rate_var, switch_rate_var, agreement_var = state
        in_adam = ops.logical_not(in_sgd)
        lambda_new, corrected, valid, fire, agreement = self._criterion(
            ops.convert_to_tensor(lambda_var), square, dot, step, in_adam,
            ops.convert_to_tensor(agreement_var),
        )
        self.assign(lambda_var, lambda_new)
        self.assign(agreement_var, agreement)
        self.assign(rate_var, ops.where(valid, corrected, sgd_rate))
        self.assign(
            switch_rate_var, ops.where(in_adam, ops.cast(learning_rate, "float32"), switch_rate)
        )
        self.assign(
            switch_var, ops.where(first_sgd_step, iteration, switch_iteration)
        )
        self.assign(phase_var, ops.where(fire, 1, phase))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "switch_tolerance": self.switch_tolerance,
                "relative_tolerance": self.relative_tolerance,
                "switch_patience": self.switch_patience,
                "switch_warmup": self.switch_warmup,
                "criterion": self.criterion,
            }
        )
        return config
