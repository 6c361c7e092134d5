"""Shared fixtures and helpers. The backend is chosen by KERAS_BACKEND."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_BACKEND_NAME = os.environ.get("KERAS_BACKEND", "tensorflow")

# XLA compiles the tests' tiny programs without LLVM's costly optimisation
# passes: a model's compile and fit then take about a third less time on JAX
# (0.63-0.71 s -> 0.36-0.49 s for a small MLP, 2-core CPU). The losses of
# that MLP agreed bit for bit at both levels; every numeric check of the
# suite runs at this one. Subprocesses started by tests inherit the flags.
_XLA_TEST_FLAGS = " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if _BACKEND_NAME in ("jax", "tensorflow"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + _XLA_TEST_FLAGS).strip()

import pytest  # noqa: E402

# Set by `pytest_configure` in each process that runs tests: pytest-xdist's
# controller hands tests to its workers and runs none, so it never imports
# the backend (3-7 s on 2 cores before any worker starts).
keras = np = None
BACKEND = _BACKEND_NAME
# XLA on TensorFlow and jit on JAX; torch.compile is not what users of the
# PyTorch backend run by default, so PyTorch tests run eagerly.
JIT_COMPILE = BACKEND != "torch"

# Distribution is tested with the engines Keras users have on each backend:
# tf.distribute on TensorFlow, keras.distribution on JAX. Keras offers none
# on PyTorch, so that file is not collected there.
collect_ignore = ["test_distributed.py"] if BACKEND == "torch" else []


def pytest_configure(config):
    if config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput"):
        return
    _start_backend()


def _start_backend():
    global keras, np, BACKEND, JIT_COMPILE
    # Two host devices for the distributed tests; both settings must be made
    # before the backend starts.
    if _BACKEND_NAME == "jax":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
        ).strip()
    elif _BACKEND_NAME == "tensorflow":
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    BACKEND = keras.backend.backend()
    JIT_COMPILE = BACKEND != "torch"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


def regression_data(n=64, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    w = rng.normal(size=(features, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def small_model(features=8, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


def build_optimizer(model):
    """Builds a compiled model's optimizer on its weights, before `fit`.

    Without a distribution strategy, Keras on TensorFlow builds the optimizer
    inside the first trace of the train step; a `tf.function` whose first
    trace creates variables traces again without creating them, so each
    model paid two traces (0.3-0.6 s on 2 cores, more under a loss-scale
    optimizer). Built here, the step is traced once. Users' fits build inside
    the trace: the one fit per optimizer in test_every_optimizer.py does so.
    """
    assert model.built, "build_optimizer needs a model whose weights exist"
    model.optimizer.build(model.trainable_variables)
    return model


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_weights_close(actual, expected, rtol=1e-6, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def optimizer_state(optimizer):
    return [np.array(v) for v in optimizer.variables]


def training_state(model):
    """The model's weights and its optimizer's variables, as NumPy arrays."""
    return weights_of(model), optimizer_state(model.optimizer)


def restore_training_state(model, state):
    """Puts back what `training_state` took: a compiled model is reused for
    another case without compiling again (its optimizer must be built)."""
    weights, optimizer_values = state
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_values):
        variable.assign(value)


# Methods of `keras.optimizers.Optimizer` an optimizer of ours may define and
# still train through Keras' generic path: `update_step` once per variable,
# on slots made from that variable (weight decay moved into `update_step`
# is per variable too). Under tf.distribute, keras.distribution and loss
# scaling, Keras alone decides how such a step runs, so one optimizer stands
# for all of them in the costly runs (distributed, mixed precision). An
# optimizer that defines any other such method (its own
# `_backend_update_step`, `apply`) or makes any other state (a scalar of its
# own, a sum over variables) takes its class' own path, without being
# named; one name per class runs (`ranger` is a `Lookahead` as `lookahead`
# is).
_GENERIC_METHODS = frozenset(
    {"__init__", "build", "update_step", "get_config", "_apply_weight_decay"}
)
_BASE_SCALARS = frozenset({"iteration", "learning_rate", "lr_scale"})


def update_path(name):
    """`"generic"` if the registry's optimizer `name` takes Keras' generic
    per-variable path (see above), else the name of its class."""
    from keras_optlab import optimizers
    from keras_optlab.optimizers.base import SteerableOptimizer

    optimizer = optimizers.get(name)
    own_path = type(optimizer).__name__
    if type(optimizer).__mro__[1] is not SteerableOptimizer:
        return own_path
    defined = {
        key for key in vars(type(optimizer))
        if hasattr(keras.optimizers.Optimizer, key) and not (key.startswith("__") and key != "__init__")
    }
    if defined - _GENERIC_METHODS:
        return own_path
    variables = [keras.Variable(np.zeros(shape, "float32")) for shape in ((3, 4), (4,))]
    optimizer.build(variables)
    for state in optimizer.variables:
        if tuple(state.shape) == ():
            if state.name not in _BASE_SCALARS:
                return own_path
        elif tuple(state.shape) not in ((3, 4), (4,)):
            return own_path
    return "generic"


def one_per_update_path(names):
    """The first of `names` on each update path (see `update_path`)."""
    kept = {}
    for name in names:
        kept.setdefault(update_path(name), name)
    return list(kept.values())


def apply_once(optimizer, grads, variables):
    """`optimizer.apply`; on JAX through `stateless_apply`, as the trainer
    does (Keras' LossScaleOptimizer.apply runs a cond with stateful branches,
    which JAX refuses outside a compiled step)."""
    if BACKEND != "jax":
        optimizer.apply(grads, variables)
        return
    if not optimizer.built:
        optimizer.build(variables)
    new_values, new_state = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, [v.value for v in variables]
    )
    for variable, value in zip(variables, new_values):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, new_state):
        variable.assign(value)


def compiled_apply(optimizer, variables):
    """`step(gradients)`: `optimizer.apply(gradients, variables)` compiled
    once by the backend's compiler and run at each call, as `fit` runs it:
    XLA (`tf.function(jit_compile=True)`) on TensorFlow, `jax.jit` of
    `stateless_apply` on JAX, eagerly on PyTorch. After each call the Keras
    variables (the model's and the optimizer's) hold the new values, as
    after `optimizer.apply`.

    An eager step costs 4-20 ms on TensorFlow and 3-80 ms on JAX (SWATS);
    compiled, it is a compilation of 0.1-0.6 s and then about 0.1 ms."""
    variables = list(variables)
    if not optimizer.built:
        optimizer.build(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(jit_compile=True, reduce_retracing=True)(
            lambda grads: optimizer.apply(grads, variables)
        )

        def step(gradients):
            compiled([tf.convert_to_tensor(g) for g in gradients])

        return step
    if BACKEND == "jax":
        import jax

        @jax.jit
        def compiled(optimizer_values, values, grads):
            return optimizer.stateless_apply(optimizer_values, grads, values)

        def step(gradients):
            grads = [keras.ops.convert_to_tensor(g) for g in gradients]
            values, state = compiled(
                [v.value for v in optimizer.variables], [v.value for v in variables], grads
            )
            for variable, value in zip(variables, values):
                variable.assign(value)
            for variable, value in zip(optimizer.variables, state):
                variable.assign(value)

        return step

    def step(gradients):
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], variables)

    return step


def apply_trajectory(optimizer, theta, gradient_fn, steps):
    """Applies `optimizer` for `steps` compiled steps (`compiled_apply`) to
    one variable starting at `theta`, the gradient given by the NumPy
    function `gradient_fn` of the current value; returns the values after
    each step, in float64."""
    variable = keras.Variable(theta.astype("float32"))
    step = compiled_apply(optimizer, [variable])
    trajectory = []
    for _ in range(steps):
        g = gradient_fn(np.array(variable).astype(np.float64)).astype("float32")
        step([g])
        trajectory.append(np.array(variable).astype(np.float64))
    return np.array(trajectory)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server, started once per session
    (`postgres_server.PostgresServer`). A server that cannot start fails
    the tests that ask for it, with its own message; they never skip."""
    from postgres_server import PostgresServer, ServerError

    server = PostgresServer()
    try:
        server.start()
    except ServerError as error:
        server.stop()
        pytest.fail(str(error), pytrace=False)
    yield server
    server.stop()
