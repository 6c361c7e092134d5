"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers import _numerics
from keras_optlab.optimizers.base import SteerableOptimizer


# The three ways a step updates the bases, chosen by `ops.switch` inside the
# compiled step. Each takes the factors L_k (already moved by this step's
# gradient) and the bases Q_k of one variable's preconditioned modes, and
# returns the new bases and, per basis, the order in which v is to be
# permuted along its mode. Module functions rather than closures: JAX
# caches what it compiles for a branch by the function, which an eager
# `apply` then reuses from step to step.
_KEEP, _EIGENVECTORS, _POWER_ITERATION = 0, 1, 2


def _identity_orders(bases):
    return [ops.arange(int(basis.shape[0]), dtype="int32") for basis in bases]


def _keep(factors, bases):
    return list(bases), _identity_orders(bases)


def _eigenvectors(factors, bases):
    found = []
    for factor in factors:
        size = int(factor.shape[0])
        # The reference's 1e-30 I, kept for the same numbers.
        _, vectors = ops.eigh(ops.add(factor, ops.multiply(ops.eye(size), 1e-30)))
        found.append(ops.flip(vectors, axis=1))
    return found, _identity_orders(bases)


def _power_iteration(factors, bases):
    refreshed, orders = [], []
    for factor, basis in zip(factors, bases):
        product = ops.matmul(factor, basis)
        # diag(Q^T L Q), the eigenvalues Q estimates, without the product.
        estimated = ops.sum(ops.multiply(basis, product), axis=0)
        order = ops.cast(ops.argsort(ops.negative(estimated)), "int32")
        q, _ = ops.qr(ops.take(product, order, axis=1))
        refreshed.append(q)
        orders.append(order)
    return refreshed, orders


