"""ADOPT: Adam with the gradient normalised by the previous second moment."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class ADOPT(SteerableOptimizer):
    r"""ADOPT (Taniguchi et al., 2024).

    Adam can diverge unless $\beta_2$ is chosen for the problem, because its
    step divides $g_t$ by a second moment that contains $g_t$ itself. ADOPT
    divides $g_t$ by the second moment of the *previous* steps, and does so
    before the momentum (Adam normalises after it): the normalised gradient
    is then unbiased given the past, and the method converges at the optimal
    rate with any $\beta_2$. A clip of the normalised gradient, growing with
    the step, guards against a near-zero second moment early in training.

    For each variable $\theta$, with the gradient $g_t$ of the optimizer's
    step $t = 0, 1, 2, \dots$ (`optimizer.iterations` before the step):

    $$
    \begin{aligned}
    t = 0&: \quad v_0 = g_0^2, \qquad m_0 = 0, \qquad
        \theta \text{ unchanged} \\
    t \ge 1&: \quad \hat g_t = \operatorname{clip}\!\Big(
        \frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},\, -c_t,\, c_t\Big),
        \qquad c_t = t^{p} \\
    &\phantom{: \quad} m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, \hat g_t \\
    &\phantom{: \quad} \theta_t = \theta_{t-1} - \eta_t\, m_t \\
    &\phantom{: \quad} v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2
    \end{aligned}
    $$

    The first step only measures $v_0$: the variable moves from the second
    step on, and $c_t$ there is $1^p = 1$, then $2^p, 3^p, \dots$ With
    `weight_decay` $\lambda$ and `decouple=False`, $g_t$ is replaced by
    $g_t + \lambda \theta_{t-1}$ everywhere above (step 0 included); with
    `decouple=True`, $\theta_{t-1} \leftarrow (1 - \eta_t \lambda)\,
    \theta_{t-1}$ before each update from step 1 on (not on step 0).

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $p$ `clip_exponent` (`None`: no clip), $\lambda$
    `weight_decay`.

    This class follows the authors' PyTorch implementation, `torch-adopt`
    0.1.0 (github.com/iShohei220/adopt, commit 6468572), its single-tensor
    and multi-tensor paths alike: the same defaults, `max` (not `+`) for
    $\epsilon$, no bias correction, the clip $t^{1/4}$ with $t$ counted from
    0 at the first call, and weight decay coupled unless `decouple=True`.

    Departures and conventions:

    - **The clip schedule** is `step ** clip_exponent`, where the reference
      takes any Python callable `clip_lambda` (default `lambda step:
      step**0.25`): a callable cannot be saved in a config. `None` turns the
      clip off, as `clip_lambda=None` does (the paper's first version).
    - **Step 0 without a branch.** The reference skips the update with a
      Python `if step == 0`; here the step is taken with coefficients that
      make it leave $m$ and $\theta$ exactly as they were and set $v = g^2$
      (the control-plane rule: coefficients, not branches). The step counted
      is `optimizer.iterations`, which with `gradient_accumulation_steps`
      counts updates, not batches.
    - **Weight decay is the reference's, not Keras'.** `weight_decay` is
      coupled (added to the gradient, like L2) by default and decoupled
      with `decouple=True`; the Keras base class' decoupled decay is not
      applied on top. `exclude_from_weight_decay` is honoured by both forms.
    - `maximize`, `foreach`, `fused`, `capturable`, `differentiable` and
      complex variables are PyTorch matters with no counterpart here.
    - **Non-finite gradients** are not filtered: they reach $v$ and $m$
      (a NaN reaches $m$ on step 0 as well, through its zero coefficient,
      where the reference leaves $m$ alone); an infinite element of
      $g_t / \sqrt{v_{t-1}}$ is clipped to $\pm c_t$ but makes $v_t$
      infinite. Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` to skip such steps without
      touching any state (a skipped step is not counted, so the first step
      that is taken is step 0).

    Reference:
        Shohei Taniguchi, Keno Harada, Gouki Minegishi, Yuta Oshima, Seong
        Cheol Jeong, Go Nagahara, Tomoshi Iiyama, Masahiro Suzuki, Yusuke
        Iwasawa, Yutaka Matsuo. "ADOPT: Modified Adam Can Converge with Any
        $\beta_2$ with the Optimal Rate". NeurIPS 2024. arXiv:2411.02853.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers.adopt import ADOPT

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=ADOPT(learning_rate=1e-3, weight_decay=0.01, decouple=True),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        beta_1: Decay rate of the momentum of normalised gradients, in
            [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.9999`.
        epsilon: Lower bound of $\sqrt{v_{t-1}}$, >= 0. Defaults to `1e-6`.
        clip_exponent: $p$ in the clip bound $c_t = t^p$, >= 0, or `None`
            for no clip. Defaults to `0.25`.
        weight_decay: $\lambda$, >= 0, or `None` for none; its form is set
            by `decouple`. Defaults to `0.0`.
        decouple: Decoupled weight decay, as in AdamW (`True`), or the
            gradient-added (L2) form (`False`). Defaults to `False`, as the
            reference; its authors advise `True` where AdamW was used.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.9999,
        epsilon: float = 1e-6,
        clip_exponent: float | None = 0.25,
        weight_decay: float | None = 0.0,
        decouple: bool = False,
        name: str = "adopt",
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
        if clip_exponent is not None:
            clip_exponent = _validation.check_float("clip_exponent", clip_exponent, low=0.0)
        self.clip_exponent = clip_exponent
        self.decouple = _validation.check_bool("decouple", decouple)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def _apply_weight_decay(self, variables):
        # `weight_decay` is the reference's (coupled, or decoupled from step
        # 1 on), applied inside `update_step`; the base class would apply a
        # decoupled decay on step 0 as well, and on top of the coupled one.
        return

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]

        # Scalar coefficients in float32 (hyperparameters may be float32
        # variables: see keras_optlab.lab.live), cast once to the dtype.
        step = ops.cast(self.iterations, "float32")
        first = ops.equal(self.iterations, 0)
        learning_rate = ops.cast(learning_rate, "float32")
        # A decay of 0 (the default) is no decay: added as 0 * variable, it
        # made every loop of the compiled update read the variable, and XLA
        # then copied the variable at every step (see docs/benchmarks.md).
        decays = bool(self.weight_decay) and self._use_weight_decay(variable)
        if decays and not self.decouple:
            gradient = ops.add(
                gradient, ops.multiply(variable, ops.cast(self.weight_decay, dtype))
            )
        if decays and self.decouple:
            shrink = ops.where(first, 0.0, learning_rate * ops.cast(self.weight_decay, "float32"))
            self.assign_sub(variable, ops.multiply(variable, ops.cast(shrink, dtype)))

        # On step 0 the momentum's rate is 0, so m and theta stay exactly as
        # they were; a floor of 1 keeps g / floor finite there (v is 0).
        floor = ops.where(first, 1.0, ops.cast(self.epsilon, "float32"))
        normalised = ops.divide(
            gradient, ops.maximum(ops.sqrt(velocity), ops.cast(floor, dtype))
        )
        if self.clip_exponent is not None:
            bound = ops.cast(ops.power(step, ops.cast(self.clip_exponent, "float32")), dtype)
            normalised = ops.clip(normalised, ops.negative(bound), bound)
        # 1 - beta in float64 on the host when beta is a Python float.
        momentum_rate = ops.where(first, 0.0, ops.cast(1.0 - self.beta_1, "float32"))
        self.assign_add(
            momentum,
            ops.multiply(ops.subtract(normalised, momentum), ops.cast(momentum_rate, dtype)),
        )
        self.assign_sub(variable, ops.multiply(momentum, ops.cast(learning_rate, dtype)))

        # v moves after the step: the step above read v_{t-1}. On step 0
        # it becomes g_0^2 (v starts at 0). The rate is multiplied by an
        # exact 1 read from the new momentum's first element: the loop that
        # writes v then runs after the momentum's loop, which read v_{t-1},
        # and XLA writes v in place instead of copying it every step.
        velocity_rate = ops.where(first, 1.0, ops.cast(1.0 - self.beta_2, "float32"))
        after_momentum = _numerics.one_after_first(momentum)
        self.assign_add(
            velocity,
            ops.multiply(
                ops.subtract(ops.square(gradient), velocity),
                ops.cast(velocity_rate * after_momentum, dtype),
            ),
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "clip_exponent": self.clip_exponent,
                "decouple": self.decouple,
            }
        )
        return config
