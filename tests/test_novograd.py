"""NovoGrad against an independent NumPy transcription of the paper's
equations (Ginsburg et al. 2019, Algorithm 1), on several variables whose
gradients differ in scale, so that the layer-wise second moment matters."""

import keras
import numpy as np
import pytest

from conftest import compiled_apply
from keras_optlab.optimizers import NovoGrad

# Three "layers" of different shapes whose gradients differ by 1000x in
# scale: (shape, gradient scale).
LAYERS = [((3, 4), 10.0), ((5,), 0.01), ((2, 2, 2), 1.0)]


def initial_values():
    rng = np.random.default_rng(7)
    return [rng.normal(size=shape) for shape, _ in LAYERS]


def layer_gradients(thetas, t):
    """Gradients of sum_k scale_k * (0.5 |theta_k|^2 + 0.3 sum(theta_k)),
    shrunk over time so that v_t falls (AMSGrad's maximum then differs)."""
    shrink = 0.98**t
    return [scale * shrink * (theta + 0.3) for theta, (_, scale) in zip(thetas, LAYERS)]


def novograd_reference(thetas, rates, beta_1, beta_2, eps, decay, grad_averaging, amsgrad):
    """Returns the trajectory of every variable and the v of every step."""
    thetas = [np.array(theta, np.float64) for theta in thetas]
    m = [np.zeros_like(theta) for theta in thetas]
    v = [0.0 for _ in thetas]
    v_max = [0.0 for _ in thetas]
    trajectory, velocities = [], []
    for t in range(1, len(rates) + 1):
        grads = layer_gradients(thetas, t)
        for k, g in enumerate(grads):
            norm_2 = float(np.sum(g * g))
            v[k] = norm_2 if t == 1 else beta_2 * v[k] + (1 - beta_2) * norm_2
            v_max[k] = max(v_max[k], v[k])
            denominator = np.sqrt(v_max[k] if amsgrad else v[k]) + eps
            direction = g / denominator + decay * thetas[k]
            if grad_averaging and t > 1:
                direction = (1 - beta_1) * direction
            m[k] = beta_1 * m[k] + direction
            thetas[k] = thetas[k] - rates[t - 1] * m[k]
        trajectory.append([theta.copy() for theta in thetas])
        velocities.append(list(v))
    return trajectory, np.array(velocities)


def run_optimizer(optimizer, thetas, steps, compiled=True):
    """The trajectory of every variable under `layer_gradients`, each step
    compiled as fit compiles it (or eager `apply`)."""
    variables = [keras.Variable(theta.astype("float32")) for theta in thetas]
    if compiled:
        step = compiled_apply(optimizer, variables)
    else:
        step = lambda grads: optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)  # noqa: E731
    trajectory = []
    for t in range(1, steps + 1):
        values = [np.array(variable).astype(np.float64) for variable in variables]
        step([g.astype("float32") for g in layer_gradients(values, t)])
        trajectory.append([np.array(variable).astype(np.float64) for variable in variables])
    return trajectory, variables


def assert_trajectories_close(actual, expected):
    # The variables are of order 1 and cross zero: the absolute tolerance is
    # a thousandth of a typical step.
    for step_actual, step_expected in zip(actual, expected):
        for a, e in zip(step_actual, step_expected):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "grad_averaging, amsgrad, decay",
    [(False, False, 0.0), (True, False, 0.0), (False, True, 0.0), (False, False, 0.01), (True, True, 0.05)],
)
def test_matches_numpy_reference_on_layers_of_different_scales(grad_averaging, amsgrad, decay):
    steps = 120
    thetas = initial_values()
    optimizer = NovoGrad(
        learning_rate=0.01, beta_1=0.9, beta_2=0.95, epsilon=1e-7,
        weight_decay=decay, grad_averaging=grad_averaging, amsgrad=amsgrad,
    )
    actual, _ = run_optimizer(optimizer, thetas, steps)
    expected, velocities = novograd_reference(
        thetas, [0.01] * steps, 0.9, 0.95, 1e-7, decay, grad_averaging, amsgrad
    )
    assert_trajectories_close(actual, expected)
    np.testing.assert_allclose(
        [float(np.array(v)) for v in optimizer._velocities], velocities[-1], rtol=1e-5
    )
    if amsgrad:
        # The gradients shrink, so the maximum is above the current v.
        maxima = np.array([float(np.array(v)) for v in optimizer._velocity_maxima])
        assert np.all(maxima > 1.5 * velocities[-1])


def test_second_moment_is_one_scalar_per_variable_and_differs_between_layers():
    optimizer = NovoGrad(learning_rate=0.01)
    _, variables = run_optimizer(optimizer, initial_values(), 5, compiled=False)
    velocities = [np.array(v) for v in optimizer._velocities]
    assert len(velocities) == len(variables)
    assert all(v.shape == () for v in velocities)
    assert all(tuple(m.shape) == tuple(w.shape) for m, w in zip(optimizer._momentums, variables))
    # Gradient scales 10, 0.01 and 1: squared norms about 100x and 1e4x apart.
    big, small, middle = (float(v) for v in velocities)
    assert big > 10 * middle and middle > 1e3 * small > 0


