"""NovoGrad: momentum on gradients normalised by a layer-wise second moment."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


@keras.saving.register_keras_serializable(package="keras_optlab")
class NovoGrad(SteerableOptimizer):
    r"""NovoGrad (Ginsburg et al., 2019).

    NovoGrad keeps Adam's idea of dividing the gradient by a running root
    mean square, but with one second moment per variable (per layer) instead
    of one per element: it stores a full-size momentum and a scalar. The
    gradient of each variable is normalised by that scalar before it enters
    the momentum, so every layer takes steps of comparable size whatever the
    scale of its gradient, and weight decay is added to the normalised
    gradient.

    For each variable $\theta$ with gradient $g_t$ at step $t = 1, 2, \dots$:

    $$
    \begin{aligned}
    v_1 &= \lVert g_1 \rVert^2, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) \lVert g_t \rVert^2 \quad (t > 1) \\
    \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(with `amsgrad`; else }
        \hat v_t = v_t) \\
    m_t &= \beta_1 m_{t-1} + c_t \Big( \frac{g_t}{\sqrt{\hat v_t} + \epsilon}
        + d\, \theta_{t-1} \Big), \qquad m_0 = 0 \\
    \theta_t &= \theta_{t-1} - \eta_t\, m_t
    \end{aligned}
    $$

    where $\lVert g_t \rVert^2$ is the sum of the squares of all the
    elements of the variable's gradient, and $c_t = 1$, or with
    `grad_averaging=True` $c_1 = 1$ and $c_t = 1 - \beta_1$ for $t > 1$.

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\epsilon$ `epsilon`, $d$ `weight_decay`.

    Departures and conventions:

    - **Weight decay is the paper's, not Keras'.** $d\,\theta_{t-1}$ is added
      to the normalised gradient inside $m_t$, so it is carried by the
      momentum and scaled by $\eta_t$, as in the paper and in TensorFlow
      Addons' `NovoGrad`. The Keras base class' decoupled decay
      ($\theta \leftarrow \theta - \eta_t \lambda \theta$, which `weight_decay`
      means for `keras.optimizers.AdamW`) is *not* applied on top: the one
      `weight_decay` argument is $d$, and it acts once.
      `exclude_from_weight_decay` is honoured: an excluded variable gets
      $d = 0$.
    - **First step.** $v_1 = \lVert g_1 \rVert^2$ rather than
      $(1 - \beta_2)\lVert g_1 \rVert^2$, and with `grad_averaging` the first
      normalised gradient enters $m_1$ whole ($c_1 = 1$), as in the paper and
      TensorFlow Addons. "First" is the optimizer's first step
      (`iterations == 0`).
    - **Learning rate outside the momentum.** $m_t$ does not contain
      $\eta$, as in the paper. TensorFlow Addons folded the rate into its
      momentum (Keras' momentum kernel, $a_t = \beta_1 a_{t-1} - \eta_t
      \ldots$), which is the same for a constant rate but not under a
      schedule.
    - **AMSGrad** keeps a scalar running maximum $\hat v_t$ per variable
      (TensorFlow Addons allocated it at the variable's full size).
    - **Epsilon** is added to $\sqrt{\hat v_t}$, as in the paper. Its default
      `1e-7` is TensorFlow Addons' (and Keras' `Adam`'s); the paper's code
      uses `1e-8`.
    - The squared norm is summed in float32 whatever the variable's dtype,
      so that float16 gradients do not overflow; $v_t$ is a float32 scalar.
    - **Non-finite gradients** reach $m_t$ and $v_t$ (a single non-finite
      element makes the whole variable's $v_t$ non-finite). Wrap the
      optimizer in `keras.optimizers.LossScaleOptimizer` to skip such steps.

    Reference:
        Boris Ginsburg, Patrice Castonguay, Oleksii Hrinchuk, Oleksii
        Kuchaiev, Vitaly Lavrukhin, Ryan Leary, Jason Li, Huyen Nguyen, Yang
        Zhang, Jonathan M. Cohen. "Stochastic Gradient Methods with
        Layer-wise Adaptive Moments for Training of Deep Networks". 2019.
        arXiv:1905.11286.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import NovoGrad

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=NovoGrad(learning_rate=0.01, weight_decay=1e-3),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.001`.
        beta_1: Momentum decay, in [0, 1). Defaults to `0.9`.
        beta_2: Decay rate of the layer-wise second moment, in [0, 1).
            Defaults to `0.999`.
        epsilon: Added to $\sqrt{\hat v_t}$, >= 0. Defaults to `1e-7`.
        weight_decay: The paper's $d$, >= 0, added to the normalised gradient
            inside the momentum (see above; not Keras' decoupled decay).
            `None` or `0` for none. Defaults to `0`.
        grad_averaging: Multiply the normalised gradient by $1 - \beta_1$
            from the second step on, so that $m_t$ is a moving average.
            Defaults to `False`.
        amsgrad: Normalise by the running maximum of $v_t$. Defaults to
            `False`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = 0.0,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        name: str = "novograd",
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
        self.grad_averaging = _validation.check_bool("grad_averaging", grad_averaging)
        self.amsgrad = _validation.check_bool("amsgrad", amsgrad)

    def _add_layer_scalars(self, var_list, name):
        return [
            self.add_variable(
                shape=(),
                dtype="float32",
                name=f"{getattr(v, 'path', v.name).replace('/', '_')}_{name}",
            )
            for v in var_list
        ]

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._velocities = self._add_layer_scalars(var_list, "layer_velocity")
        if self.amsgrad:
            self._velocity_maxima = self._add_layer_scalars(var_list, "layer_velocity_max")

    def _apply_weight_decay(self, variables):
        # `weight_decay` is the paper's d, applied inside `update_step`; the
        # base class' decoupled decay would apply it a second time.
        return

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]

        squared_norm = _numerics.squared_norm(gradient)
        first = ops.equal(self.iterations, 0)
        self.assign(
            velocity,
            ops.where(
                first,
                squared_norm,
                self.beta_2 * velocity + (1.0 - self.beta_2) * squared_norm,
            ),
        )
        normaliser = velocity
        if self.amsgrad:
            velocity_max = self._velocity_maxima[index]
            self.assign(velocity_max, ops.maximum(velocity_max, velocity))
            normaliser = velocity_max

        # Scalar coefficients in float32, cast once to the variable's dtype.
        gradient_scale = 1.0 / (ops.sqrt(normaliser) + self.epsilon)
        decays = bool(self.weight_decay) and self._use_weight_decay(variable)
        decay = self.weight_decay if decays else 0.0
        if self.grad_averaging:
            share = ops.where(first, 1.0, 1.0 - self.beta_1)
            gradient_scale = gradient_scale * share
            decay = decay * share
        increment = ops.multiply(ops.cast(gradient, dtype), ops.cast(gradient_scale, dtype))
        if decays:
            increment = ops.add(increment, ops.multiply(variable, ops.cast(decay, dtype)))
        self.assign(
            momentum,
            ops.add(ops.multiply(momentum, ops.cast(self.beta_1, dtype)), increment),
        )
        self.assign_sub(
            variable, ops.multiply(momentum, ops.cast(learning_rate, dtype))
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "grad_averaging": self.grad_averaging,
                "amsgrad": self.amsgrad,
            }
        )
        return config