@keras.saving.register_keras_serializable(package="keras_optlab")
class SOAP(SteerableOptimizer):
    r"""SOAP (Vyas et al., 2024).

    SOAP ("ShampoO with Adam in the Preconditioner's eigenbasis") keeps,
    for each mode of a variable, Shampoo's moving average of the
    gradient's second moment along that mode (for a matrix, the left and
    right factors $L = \mathbb{E}[g g^\top]$ and $R = \mathbb{E}[g^\top
    g]$), and runs Adam on the gradient rotated into the eigenvectors of
    those factors. The eigenvectors are computed exactly once, at the
    first step; afterwards one step of power iteration followed by a QR
    decomposition refreshes them every `precondition_frequency` steps,
    while Adam's moments keep adapting at every step in between.

    For a variable $\theta$ of rank $r$, a mode $k$ of size $d_k$ is
    *preconditioned* when $2 \le d_k \le$ `max_precond_dim` and $\theta$
    has rank 2 or more (rank 1 as well with `precondition_1d=True`). Such a
    mode keeps a $d_k \times d_k$ factor $L_k$ and an orthogonal basis
    $Q_k$; every other mode is left unrotated ($Q_k = I$). Write $C_k(g)$
    for the contraction of $g$ with itself over every mode but $k$ ($g
    g^\top$ and $g^\top g$ for a matrix), $x \times_k A$ for the product of
    a tensor with a matrix along mode $k$, and

    $$
    P(x) = x \times_1 Q_1^\top \times_2 Q_2^\top \cdots \times_r Q_r^\top,
    \qquad
    P^{-1}(x) = x \times_1 Q_1 \times_2 Q_2 \cdots \times_r Q_r .
    $$

    With the gradient $g_t$ of the optimizer's step $t = 0, 1, 2, \dots$
    (`optimizer.iterations` before the step), the first step only starts
    the preconditioner; $\theta$, $m$ and $v$ stay as they were:

    $$
    t = 0: \quad L_k = (1 - \beta_s)\, C_k(g_0), \qquad
    Q_k = \text{eigenvectors of } L_k, \text{ eigenvalues descending.}
    $$

    Every later step is an Adam step in the current basis, followed by the
    preconditioner's update with the raw gradient:

    $$
    \begin{aligned}
    \hat g_t &= P(g_t), \qquad
    \tilde m = \beta_1 m_{t-1} + (1 - \beta_1)\, \hat g_t, \qquad
    \tilde v = \beta_2 v_{t-1} + (1 - \beta_2)\, \hat g_t^2 \\
    u_t &= P^{-1}\!\Big(\frac{\tilde m}{\sqrt{\tilde v} + \epsilon}\Big) \\
    \theta' &= \theta_{t-1} - \eta_t\,
        \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\, u_t, \qquad
    \theta_t = \theta' - \eta_t \lambda\, \theta' \\
    L_k &\leftarrow \beta_s L_k + (1 - \beta_s)\, C_k(g_t) \\
    \text{if } t \bmod f = 0&: \quad \sigma_k = \text{the order that sorts }
        \operatorname{diag}(Q_k^\top L_k Q_k) \text{ descending}, \quad
        \tilde v \leftarrow \tilde v \text{ permuted by } \sigma_k
        \text{ along mode } k, \\
    &\phantom{: \quad} Q_k \leftarrow \operatorname{QR}\big(L_k\,
        Q_k[:, \sigma_k]\big)_Q \\
    m_t &= P_{\text{new}}\big(P^{-1}_{\text{old}}(\tilde m)\big), \qquad
    v_t = \tilde v
    \end{aligned}
    $$

    so $m$ is rotated into each new basis while $v$ is only permuted with
    it. With `normalize_grads=True`, $u_t$ is divided by $10^{-30} +
    \operatorname{RMS}(u_t)$ (its root mean square over the variable)
    before the step; with `correct_bias=False` the step size is $\eta_t$
    alone. A variable with no preconditioned mode (a scalar; by default a
    bias or any rank-1 variable; $P = I$) takes Adam's step with SOAP's
    conventions: the first step skipped, $\epsilon$ and the decay as above.

    Symbols map to arguments: $\eta_t$ is `learning_rate` (times the
    optimizer's `lr_scale`), $\beta_1$ `beta_1`, $\beta_2$ `beta_2`,
    $\beta_s$ `shampoo_beta` (`None`: $\beta_2$), $\epsilon$ `epsilon`,
    $\lambda$ `weight_decay`, $f$ `precondition_frequency`.

    This class follows `soap.py` of the authors' repository
    (github.com/nikhilvyas/SOAP, commit a1e5535, December 2024): its
    defaults, its order of operations (the basis used for a step is the one
    from before that step's gradient; the power iteration sorts the
    estimated eigenvalues and permutes $v$ first), its $\epsilon$ added to
    $\sqrt{v}$ with the bias correction in the step size, as Keras' `Adam`
    does, and its decay of the already-updated variable at the
    uncorrected rate $\eta_t$, skipped on the first step.

    Departures and conventions:

    - **`merge_dims` and `data_format` are not provided**: the reference's
      default, `merge_dims=False`, is what this class does. A mode larger
      than `max_precond_dim` is left unrotated, as there; a large
      convolution kernel is not reshaped to fit. A mode of size 1 (the
      kernel of a one-unit `Dense` layer) is left unrotated too, where the
      reference keeps a $1 \times 1$ factor: its basis is $\pm 1$, so the
      steps are the same, and the compiled step has one
      eigendecomposition and one QR fewer.
    - **The step count** is `optimizer.iterations`, shared by all
      variables (with `gradient_accumulation_steps` it counts updates, not
      batches). The reference counts per parameter: a parameter that got
      no gradient on some step starts, and refreshes its basis, later.
    - **Branches inside the compiled step.** The reference skips the first
      step's update and chooses between the eigendecomposition, the
      refresh and neither with Python `if`. Here the same trace serves
      every step: the first step's update is taken with coefficients that
      leave $\theta$, $m$ and $v$ exactly as they were (scalar selects on
      the step count, as in `ADOPT`), and `ops.switch` on the step count
      picks the bases' update (its three branches are compiled once). Only
      the $d_k \times d_k$ matrices pass through the switch; $m$ and $v$
      follow a refreshed basis in a conditional of their own, taken on
      refresh steps only.
    - **float32 linear algebra.** $L_k$ and $Q_k$ are float32 variables
      and the projections, the eigendecomposition, the QR and the update of
      $\theta$ are computed in float32 whatever the variable's dtype; $m$
      and $v$ are stored in the variable's dtype. The reference retries a
      failed `eigh` in float64; inside a compiled step nothing raises, so
      there is no retry (a non-finite $L_k$ gives a non-finite basis).
    - **Same numbers, fewer products.** $\operatorname{diag}(Q^\top L Q)$
      is formed as the column sums of $Q \odot (LQ)$, and the power
      iteration $L\, Q[:, \sigma]$ as the columns of $LQ$ permuted by
      $\sigma$. The $10^{-30} I$ the reference adds to $L_k$ before the
      eigendecomposition is added here too.
    - **Weight decay is the reference's, not Keras'.** The Keras base
      class' decay is not applied on top; `exclude_from_weight_decay` is
      honoured.
    - **Memory and time.** Each variable keeps $m$ and $v$, two slots of its own
      size, plus two float32 $d_k \times d_k$ matrices ($L_k$, $Q_k$) per
      preconditioned mode: a $300 \times 400$ kernel keeps $2 (300^2 +
      400^2) = 500{,}000$ floats on top of Adam's $240{,}000$. Each step
      costs two mode products per preconditioned mode ($g$ into the
      eigenbasis, the step out of it) plus the contraction $C_k$; on a
      refresh (every $f$ steps: one power step and a QR) two more take $m$
      out of the old basis and into the new one, and $v$ is permuted. The
      reference does that round trip of $m$, and permutes $v$ by the
      identity, on every step, where the basis has not changed: skipped
      here (the two runs agree
      to about $10^{-6}$ relative over 200 steps). The eigendecomposition
      runs on the first step only. On TensorFlow, XLA expands each
      eigendecomposition into a loop of its own: compiling the step took
      about 0.4 s more per preconditioned mode on a 2-core CPU.
    - **Rank-deficient first factors.** Where a mode's first factor
      $C_k(g_0)$ has a null space of two or more dimensions ($d_k$ at
      least two more than the product of the other sizes: the 16-mode of
      an $8 \times 16$ or a $16 \times 1$ kernel, a vector of three or
      more with `precondition_1d`), nothing prefers one basis of that
      space to another: the eigendecomposition's choice comes from
      rounding, and later steps depend on it. Runs that differ only in
      rounding therefore do not agree to float32 precision, here as in the
      reference: scaling one gradient of an $8 \times 16$ kernel by
      $1 + 10^{-7}$ moved it by 0.5 % after 12 steps, and two replicas
      summing their gradients do not reproduce one device's run.
    - **Non-finite gradients** are not filtered: they reach $m$, $v$ and
      $L_k$, and through $L_k$ every later basis (on the first step too,
      through the zero coefficients, where the reference leaves $m$ and
      $v$ alone). Wrap the optimizer in
      `keras.optimizers.LossScaleOptimizer` to skip such steps without
      touching any state (a skipped step is not counted).

    Reference:
        Nikhil Vyas, Depen Morwani, Rosie Zhao, Mujin Kwun, Itai Shapira,
        David Brandfonbrener, Lucas Janson, Sham Kakade. "SOAP: Improving
        and Stabilizing Shampoo using Adam". 2024 (ICLR 2025).
        arXiv:2409.11321.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers.soap import SOAP

    model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=SOAP(learning_rate=3e-3, precondition_frequency=10),
                  loss="sparse_categorical_crossentropy")
    ```

    Args:
        learning_rate: A float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            that takes no argument and returns the rate. Defaults to `0.003`.
        beta_1: Decay rate of the first moment, in [0, 1). Defaults to
            `0.95`.
        beta_2: Decay rate of the second moment, in [0, 1). Defaults to
            `0.95`.
        shampoo_beta: Decay rate $\beta_s$ of the factors $L_k$, in
            [0, 1), or `None` to use `beta_2` (the reference's `-1`).
            Defaults to `None`.
        epsilon: Added to $\sqrt{v}$, >= 0. Defaults to `1e-8`.
        weight_decay: Decoupled weight decay $\lambda$, >= 0, or `None` for
            none. Defaults to `0.01`.
        precondition_frequency: $f$, an integer >= 1: the basis is
            refreshed on the steps $t$ that $f$ divides. Defaults to `10`.
        max_precond_dim: The largest mode size that gets a factor, an
            integer >= 1. Defaults to `10000`.
        precondition_1d: Also precondition rank-1 variables (one $d \times
            d$ factor each). Defaults to `False`.
        normalize_grads: Scale each variable's update $u_t$ to RMS 1.
            Defaults to `False`.
        correct_bias: Multiply the step by $\sqrt{1 - \beta_2^t} / (1 -
            \beta_1^t)$. Defaults to `True`.
        **kwargs: Passed to `keras.optimizers.Optimizer`: `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`.
    """

    def __init__(
        self,
        learning_rate: Any = 0.003,
        beta_1: float = 0.95,
        beta_2: float = 0.95,
        shampoo_beta: float | None = None,
        epsilon: float = 1e-8,
        weight_decay: float | None = 0.01,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        precondition_1d: bool = False,
        normalize_grads: bool = False,
        correct_bias: bool = True,
        name: str = "soap",
        **kwargs: Any,
    ) -> None:
        if weight_decay is not None:
            weight_decay = _validation.check_float("weight_decay", weight_decay, low=0.0)
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        self.beta_1 = _validation.check_float("beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = _validation.check_float("beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        if shampoo_beta is not None:
            shampoo_beta = _validation.check_float(
                "shampoo_beta", shampoo_beta, low=0.0, high=1.0, high_open=True
            )
        self.shampoo_beta = shampoo_beta
        self.epsilon = _validation.check_float("epsilon", epsilon, low=0.0)
        self.precondition_frequency = _validation.check_int(
            "precondition_frequency", precondition_frequency, low=1
        )
        self.max_precond_dim = _validation.check_int("max_precond_dim", max_precond_dim, low=1)
        self.precondition_1d = _validation.check_bool("precondition_1d", precondition_1d)
        self.normalize_grads = _validation.check_bool("normalize_grads", normalize_grads)
        self.correct_bias = _validation.check_bool("correct_bias", correct_bias)

    def _preconditioned_modes(self, variable) -> list[bool]:
        """Per mode of `variable`, whether it keeps a factor and a basis."""
        shape = tuple(variable.shape)
        if len(shape) == 1 and not self.precondition_1d:
            return [False]
        # A mode of size 1 has the basis (+-1), which changes nothing (the
        # update does not depend on a basis vector's sign): left unrotated,
        # which spares an eigendecomposition and a QR in the compiled step.
        return [1 < int(size) <= self.max_precond_dim for size in shape]

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        # Per variable, per mode: (factor L_k, basis Q_k), or None for a mode
        # left unrotated. Created in this fixed order: saving matches
        # optimizer variables by index.
        self._factors = []
        for variable in var_list:
            modes = []
            preconditioned = self._preconditioned_modes(variable)
            if self._overwrite_variable_with_gradient(variable):
                preconditioned = [False] * len(preconditioned)
            prefix = str(getattr(variable, "path", variable.name)).replace("/", "_")
            for mode, (size, kept) in enumerate(zip(variable.shape, preconditioned)):
                if not kept:
                    modes.append(None)
                    continue
                size = int(size)
                modes.append(
                    tuple(
                        self.add_variable(
                            shape=(size, size), dtype="float32", name=f"{prefix}_{kind}_{mode}"
                        )
                        for kind in ("shampoo_factor", "eigenbasis")
                    )
                )
            self._factors.append(modes)

    def _apply_weight_decay(self, variables):
        # The reference decays the variable after its step, inside
        # `update_step`, and not on the first step.
        return

    @staticmethod
    def _rotate(x, bases, transpose: bool):
        """`x` times each basis along its mode: $P(x)$ (`transpose=True`,
        into the eigenbasis) or $P^{-1}(x)$. Each product contracts the
        leading axis and appends the new one, so after every mode has been
        visited (unrotated modes moved to the end) the axes are back in
        order."""
        if all(basis is None for basis in bases):
            return x
        rank = len(bases)
        for basis in bases:
            if basis is None:
                x = ops.transpose(x, list(range(1, rank)) + [0])
            else:
                x = ops.tensordot(x, basis, axes=([0], [0 if transpose else 1]))
        return x

    @staticmethod
    def _second_moment_along(gradient, mode: int):
        """$C_k(g)$: `gradient` contracted with itself over every mode but
        `mode`."""
        if len(gradient.shape) == 1:
            return ops.outer(gradient, gradient)
        others = [axis for axis in range(len(gradient.shape)) if axis != mode]
        return ops.tensordot(gradient, gradient, axes=(others, others))

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        momentum = self._momentums[index]
        velocity = self._velocities[index]
        modes = self._factors[index]
        kept = [(axis, pair) for axis, pair in enumerate(modes) if pair is not None]
        bases = [None if pair is None else ops.convert_to_tensor(pair[1]) for pair in modes]

        # Everything in float32; a hyperparameter may be a Python float
        # (then 1 - beta is formed in float64 on the host) or a float32
        # variable (keras_optlab.lab.live). On the first step the
        # coefficients below leave m, v and the variable exactly as they
        # were (m = v = 0 there, and a floor of 1 under sqrt(v) keeps the
        # direction 0 even with epsilon = 0): scalar selects, no branch
        # around the update.
        first = ops.equal(self.iterations, 0)

        def unless_first(value, on_first):
            return ops.where(first, on_first, ops.cast(value, "float32"))

        rate = ops.cast(learning_rate, "float32")
        gradient = ops.cast(gradient, "float32")
        theta = ops.cast(variable, "float32")
        projected = self._rotate(gradient, bases, transpose=True)
        new_m = ops.add(
            ops.multiply(ops.cast(momentum, "float32"), unless_first(self.beta_1, 1.0)),
            ops.multiply(projected, unless_first(1.0 - self.beta_1, 0.0)),
        )
        new_v = ops.add(
            ops.multiply(ops.cast(velocity, "float32"), unless_first(self.beta_2, 1.0)),
            ops.multiply(ops.square(projected), unless_first(1.0 - self.beta_2, 0.0)),
        )
        direction = ops.divide(new_m, ops.add(ops.sqrt(new_v), unless_first(self.epsilon, 1.0)))
        update = self._rotate(direction, bases, transpose=False)
        if self.normalize_grads:
            rms = ops.sqrt(ops.mean(ops.square(update)))
            update = ops.divide(update, ops.add(rms, 1e-30))
        step_size = rate
        if self.correct_bias:
            # t >= 1 wherever the step is used; 1 on the first step keeps it
            # finite.
            step = ops.cast(ops.maximum(self.iterations, 1), "float32")
            correction_1, correction_2 = _numerics.bias_corrections(
                self.beta_1, self.beta_2, step
            )
            step_size = rate * ops.sqrt(correction_2) / correction_1
        moved = ops.subtract(theta, ops.multiply(update, unless_first(step_size, 0.0)))
        # A decay of 0 is skipped, as ADOPT and MARS skip it.
        if self.weight_decay and self._use_weight_decay(variable):
            shrink = unless_first(rate * ops.cast(self.weight_decay, "float32"), 0.0)
            moved = ops.subtract(moved, ops.multiply(moved, shrink))
        self.assign(variable, ops.cast(moved, dtype))
        if not kept:
            self.assign(momentum, ops.cast(new_m, dtype))
            self.assign(velocity, ops.cast(new_v, dtype))
            return

        # The preconditioner moves with this step's raw gradient, after the
        # step: the basis a step uses never contains its own gradient.
        shampoo_beta = self.beta_2 if self.shampoo_beta is None else self.shampoo_beta
        factors = []
        for axis, (factor, _) in kept:
            factor = ops.convert_to_tensor(factor)
            target = self._second_moment_along(gradient, axis)
            factor = ops.add(
                factor,
                ops.multiply(
                    ops.subtract(target, factor), ops.cast(1.0 - shampoo_beta, "float32")
                ),
            )
            factors.append(factor)
        refresh = ops.equal(ops.mod(self.iterations, self.precondition_frequency), 0)
        branch = ops.where(first, _EIGENVECTORS, ops.where(refresh, _POWER_ITERATION, _KEEP))
        new_bases, orders = ops.switch(
            ops.cast(branch, "int32"),
            [_keep, _eigenvectors, _power_iteration],
            factors,
            [bases[axis] for axis, _ in kept],
        )
        rotated = list(bases)
        for (axis, _), new_basis in zip(kept, new_bases):
            rotated[axis] = new_basis

        def follow_the_new_bases():
            # v is permuted with each refreshed basis; m, which lives in the
            # eigenbasis, is taken back to the variable's space and into the
            # new basis.
            permuted = new_v
            for (axis, _), order in zip(kept, orders):
                permuted = ops.take(permuted, order, axis=axis)
            back = self._rotate(new_m, bases, transpose=False)
            return self._rotate(back, rotated, transpose=True), permuted

        # Only a refresh changes the bases' order and directions under m and
        # v (the first step's m and v are 0). On the other steps the
        # reference permutes v by the identity and takes m on the round
        # trip, the identity up to rounding: skipped here. Before the bases
        # are assigned: on PyTorch `bases` are the variables' own tensors,
        # and on TensorFlow a branch may read the variable itself.
        new_m, new_v = ops.cond(
            ops.equal(branch, _POWER_ITERATION),
            follow_the_new_bases,
            lambda: (new_m, new_v),
        )
        for (_, (factor, basis)), new_factor, new_basis in zip(kept, factors, new_bases):
            self.assign(factor, new_factor)
            self.assign(basis, new_basis)
        self.assign(momentum, ops.cast(new_m, dtype))
        self.assign(velocity, ops.cast(new_v, dtype))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "shampoo_beta": self.shampoo_beta,
                "epsilon": self.epsilon,
                "precondition_frequency": self.precondition_frequency,
                "max_precond_dim": self.max_precond_dim,
                "precondition_1d": self.precondition_1d,
                "normalize_grads": self.normalize_grads,
                "correct_bias": self.correct_bias,
            }
        )
        return config
