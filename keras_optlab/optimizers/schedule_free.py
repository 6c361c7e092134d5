"""Schedule-free SGD and AdamW: no learning-rate schedule, an average to
evaluate at."""

from __future__ import annotations

from typing import Any, Iterable

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers._d_adaptation import float32
from keras_optlab.optimizers.base import SteerableOptimizer

_SHARED_DOC = r"""
    At each step $k = 0, 1, \dots$ the gradient $g_k$ is taken at $y_k$, the
    value the model's weights hold during training. With $z_0 = x_0 = y_0$
    (the weights at the first step), $\ell^{\max}_{-1} = -1$, $W_{-1} = 0$:

    $$
    \begin{aligned}
    \gamma_k &= \eta_k \min\Big(1, \frac{k + 1}{T_w}\Big)
        \ \text{(}\gamma_k = \eta_k \text{ when } T_w = 0\text{)}, \qquad
    \ell^{\max}_k = \max(\ell^{\max}_{k-1}, \gamma_k) \\
    w_k &= (k + 1)^r\, (\ell^{\max}_k)^{p}, \qquad
    W_k = W_{k-1} + w_k, \qquad
    c_{k+1} = w_k / W_k \ \text{(0 when } W_k = 0\text{)} \\
    y_{k+1} &= (1 - c_{k+1})\, y_k + c_{k+1} z_k
        + \gamma_k \big(\beta (1 - c_{k+1}) - 1\big)\, u_k \\
    z_{k+1} &= z_k - \gamma_k u_k
    \end{aligned}
    $$

    where $u_k$ is the step direction below. This is the paper's
    $z_{k+1} = z_k - \gamma_k u_k$, $x_{k+1} = (1 - c_{k+1}) x_k +
    c_{k+1} z_{k+1}$, $y_{k+1} = (1 - \beta) z_{k+1} + \beta x_{k+1}$,
    written, as the reference writes it, without storing $x$: the average
    is recovered from $y$ and $z$ as

    $$
    x = y + \Big(1 - \frac{1}{\beta}\Big)(z - y), \qquad
    y = x + (1 - \beta)(z - x).
    $$

    The weights hold $y$ during training. Evaluate, predict and save at
    $x$: `to_x(variables)` moves the given variables from $y$ to $x$ in
    place and `to_y(variables)` moves them back (the reference's `eval()`
    and `train()`); both do nothing when the weights are already there, as
    recorded in the optimizer variable `at_average`. The callback
    `keras_optlab.callbacks.ScheduleFreeEval` calls them around `fit`:
    validation, `evaluate`, `predict` and a model saved after `fit` see
    $x$; training resumes from $y$.

    Symbols map to arguments: $\eta_k$ is `learning_rate` (a float or a
    schedule, times the optimizer's `lr_scale`), $T_w$ `warmup_steps`,
    $r$ `r`, $p$ `weight_lr_power`, $\omega$ `weight_decay`.

    Variables: `steps_taken` ($k$), `lr_max` ($\ell^{\max}$, -1 before the
    first step), `weight_sum` ($W$), `at_average` (1 while the weights hold
    $x$, else 0), and one slot $z$ per variable.
"""

_SHARED_DEPARTURES = r"""
    - **Training at $x$ is not refused.** The reference raises if `step()`
      is called in eval mode; a compiled step cannot raise, so a step taken
      while `at_average` is 1 takes the gradient at $x$ and treats the
      weights as $y$. Use `ScheduleFreeEval` (or `to_y` before training).
    - **Float32 scalars.** The reference keeps $\ell^{\max}$ and $W$ in
      Python float64; here they are float32 variables. $W$ is a running
      sum: after $n$ equal weights it carries up to about $n \cdot 6
      \times 10^{-8}$ relative error (1e-3 at 2e4 steps), which enters
      $c_{k+1}$ as the same relative error; the average is only slightly
      reweighted. The step is computed in float32 whatever the variables'
      dtype; $z$ (and AdamW's $v$) have the variables' dtype, as in the
      reference.
    - **$z$ starts at the weights of the first step taken** (the reference
      clones $p$ at its first `step()`), not at build time; `to_x` and
      `to_y` do nothing before the first step, where $x = y = z$.
    - **Weight decay is the reference's**, applied at $y$ inside the step;
      Keras' decoupled decay is not applied on top.
      `exclude_from_weight_decay` is honoured.
    - **Not carried over:** parameter groups and `foreach` (one group;
      Keras fuses the element-wise ops itself).
    - **Non-finite gradients** are not filtered: they reach $y$ and $z$
      (and $v$). Wrap the optimizer in `keras.optimizers.LossScaleOptimizer`
      to skip such steps; a skipped step changes no variable, `steps_taken`
      included.
"""


