"""`SWA`: stochastic weight averaging around any optimizer, and
`update_batch_norm` for the averaged weights."""

from __future__ import annotations

from typing import Any, Iterable

import keras
import numpy as np
from keras import ops

from keras_optlab import _validation
from keras_optlab.optimizers._wrapping import InnerDelegation, check_inner
from keras_optlab.optimizers.base import SteerableOptimizer

# Base-class features that the inner optimizer would apply at the wrong
# moments for averaging (EMA swaps in its own average at the end; gradient
# accumulation takes several `apply` calls per real step).
_REFUSED_ON_INNER = ("use_ema", "gradient_accumulation_steps")


@keras.saving.register_keras_serializable(package="keras_optlab")
class SWA(InnerDelegation, SteerableOptimizer):
    r"""Stochastic weight averaging: keeps the average of the weights taken
    every `average_period` steps of any optimizer.

    The wrapped (inner) optimizer trains as it would alone; the trajectory is
    not changed. After the update of step $t$ (0-based `iterations`), with
    $m$ = `start_averaging` and $k$ = `average_period`, each trained
    variable $\theta$ has its average $\bar\theta$ updated when the step is
    a snapshot step:

    $$
    c_t = [\,t \ge m \ \text{and}\ (t - m) \bmod k = 0\,], \qquad
    \bar\theta \leftarrow \bar\theta + c_t\,\frac{\theta_{t+1} - \bar\theta}{n + 1},
    \qquad n \leftarrow n + c_t
    $$

    so that after $n$ snapshots
    $\bar\theta = \frac{1}{n}\sum_{i=0}^{n-1} \theta_{m + ik + 1}$: the first
    snapshot is the weights after step $m$ (the $(m+1)$-th update), as in
    TensorFlow Addons. $n$ is the integer variable `num_averaged`; the
    averages are the optimizer variables named `average`. Both are saved in
    `.keras` files and carried in JAX's train state, so a model saved in
    the middle of a window resumes exactly. The snapshot is a select on the
    scalar $c_t$, not a conditional. Under XLA a select on a scalar costs
    nothing where it keeps the old value: a step between snapshots costs
    what the inner step costs, and a snapshot step one more array read and
    written per variable (docs/benchmarks.md). Averages of float16 and
    bfloat16 variables are kept in float32.

    **Using the average.** Call `optimizer.assign_average_vars(
    model.trainable_variables)` after training (TensorFlow Addons' method),
    or pass `swap_on_end=True`: `fit` then writes the averages into the
    weights when it ends (Keras calls `finalize_variable_values`, as for
    `use_ema`). A variable with no snapshot yet ($n = 0$) keeps its value.
    With `swap_on_end=True` a second `fit` continues from the averaged
    weights (the inner optimizer's state carries on, and so does the
    average, now of the continued trajectory); with the default `False`
    repeated `fit` calls follow the trajectory as one long `fit` would, and
    the average is written in once, when asked. If the model has
    `BatchNormalization` layers, recompute their statistics for the
    averaged weights with `update_batch_norm` (the paper does this by one
    pass over the training data).

    The learning rate is the inner optimizer's, multiplied by this
    wrapper's `lr_scale`, which keras_optlab's callbacks write (the paper's
    schedule, constant or cyclical rate, is given to the inner optimizer).
    `optimizer.learning_rate` reads and sets the inner rate. The
    `iterations` are the inner optimizer's.

    Departures: TensorFlow Addons derives $n$ from `iterations`; here it is
    a variable, so that the count of models is what was averaged. TFA also
    wrote the (initially zero) averages into variables that had none; here
    such a variable keeps its value.

    Reference: Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging
    Weights Leads to Wider Optima and Better Generalization", UAI 2018,
    arXiv:1803.05407.

    Example:

    ```python
    import keras
    from keras_optlab.optimizers import SWA
    from keras_optlab.optimizers.swa import update_batch_norm

    optimizer = SWA(
        keras.optimizers.SGD(0.05, momentum=0.9),
        start_averaging=100, average_period=10,
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, epochs=3, verbose=0)
    optimizer.assign_average_vars(model.trainable_variables)
    update_batch_norm(model, x)  # only if the model has BatchNormalization
    ```

    Args:
        optimizer: The `keras.optimizers.Optimizer` that trains, not yet
            built; not a `LossScaleOptimizer` (wrap that around `SWA`), and
            without `use_ema` or `gradient_accumulation_steps`. Required.
        start_averaging: $m$, the step (0-based) after whose update the
            first snapshot is taken, an int >= 0. Defaults to `0`.
        average_period: $k$, the number of steps between snapshots, an
            int >= 1. Defaults to `10`.
        swap_on_end: Whether `fit` writes the averages into the weights
            when it ends. Defaults to `False`.
        name: Name of the wrapper. Defaults to `None` (`"swa"` with a
            unique suffix).
    """

    def __init__(
        self,
        optimizer: keras.optimizers.Optimizer,
        start_averaging: int = 0,
        average_period: int = 10,
        swap_on_end: bool = False,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_inner(
            "optimizer", optimizer, "SWA", refused=_REFUSED_ON_INNER,
            refused_because="SWA cannot average around it",
        )
        if kwargs:
            # The inner optimizer owns clipping, weight decay, loss scaling.
            raise ValueError(
                "SWA takes no optimizer arguments of its own; set "
                f"`{'`, `'.join(kwargs)}` on the inner optimizer."
            )
        start_averaging = _validation.check_int("start_averaging", start_averaging, low=0)
        average_period = _validation.check_int("average_period", average_period, low=1)
        swap_on_end = _validation.check_bool("swap_on_end", swap_on_end)
        # The wrapper's own rate is never used; 0.0 makes it a variable, so
        # the number of variables is the same built fresh or loaded.
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer
        self.start_averaging = start_averaging
        self.average_period = average_period
        self.swap_on_end = swap_on_end
        # Created here, after `iteration`, `learning_rate` and `lr_scale`,
        # so that its index does not depend on when the optimizer is built.
        self.num_averaged = self._add_scalar("num_averaged", "int32", 0)
        self._averages = []
        # Everything the inner optimizer applies uses the scaled rate.
        self.scale_inner_rate()

    # --- building and stepping (the rest is delegated: see InnerDelegation) ---

    def build(self, var_list):
        if self.built:
            return
        self.inner_optimizer.build(var_list)
        super().build(var_list)
        self._averages = []
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable):
                self._averages.append(None)
                continue
            dtype = keras.backend.standardize_dtype(variable.dtype)
            if dtype in ("float16", "bfloat16"):
                dtype = "float32"
            path = getattr(variable, "path", variable.name).replace("/", "_")
            self._averages.append(
                self.add_variable(
                    shape=variable.shape,
                    dtype=dtype,
                    # Written in replica context under tf.distribute, with
                    # the (identical) weights of the first replica.
                    aggregation="only_first_replica",
                    layout=getattr(variable, "_layout", None),
                    name=f"{path}_average",
                )
            )

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `trainable_variables`, the "
                    "optimizer must already be built. Call "
                    "`optimizer.build(trainable_variables)` first."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(trainable_variables)
                self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)
        self._take_snapshot(trainable_variables)

    def _take_snapshot(self, trainable_variables):
        # The index of the step just taken: the inner optimizer has counted
        # it. (Read afterwards, not before: on PyTorch a tensor read before
        # would alias the counter incremented in place.)
        step = ops.cast(self.inner_optimizer.iterations, "int32") - 1
        offset = step - self.start_averaging
        due = ops.logical_and(
            ops.greater_equal(offset, 0),
            ops.equal(ops.mod(ops.maximum(offset, 0), self.average_period), 0),
        )
        count = ops.convert_to_tensor(self.num_averaged)
        weight = 1.0 / ops.cast(count + 1, "float32")
        for variable in trainable_variables:
            average = self._averages[self._get_variable_index(variable)]
            if average is None:
                continue
            old = ops.convert_to_tensor(average)
            theta = ops.cast(ops.convert_to_tensor(variable), old.dtype)
            new = old + (theta - old) * ops.cast(weight, old.dtype)
            self.assign(average, ops.where(due, new, old))
        self.num_averaged.assign(count + ops.cast(due, "int32"))

    # --- the average -------------------------------------------------------------

    def assign_average_vars(self, var_list: Iterable[keras.Variable]) -> None:
        """Writes the averages into `var_list`.

        Variables this optimizer does not train (a `BatchNormalization`
        layer's statistics, when `model.variables` is passed) are left as
        they are; so are all variables while no snapshot has been taken.
        Call it after `fit` (on JAX, during `fit` the live values are not
        in the variables).

        Args:
            var_list: The variables to overwrite, usually
                `model.trainable_variables`.
        """
        if not self.built:
            raise ValueError(
                "SWA has no averages yet: it is built by its first step "
                "(or by `optimizer.build(model.trainable_variables)`)."
            )
        var_list = list(var_list)
        known = [v for v in var_list if self._var_key(v) in self._trainable_variables_indices]
        if var_list and not known:
            raise ValueError(
                "None of the variables passed to `assign_average_vars` is "
                "trained by this optimizer. Pass the model's "
                "`trainable_variables`."
            )
        any_snapshot = ops.greater(ops.convert_to_tensor(self.num_averaged), 0)
        for variable in known:
            average = self._averages[self._get_variable_index(variable)]
            if average is None:
                continue
            value = ops.cast(ops.convert_to_tensor(average), variable.dtype)
            variable.assign(ops.where(any_snapshot, value, ops.convert_to_tensor(variable)))

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)
        if self.swap_on_end:
            self.assign_average_vars(var_list)

    # --- serialisation --------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "start_averaging": self.start_averaging,
            "average_period": self.average_period,
            "swap_on_end": self.swap_on_end,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "SWA":
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)


