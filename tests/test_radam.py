"""RAdam against an independent NumPy transcription of the paper's
equations (Liu et al. 2020, Algorithm 2), with the authors' threshold."""

import keras
import numpy as np
import pytest

from conftest import apply_trajectory, build_optimizer, compiled_apply, small_model, weights_of
from keras_optlab.optimizers import RAdam


def radam_reference(theta, gradients, lr, beta_1, beta_2, eps, threshold, sgd_below):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    trajectory, rectified = [], []
    for t in range(1, len(lr) + 1):
        g = gradients(theta)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        m_hat = m / (1 - beta_1**t)
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        if rho_t >= threshold:
            r_t = np.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            # Authors' convention: eps beside sqrt(v), then bias correction.
            adaptive = np.sqrt(1 - beta_2**t) / (np.sqrt(v) + eps)
            theta = theta - lr[t - 1] * r_t * m_hat * adaptive
            rectified.append(True)
        else:
            if sgd_below:
                theta = theta - lr[t - 1] * m_hat
            rectified.append(False)
        trajectory.append(theta.copy())
    return np.array(trajectory), np.array(rectified)


def quadratic_gradient(scales):
    # f(x) = 0.5 * sum(scales * x^2) plus a constant pull; its gradient.
    return lambda x: scales * x + 0.3


@pytest.mark.parametrize("sgd_below", [True, False])
@pytest.mark.parametrize("beta_2, threshold", [(0.999, 5.0), (0.99, 4.0), (0.95, 6.0)])
def test_matches_numpy_reference_on_both_sides_of_threshold(beta_2, threshold, sgd_below):
    steps = 120
    theta = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
    gradient_fn = quadratic_gradient(np.array([1.0, 0.5, 2.0, 0.1, 4.0]))
    optimizer = RAdam(
        learning_rate=0.01, beta_1=0.9, beta_2=beta_2, epsilon=1e-7,
        threshold=threshold, degenerated_to_sgd=sgd_below,
    )
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected, rectified = radam_reference(
        theta, gradient_fn, [0.01] * steps, 0.9, beta_2, 1e-7, threshold, sgd_below
    )
    # The run must really cover both regimes.
    assert rectified.any() and not rectified.all()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_matches_reference_with_a_schedule_and_lr_scale():
    steps = 100
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=10, decay_rate=0.8)
    optimizer = RAdam(learning_rate=schedule)
    optimizer.lr_scale.assign(0.5)
    theta = np.array([1.0, -1.0, 2.0])
    gradient_fn = quadratic_gradient(np.array([1.0, 3.0, 0.2]))
    rates = [0.5 * 0.05 * 0.8 ** (t / 10) for t in range(steps)]
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected, _ = radam_reference(theta, gradient_fn, rates, 0.9, 0.999, 1e-7, 5.0, True)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_first_steps_below_paper_threshold_are_momentum_steps():
    # With beta_2 = 0.999, rho_t is below 5 for t <= 5 and above from t = 6.
    optimizer = RAdam(learning_rate=0.1)
    variable = keras.Variable(np.zeros(1, "float32"))
    for step in range(1, 7):
        before = float(np.array(variable)[0])
        optimizer.apply([keras.ops.ones((1,))], [variable])
        moved = before - float(np.array(variable)[0])
        if step <= 5:
            # Constant gradient 1: bias-corrected momentum is exactly 1.
            assert moved == pytest.approx(0.1, rel=1e-6)
        else:
            assert moved < 0.1


def test_weight_decay_is_decoupled():
    decayed = RAdam(learning_rate=0.1, weight_decay=0.5, degenerated_to_sgd=False)
    variable = keras.Variable(np.full((2,), 2.0, "float32"))
    decayed.apply([keras.ops.zeros((2,))], [variable])
    # Zero gradient, below the threshold with no SGD step: only decay acts.
    np.testing.assert_allclose(np.array(variable), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)


def test_lr_scale_is_saved_with_the_model(tmp_path):
    model = small_model()
    model.compile(optimizer=RAdam(), loss="mse")
    build_optimizer(model)
    # State to save: two compiled steps on the model's variables, no fit.
    step = compiled_apply(model.optimizer, model.trainable_variables)
    for _ in range(2):
        step([np.full(w.shape, 0.1, "float32") for w in weights_of(model)])
    model.optimizer.lr_scale.assign(0.125)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert float(np.array(restored.optimizer.lr_scale)) == 0.125
    assert float(keras.ops.convert_to_numpy(restored.optimizer.learning_rate)) == pytest.approx(0.125e-3)
    for a, b in zip(restored.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_compiled_updates_equal_eager_updates():
    # What fit runs (XLA on TensorFlow, jax.jit on JAX) against eager
    # `apply`, on both sides of the threshold (rectified from step 6).
    theta = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
    gradient_fn = quadratic_gradient(np.array([1.0, 0.5, 2.0, 0.1, 4.0]))
    compiled = apply_trajectory(RAdam(learning_rate=0.01), theta, gradient_fn, 24)
    optimizer = RAdam(learning_rate=0.01)
    variable = keras.Variable(theta.astype("float32"))
    eager = []
    for _ in range(24):
        g = gradient_fn(np.array(variable).astype(np.float64)).astype("float32")
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
        eager.append(np.array(variable).astype(np.float64))
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("threshold", 3.5, r"`threshold` must be in \[4, inf\)"),
        ("degenerated_to_sgd", 1, "`degenerated_to_sgd` must be True or False"),
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RAdam(**{argument: value})
