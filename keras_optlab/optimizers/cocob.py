"""COCOB-Backprop: training without a learning rate, by betting on the sign
of the gradient."""

from __future__ import annotations

from typing import Any

import keras
import ml_dtypes
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class COCOB(SteerableOptimizer):
    r"""COCOB-Backprop (Orabona & Tommasi, 2017), Algorithm 2.

    Each coordinate is a gambler that bets on the sign of the negative
    gradient, starting with a wealth of $L$ (the largest gradient seen) and
    adding what its bets won, $\text{Reward}_t$. The bet, the displacement of
    the weight from its initial value, is a fraction of that wealth: the
    running sum of negative gradients divided by a bound on its size. While
    the gradient keeps its sign the reward, and with it the bet, grows
    geometrically; when the sign flips the sum shrinks and the bet returns
    toward the initial weight. There is no learning rate to tune.

    With $\tilde g_t = -\nabla f(w_t)$, for each coordinate at step
    $t = 1, 2, \dots$, all state zero at $t = 0$ and $w_1$ the initial
    weights:

    $$
    \begin{aligned}
    L_t &= \max(L_{t-1}, |\tilde g_t|), \qquad G_t = G_{t-1} + |\tilde g_t|,
        \qquad \Theta_t = \Theta_{t-1} + \tilde g_t \\
    \text{Reward}_t &= \max\big(\text{Reward}_{t-1} + x_t \tilde g_t,\ 0\big),
        \qquad x_t = w_t - w_1 \text{ (the current bet)} \\
    x_{t+1} &= \frac{\Theta_t}{L_t \max(G_t + L_t,\ \alpha L_t)}
        \big(L_t + \text{Reward}_t\big) \\
    w_{t+1} &= w_t + \eta_t\, (x_{t+1} - x_t)
    \end{aligned}
    $$

    With $\eta_t = 1$ the last line is the paper's $w_{t+1} = w_1 + x_{t+1}$.

    Symbols map to arguments: $\alpha$ is `alpha`, $\eta_t$ is
    `learning_rate` (times the optimizer's `lr_scale`).

    Departures and conventions:

    - **`learning_rate` multiplies each step.** The algorithm has no
      learning rate; Keras optimizers do, and plateau callbacks, schedules
      and `lr_scale` act on it. Here it scales the change of the weight,
      $w_{t+1} - w_t = \eta_t (x_{t+1} - x_t)$, while the betting state
      ($L$, $G$, $\Theta$, Reward and the bet $x_t$ itself) evolves exactly
      as in the paper. The default `1.0` is the paper's algorithm; a
      schedule that decays to 0 freezes the weights smoothly (lowering the
      rate never jumps the weights back toward $w_1$, which scaling the bet
      itself would do). With $\eta \ne 1$ the rewards are those of the
      paper's bets, not of the moves actually made.
    - **State.** The paper keeps $w_1$; this class keeps the bet $x_t$
      instead (as TensorFlow Addons did), so that a rate other than 1, or
      decoupled weight decay, which move the weight away from $w_1 + x_t$,
      leave the betting intact. Five slots per variable: $L$, $G$, $\Theta$,
      Reward and $x$.
    - **First steps.** While a coordinate has seen only zero gradients,
      $L_t = 0$ and the paper's bet is $0/0$; it is taken as 0 (the weight
      stays at $w_1$), which is the limit. The bet is computed as
      $\frac{\Theta_t}{\max(G_t + L_t, \alpha L_t)}
      \big(1 + \frac{\text{Reward}_t}{L_t}\big)$, which equals the paper's
      expression and does not square $L_t$ (so tiny gradients do not
      underflow in float32).
    - **Large weights.** While a coordinate's gradient keeps its sign (an
      unbounded direction), Reward grows geometrically: TensorFlow Addons'
      test reaches $10^{16}$ in 100 steps of a constant gradient. In float32
      it overflows after a few hundred such steps. When the sum of
      gradients then changes sign, the bet is that large wealth times a sum
      that crosses zero: float32 keeps about $10^{-7} \text{Reward}_t / L_t$
      of relative accuracy there, as any float32 implementation does. The slots have the
      variable's dtype: float16 variables overflow far sooner.
    - **Weight decay** (`weight_decay`) is Keras' decoupled decay,
      $w \leftarrow w - \eta_t \lambda w$ before the step; with the default
      rate 1 that is a fraction $\lambda$ of the weight per step. It is not
      part of the paper.
    - **Non-finite gradients** reach the state. Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` to skip such steps.

    Reference:
        Francesco Orabona, Tatiana Tommasi. "Training Deep Networks without
        Learning Rates Through Coin Betting". NeurIPS 2017. arXiv:1705.07795.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import COCOB

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=COCOB(), loss="sparse_categorical_crossentropy")
    ```

    Args:
        alpha: Bounds the bet in the first steps: it is at most a fraction
            $1/\alpha$ of the wealth while $G_t + L_t < \alpha L_t$. >= 1.
            Defaults to `100`, the paper's and TensorFlow Addons' value. It
            comes first, as in TensorFlow Addons (`COCOB(20)` is
            `alpha=20`); pass `learning_rate` by keyword.
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            returning it: a multiplier on each step (see above). Defaults to
            `1.0`, the paper's algorithm.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        alpha: float = 100.0,
        learning_rate: Any = 1.0,
        name: str = "cocob",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.alpha = _validation.check_float("alpha", alpha, low=1.0)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        (
            self._max_gradients,
            self._gradient_norm_sums,
            self._gradient_sums,
            self._rewards,
            self._bets,
        ) = self.add_optimizer_variables(
            var_list,
            ["max_gradient", "gradient_norm_sum", "gradient_sum", "reward", "bet"],
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        # The paper's g is the negative gradient.
        gradient = ops.negative(ops.cast(gradient, dtype))
        index = self._get_variable_index(variable)
        max_gradient = self._max_gradients[index]
        norm_sum = self._gradient_norm_sums[index]
        gradient_sum = self._gradient_sums[index]
        reward = self._rewards[index]
        bet = self._bets[index]

        magnitude = ops.abs(gradient)
        bet_value = ops.convert_to_tensor(bet)
        new_max = ops.maximum(max_gradient, magnitude)
        new_norm_sum = ops.add(norm_sum, magnitude)
        new_gradient_sum = ops.add(gradient_sum, gradient)
        # max(., 0) written as a select: with `maximum`, XLA fuses the new
        # reward into the loop that computes the bet, which then reads the
        # old reward as well, so the donated reward slot is copied at every
        # step (10M parameters, JAX: 4.25x Keras Adam, 3.38x as a select).
        # `t < 0` is false for NaN, which passes through as with `maximum`.
        unclipped = ops.add(reward, ops.multiply(bet_value, gradient))
        new_reward = ops.where(ops.less(unclipped, 0.0), ops.zeros_like(unclipped), unclipped)

        # L = 0 only where every gradient so far was 0, so that G, Theta and
        # Reward are 0 too: with L raised to the dtype's smallest normal
        # number the bet is then the limit, 0. (A `where` costs twice as much
        # under XLA:CPU; it changes nothing for any L above that number.)
        tiny = float(ml_dtypes.finfo(keras.backend.standardize_dtype(dtype)).tiny)
        safe_max = ops.maximum(new_max, ops.cast(tiny, dtype))
        denominator = ops.maximum(
            ops.add(new_norm_sum, new_max),
            ops.multiply(safe_max, ops.cast(self.alpha, dtype)),
        )
        new_bet = ops.multiply(
            ops.divide(new_gradient_sum, denominator),
            ops.add(ops.divide(new_reward, safe_max), ops.cast(1.0, dtype)),
        )
        # The weight's update needs the new bet and the old one. The weight's
        # loop computes the new bet itself (the same values, `unmerged`), and
        # the bet's slot is written after that loop (`one_after` below), so
        # XLA writes it in place. With the new bet computed once, the bet's
        # loop came first and XLA copied the old bet at every step (24
        # arrays per variable with the copy, 25 now; JAX 3.2x -> 2.5x
        # Keras Adam).
        rate = ops.cast(learning_rate, "float32")
        new_bet_again = ops.multiply(
            ops.divide(_numerics.unmerged(new_gradient_sum, rate), denominator),
            ops.add(ops.divide(_numerics.unmerged(new_reward, rate), safe_max),
                    ops.cast(1.0, dtype)),
        )
        # The weight moves before the bet is overwritten: on TensorFlow
        # `bet_value` may still read the variable.
        self.assign_add(
            variable,
            ops.multiply(ops.subtract(new_bet_again, bet_value), ops.cast(learning_rate, dtype)),
        )
        self.assign(max_gradient, new_max)
        self.assign(norm_sum, new_norm_sum)
        self.assign(gradient_sum, new_gradient_sum)
        self.assign(reward, new_reward)
        after = _numerics.one_after_first(variable)
        self.assign(bet, ops.multiply(new_bet, ops.cast(after, dtype)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"alpha": self.alpha})
        return config