class _ScheduleFree(SteerableOptimizer):
    """What schedule-free SGD and AdamW share: the scalars, $z$, the
    interpolation and the moves between $y$ and $x$. Subclasses give
    `_interpolation` ($\\beta$) and `_directions` ($u_k$)."""

    def __init__(
        self,
        learning_rate: Any,
        weight_decay: float,
        warmup_steps: int,
        r: float,
        weight_lr_power: float,
        name: str,
        **kwargs: Any,
    ) -> None:
        weight_decay = _validation.check_float("weight_decay", weight_decay, low=0.0)
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.warmup_steps = _validation.check_int("warmup_steps", warmup_steps, low=0)
        self.r = _validation.check_float("r", r, low=0.0)
        self.weight_lr_power = _validation.check_float(
            "weight_lr_power", weight_lr_power, low=0.0
        )
        # Fixed order, right after `iteration` and `lr_scale`.
        self.steps_taken = self._add_scalar("steps_taken", "int32", 0)
        # -1: the reference's initial value, below any learning rate.
        self.lr_max = self._add_scalar("lr_max", initial=-1.0)
        self.weight_sum = self._add_scalar("weight_sum")
        self.at_average = self._add_scalar("at_average", "int32", 0)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._z = self.add_optimizer_variables(var_list, "z")

    def _apply_weight_decay(self, variables):
        # The reference's decay is added to the step direction at y.
        return

    def _decays(self, variable) -> bool:
        return bool(self.weight_decay) and self._use_weight_decay(variable)

    def _interpolation(self):
        raise NotImplementedError

    def _directions(self, gradient, variable, value, learning_rate):
        """$u_k$ without weight decay, twice: for $z$'s loop and for the
        variable's. Where it costs a division or a root, the second is
        written with `_numerics.unmerged`, so that each loop computes it:
        one expression read by two loops was stored as a full-size array at
        every step, which took schedule-free AdamW to 1.7x Keras Adam on
        JAX."""
        raise NotImplementedError

    def _step_scalars(self, learning_rate):
        """`(first, rate, lr_max, weight_sum, average_weight)` of this step:
        whether no step was taken yet, $\\gamma_k$, $\\ell^{\\max}_k$, $W_k$
        and $c_{k+1}$, all float32."""
        steps = ops.convert_to_tensor(self.steps_taken)
        first = ops.equal(steps, 0)
        count = ops.cast(steps + 1, "float32")
        rate = ops.cast(learning_rate, "float32")
        if self.warmup_steps > 0:
            rate = rate * ops.minimum(count / float(self.warmup_steps), 1.0)
        lr_max = ops.maximum(ops.convert_to_tensor(self.lr_max), rate)
        weight = ops.power(lr_max, self.weight_lr_power)
        if self.r:
            weight = weight * ops.power(count, self.r)
        weight_sum = ops.convert_to_tensor(self.weight_sum) + weight
        positive = ops.greater(weight_sum, 0.0)
        average_weight = ops.where(
            positive, weight / ops.where(positive, weight_sum, 1.0), 0.0
        )
        return first, rate, lr_max, weight_sum, average_weight

    def update_step(self, gradient, variable, learning_rate):
        z = self._z[self._get_variable_index(variable)]
        first, rate, _, _, c = self._step_scalars(learning_rate)
        value = ops.cast(variable, "float32")
        directions = self._directions(ops.cast(gradient, "float32"), variable, value, rate)
        if self._decays(variable):
            directions = [d + value * float32(self.weight_decay) for d in directions]
        direction, direction_again = directions
        z_value = ops.where(first, value, ops.cast(z, "float32"))
        beta = float32(self._interpolation())
        new_z = z_value - rate * direction
        # y' = (1 - c) y + c z' - rate (1 - beta)(1 - c) d, the reference's
        # y' = y + c (z - y) + rate (beta (1 - c) - 1) d written with the new
        # z: the variable's loop then reads z' and runs after z's, so XLA
        # writes both in place (with the old z in both loops, it copied the
        # variable and z at every step: schedule-free SGD ran at 3.8x
        # Keras SGD with momentum on JAX).
        new_value = (
            value + c * (new_z - value) - rate * (1.0 - beta) * (1.0 - c) * direction_again
        )
        self.assign(z, ops.cast(new_z, z.dtype))
        self.assign(variable, ops.cast(new_value, variable.dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        _, _, lr_max, weight_sum, _ = self._step_scalars(learning_rate)
        self.assign(self.lr_max, lr_max)
        self.assign(self.weight_sum, weight_sum)
        self.assign_add(self.steps_taken, 1)

    # The control plane: eager, between steps.

    def to_x(self, variables: Iterable[keras.Variable]) -> None:
        """Moves `variables` (the model's trainable variables) from $y$ to
        the average $x$, in place; nothing if they hold $x$ already."""
        self._move(variables, to_average=True)

    def to_y(self, variables: Iterable[keras.Variable]) -> None:
        """Moves `variables` back from $x$ to $y$, where training continues;
        nothing if they hold $y$ already."""
        self._move(variables, to_average=False)

    def _move(self, variables, to_average: bool) -> None:
        at_average = bool(ops.convert_to_numpy(self.at_average))
        if at_average == to_average:
            return
        if self.built and int(ops.convert_to_numpy(self.steps_taken)) > 0:
            beta = float(ops.convert_to_numpy(self._interpolation()))
            factor = 1.0 - 1.0 / beta if to_average else 1.0 - beta
            move_between_y_and_x(self, self._z, variables, factor)
        self.at_average.assign(1 if to_average else 0)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "warmup_steps": self.warmup_steps,
                "r": self.r,
                "weight_lr_power": self.weight_lr_power,
            }
        )
        return config