def test_first_step_sets_v_to_the_squared_norm_and_moves_each_layer_by_the_rate():
    # v_1 = |g_1|^2 (not (1 - beta_2) |g_1|^2), so the first step of every
    # variable is lr * g / |g|: of length lr whatever the gradient's scale.
    rate = 0.01
    optimizer = NovoGrad(learning_rate=rate, epsilon=0.0)
    thetas = initial_values()
    [after], variables = run_optimizer(optimizer, thetas, 1, compiled=False)
    grads = layer_gradients(thetas, 1)
    for k, (before, moved, g) in enumerate(zip(thetas, after, grads)):
        np.testing.assert_allclose(
            float(np.array(optimizer._velocities[k])), np.sum(g * g), rtol=1e-6
        )
        assert np.linalg.norm(before - moved) == pytest.approx(rate, rel=1e-4)
        np.testing.assert_allclose(before - moved, rate * g / np.linalg.norm(g), rtol=1e-5, atol=3e-7)


def test_matches_reference_with_a_schedule_and_lr_scale():
    steps = 100
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=10, decay_rate=0.7)
    optimizer = NovoGrad(learning_rate=schedule, weight_decay=0.01)
    optimizer.lr_scale.assign(0.5)
    thetas = initial_values()
    rates = [0.5 * 0.02 * 0.7 ** (t / 10) for t in range(steps)]
    actual, _ = run_optimizer(optimizer, thetas, steps)
    expected, _ = novograd_reference(thetas, rates, 0.9, 0.999, 1e-7, 0.01, False, False)
    assert_trajectories_close(actual, expected)


def test_weight_decay_acts_once_inside_the_momentum():
    # A zero gradient leaves only d * theta in m: one step is
    # theta (1 - lr d), not (1 - lr d)^2 as it would be if Keras' decoupled
    # decay were applied as well; the second step carries the momentum.
    optimizer = NovoGrad(learning_rate=0.1, weight_decay=0.5)
    variable = keras.Variable(np.full((3,), 2.0, "float32"))
    zero = keras.ops.zeros((3,))
    optimizer.apply([zero], [variable])
    np.testing.assert_allclose(np.array(variable), 2.0 * (1 - 0.05), rtol=1e-6)
    optimizer.apply([zero], [variable])
    m_2 = 0.9 * (0.5 * 2.0) + 0.5 * 1.9
    np.testing.assert_allclose(np.array(variable), 1.9 - 0.1 * m_2, rtol=1e-6)


def test_excluded_variables_get_no_weight_decay():
    optimizer = NovoGrad(learning_rate=0.1, weight_decay=0.5)
    kept = keras.Variable(np.ones((2,), "float32"), name="kernel")
    excluded = keras.Variable(np.ones((2,), "float32"), name="bias")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.apply([keras.ops.zeros((2,))] * 2, [kept, excluded])
    np.testing.assert_allclose(np.array(kept), 0.95, rtol=1e-6)
    np.testing.assert_allclose(np.array(excluded), 1.0)


# TensorFlow Addons' tests (tensorflow_addons/optimizers/tests/novograd_test.py):
# var_0 = [1, 2], var_1 = [3, 4], gradients [0.1, 0.2] and [0.3, 0.4],
# learning rate 0.1, epsilon 1e-8.
@pytest.mark.parametrize(
    "steps, arguments, expected",
    [
        (1, {}, [[0.9552786425, 1.9105572849], [2.9400000012, 3.9200000016]]),
        (1, {"weight_decay": 0.1}, [[0.945278642, 1.8905572849], [2.9100000012, 3.8800000016]]),
        (2, {"grad_averaging": True}, [[0.9105572849, 1.8211145698], [2.8800000024, 3.8400000032]]),
    ],
)
def test_matches_tensorflow_addons_published_values(steps, arguments, expected):
    optimizer = NovoGrad(learning_rate=0.1, epsilon=1e-8, **arguments)
    variables = [keras.Variable([1.0, 2.0]), keras.Variable([3.0, 4.0])]
    grads = [keras.ops.convert_to_tensor([0.1, 0.2]), keras.ops.convert_to_tensor([0.3, 0.4])]
    for _ in range(steps):
        optimizer.apply(grads, variables)
    for variable, values in zip(variables, expected):
        np.testing.assert_allclose(np.array(variable), values, rtol=1e-6)


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, with every option that changes the step.
    def trajectory(compiled):
        optimizer = NovoGrad(learning_rate=0.01, weight_decay=1e-3, grad_averaging=True, amsgrad=True)
        return run_optimizer(optimizer, initial_values(), 24, compiled=compiled)[0]

    for compiled, eager in zip(trajectory(True), trajectory(False)):
        for c, e in zip(compiled, eager):
            np.testing.assert_allclose(c, e, rtol=1e-6, atol=1e-7)


def test_config_keeps_the_paper_weight_decay():
    optimizer = NovoGrad(weight_decay=0.01, grad_averaging=True, amsgrad=True)
    restored = NovoGrad.from_config(optimizer.get_config())
    assert restored.weight_decay == 0.01
    assert restored.grad_averaging and restored.amsgrad


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("weight_decay", -0.1, r"Argument `weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("grad_averaging", 1, r"Argument `grad_averaging` must be True or False. Received: grad_averaging=1"),
        ("amsgrad", "yes", r"Argument `amsgrad` must be True or False. Received: amsgrad='yes'"),
        ("beta_2", 1.0, r"Argument `beta_2` must be in \[0, 1\). Received: beta_2=1.0"),
        ("epsilon", -1.0, r"Argument `epsilon` must be in \[0, inf\). Received: epsilon=-1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        NovoGrad(**{argument: value})