def swa_sgd(
    learning_rate: Any = 0.01,
    momentum: float = 0.9,
    start_averaging: int = 0,
    average_period: int = 10,
    swap_on_end: bool = False,
    **kwargs: Any,
) -> SWA:
    """Stochastic weight averaging around SGD with momentum: an `SWA`.

    The inner optimizer is `keras.optimizers.SGD(learning_rate,
    momentum=momentum, **kwargs)`; wrap any other optimizer with `SWA`
    directly.

    Args:
        learning_rate: SGD's rate: a float >= 0, a schedule or a callable.
            Defaults to `0.01`.
        momentum: SGD's momentum, in [0, 1). Defaults to `0.9`.
        start_averaging: See `SWA`. Defaults to `0`.
        average_period: See `SWA`. Defaults to `10`.
        swap_on_end: See `SWA`. Defaults to `False`.
        **kwargs: Passed to `keras.optimizers.SGD` (`nesterov`,
            `weight_decay`, clipping, `name`, ...).
    """
    learning_rate = _validation.check_learning_rate(learning_rate)
    momentum = _validation.check_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
    sgd = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, **kwargs)
    return SWA(
        sgd, start_averaging=start_averaging, average_period=average_period,
        swap_on_end=swap_on_end,
    )


def _batch_norm_layers(model: keras.Model) -> list:
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def _batches(data: Any, batch_size: int):
    """Inputs batch by batch: slices of an array (or a dict or tuple of
    arrays), or the `x` of each element of an iterable of batches."""
    if isinstance(data, np.ndarray) or (
        hasattr(data, "shape") and hasattr(data, "dtype") and not hasattr(data, "__next__")
    ):
        total = int(data.shape[0])
        for start in range(0, total, batch_size):
            yield data[start : start + batch_size]
        return
    if isinstance(data, dict):
        total = len(next(iter(data.values())))
        for start in range(0, total, batch_size):
            yield {key: value[start : start + batch_size] for key, value in data.items()}
        return
    for element in data:
        yield element[0] if isinstance(element, (tuple, list)) else element