def move_between_y_and_x(optimizer, z_slots, variables, factor: float) -> None:
    """`v <- v + factor (z - v)` for each variable the optimizer has a $z$
    slot for (`factor = 1 - 1/beta`: y to x; `1 - beta`: x to y), in
    float32. Also serves `keras.optimizers.ScheduleFreeAdamW`, whose slot
    `momentum` is $z$."""
    for variable in variables:
        try:
            index = optimizer._get_variable_index(variable)
        except KeyError:
            continue
        z = z_slots[index]
        if z is None:
            continue
        value = ops.cast(variable, "float32")
        moved = value + factor * (ops.cast(z, "float32") - value)
        variable.assign(ops.cast(moved, variable.dtype))


@keras.saving.register_keras_serializable(package="keras_optlab")
class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD (Defazio et al., 2024): SGD with momentum whose
    average needs no learning-rate schedule.

    Momentum is replaced by evaluating the gradient at an interpolation
    $y$ between the SGD iterate $z$ and the running average $x$ of the
    $z$'s. The average is weighted by the largest learning rate so far
    squared, so the steps of a warmup count less; no decay to zero and no
    known run length are needed, and $x$ is what to evaluate.
    """ + _SHARED_DOC + r"""
    Here $\beta$ is `momentum` and the direction is the gradient plus
    weight decay, $u_k = g_k + \omega\, y_k$ (so $z$ is plain SGD on the
    decayed loss).

    This class follows the authors' PyTorch package `schedulefree` 1.4
    (github.com/facebookresearch/schedule_free, `SGDScheduleFree`): its
    defaults (learning rate 1.0, momentum 0.9, $p = 2$, $r = 0$, no warmup)
    and its order of operations.

    Departures and conventions:
    """ + _SHARED_DEPARTURES + r"""
    Reference:
        Aaron Defazio, Xingyu Alice Yang, Harsh Mehta, Konstantin Mishchenko,
        Ahmed Khaled, Ashok Cutkosky. "The Road Less Scheduled". NeurIPS
        2024. arXiv:2405.15682.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import ScheduleFreeEval
    from keras_optlab.optimizers.schedule_free import ScheduleFreeSGD

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=ScheduleFreeSGD(warmup_steps=100),
                  loss="sparse_categorical_crossentropy")
    # model.fit(x, y, validation_data=..., callbacks=[ScheduleFreeEval()])
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate (no schedule is needed). Defaults to `1.0`.
        momentum: $\beta$, the interpolation between $z$ and $x$, in
            (0, 1). Defaults to `0.9`.
        weight_decay: $\omega$, >= 0, added to the gradient at $y$.
            Defaults to `0.0`.
        warmup_steps: $T_w$, an integer >= 0: the learning rate rises
            linearly over the first $T_w$ steps. Defaults to `0`.
        r: Power of the step count in the weights of the average, >= 0.
            Defaults to `0.0`.
        weight_lr_power: $p$, power of the largest learning rate so far in
            the weights of the average, >= 0 (0: equal weights). Defaults to
            `2.0`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        name: str = "schedule_free_sgd",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            name=name,
            **kwargs,
        )
        self.momentum = _validation.check_float(
            "momentum", momentum, low=0.0, high=1.0, low_open=True, high_open=True
        )

    def _interpolation(self):
        return self.momentum

    def _directions(self, gradient, variable, value, learning_rate):
        return gradient, gradient

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["momentum"] = self.momentum
        return config


@keras.saving.register_keras_serializable(package="keras_optlab")
class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW (Defazio et al., 2024): Adam's normalized step
    with the schedule-free interpolation and average instead of momentum.
    """ + _SHARED_DOC + r"""
    Here $\beta$ is `beta_1`, and the direction is the gradient divided by
    the bias-corrected root mean square of past gradients, plus weight
    decay at $y$:

    $$
    v_{k+1} = \beta_2 v_k + (1 - \beta_2)\, g_k^2, \qquad
    u_k = \frac{g_k}{\sqrt{v_{k+1} / (1 - \beta_2^{k+1})} + \epsilon}
        + \omega\, y_k .
    $$

    There is no first moment: $\beta_1$ acts only through $y$.

    This class follows the authors' PyTorch package `schedulefree` 1.4
    (github.com/facebookresearch/schedule_free, `AdamWScheduleFree`): its
    defaults (learning rate 0.0025, betas (0.9, 0.999), $\epsilon$ = 1e-8,
    $p = 2$, $r = 0$, no warmup) and its order of operations. Its later
    `inner_momentum` option (after 1.4.1) is not carried over.

    Keras' own `keras.optimizers.ScheduleFreeAdamW` (Keras 3.15) keeps the
    same $y$ and $z$ (its slot `momentum`) and the same relation between
    $x$, $y$ and $z$, so `ScheduleFreeEval` serves it exactly; its step
    differs from the reference's: the average has equal weights $1/t$
    (as $p = 0$, also during warmup), $t$ is `iterations` (which counts
    gradient-accumulation calls too), its weight decay is Keras' decoupled
    $y \leftarrow y (1 - \eta \omega)$ before the step (not warmed up, not
    entering $z$), and it computes in the variables' dtype. Its step also
    differs by backend: on TensorFlow and PyTorch it recovers $x$ with
    the slot already updated ($z_{k+1}$; `momentum.value` is the live
    variable there), on JAX with $z_k$, so only on JAX is its $x$ the
    mean of the $z$'s (checked in the tests).

    Departures and conventions:
    """ + _SHARED_DEPARTURES + r"""
    - **Argument checks the reference lacks:** `beta_1` in (0, 1) (its
      `eval()` divides by it), `beta_2` in [0, 1), `epsilon` > 0.

    Reference:
        Aaron Defazio, Xingyu Alice Yang, Harsh Mehta, Konstantin Mishchenko,
        Ahmed Khaled, Ashok Cutkosky. "The Road Less Scheduled". NeurIPS
        2024. arXiv:2405.15682.

    Example:

    ```python
    import keras
    from keras_optlab.callbacks import ScheduleFreeEval
    from keras_optlab.optimizers.schedule_free import ScheduleFreeAdamW

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=ScheduleFreeAdamW(warmup_steps=100),
                  loss="sparse_categorical_crossentropy")
    # model.fit(x, y, validation_data=..., callbacks=[ScheduleFreeEval()])
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning the rate (no schedule is needed). Defaults to
            `0.0025`.
        beta_1: $\beta$, the interpolation between $z$ and $x$, in (0, 1).
            Defaults to `0.9`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.999`.
        epsilon: Added to the root of $v$, > 0. Defaults to `1e-8`.
        weight_decay: $\omega$, >= 0, added to the normalized step at $y$.
            Defaults to `0.0`.
        warmup_steps: $T_w$, an integer >= 0: the learning rate rises
            linearly over the first $T_w$ steps. Defaults to `0`.
        r: Power of the step count in the weights of the average, >= 0.
            Defaults to `0.0`.
        weight_lr_power: $p$, power of the largest learning rate so far in
            the weights of the average, >= 0 (0: equal weights). Defaults to
            `2.0`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.0025,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        name: str = "schedule_free_adamw",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            name=name,
            **kwargs,
        )
        self.beta_1 = _validation.check_float(
            "beta_1", beta_1, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0, low_open=True)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._velocities = self.add_optimizer_variables(var_list, "velocity")

    def _interpolation(self):
        return self.beta_1

    def _directions(self, gradient, variable, value, learning_rate):
        velocity = self._velocities[self._get_variable_index(variable)]
        beta_2 = float32(self.beta_2)
        count = ops.cast(ops.convert_to_tensor(self.steps_taken) + 1, "float32")
        correction = _numerics.one_minus_power(self.beta_2, count)
        new_velocity = ops.cast(velocity, "float32") * beta_2 + ops.square(gradient) * (
            1.0 - beta_2
        )
        self.assign(velocity, ops.cast(new_velocity, velocity.dtype))
        epsilon = float32(self.epsilon)
        again = _numerics.unmerged(new_velocity, learning_rate)
        return (
            gradient / (ops.sqrt(new_velocity / correction) + epsilon),
            gradient / (ops.sqrt(again / correction) + epsilon),
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