def update_batch_norm(
    model: keras.Model,
    data: Any,
    batch_size: int = 32,
    steps: int | None = None,
) -> int:
    r"""Recomputes the moving statistics of `model`'s `BatchNormalization`
    layers for its current (averaged) weights.

    During training a batch-normalization layer keeps exponential moving
    averages of its inputs' batch mean and variance, collected along the
    trajectory. Averaged weights never ran on the data, so their statistics
    must be collected again (Izmailov et al., 2018, section 3.2). This runs
    the model in training mode over `data` and makes each trainable
    `BatchNormalization` layer's `moving_mean` and `moving_variance` the
    plain average of the $K$ batches' statistics,

    $$
    \mu = \frac{1}{K}\sum_{k=1}^{K} \mathrm{mean}(x_k), \qquad
    \sigma^2 = \frac{1}{K}\sum_{k=1}^{K} \mathrm{var}(x_k)
    $$

    (each batch weighs the same, whatever its size; $\mathrm{var}$ is the
    biased batch variance Keras normalises with, so $\sigma^2$ leaves out the
    spread of the batch means, as PyTorch's `update_bn` does). It does so by
    setting each layer's `momentum` to $k/(k+1)$ before batch $k+1$, and
    restores the momenta afterwards. Only the layers' statistics change:
    no weights are trained. Frozen layers (`trainable=False`) are left
    alone. Other layers run in training mode too (dropout is active), as
    in the paper.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_optlab.optimizers.swa import update_batch_norm

    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8),
        keras.layers.BatchNormalization(), keras.layers.Dense(1),
    ])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    update_batch_norm(model, x, batch_size=16)  # returns 4, the batches used
    ```

    Args:
        model: A built model; its `BatchNormalization` layers are updated
            in place.
        data: The inputs: an array or a dict of arrays (split into batches
            of `batch_size`), a tuple `(x, y)` of arrays (only `x` is used),
            or an iterable of batches, such as a `tf.data.Dataset`, whose
            elements are `x` or `(x, y)` or `(x, y, sample_weight)`.
        batch_size: The batch size used to split arrays, an int >= 1.
            Defaults to `32`.
        steps: The number of batches to use, an int >= 1, or `None` for all.
            Defaults to `None`.

    Returns:
        The number of batches used (0 if the model has no trainable
        `BatchNormalization` layer, in which case nothing runs).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: model={model!r}"
        )
    batch_size = _validation.check_int("batch_size", batch_size, low=1)
    if steps is not None:
        steps = _validation.check_int("steps", steps, low=1)
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    if isinstance(data, tuple) and not hasattr(data, "shape"):
        # (x, y) arrays: keep x.
        data = data[0]
    saved = [
        (ops.convert_to_numpy(layer.moving_mean), ops.convert_to_numpy(layer.moving_variance))
        for layer in layers
    ]
    count = 0
    try:
        for layer in layers:
            # Weighted 0 by the first batch's momentum; reset all the same.
            layer.moving_mean.assign(ops.zeros(layer.moving_mean.shape, layer.moving_mean.dtype))
            layer.moving_variance.assign(
                ops.ones(layer.moving_variance.shape, layer.moving_variance.dtype)
            )
        for x in _batches(data, batch_size):
            if steps is not None and count >= steps:
                break
            for layer in layers:
                layer.momentum = count / (count + 1.0)
            model(x, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if count == 0:
        for layer, (mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise ValueError(
            "Argument `data` yielded no batch: the statistics are left as they were."
        )
    return count
