"""ConditionalGradient against an independent NumPy transcription of the
Frank-Wolfe step on a norm ball (Jaggi 2013), and against the numbers
TensorFlow Addons' tests published (their learning rate a is 1 - a here)."""

import keras
import numpy as np
import pytest

from conftest import apply_trajectory
from keras_optlab.optimizers import ConditionalGradient


def linear_minimiser(g, ord, radius, eps):
    """The vertex argmin over the ball of <s, g>, up to epsilon."""
    if ord == "fro":
        return -radius * g / (np.sqrt(np.sum(g * g)) + eps)
    matrix = g.reshape(-1, g.shape[-1]) if g.ndim >= 2 else g.reshape(1, -1)
    u, sigma, vt = np.linalg.svd(matrix, full_matrices=False)
    vertex = np.outer(u[:, 0], vt[0]) * sigma[0] / (sigma[0] + eps)
    return -radius * vertex.reshape(g.shape)


def frank_wolfe_reference(theta, gradients, lr, radius, eps, ord):
    theta = theta.astype(np.float64).copy()
    trajectory = []
    for rate in lr:
        vertex = linear_minimiser(gradients(theta), ord, radius, eps)
        theta = (1.0 - rate) * theta + rate * vertex
        trajectory.append(theta.copy())
    return np.array(trajectory)


def nuclear_norm(x):
    return np.sum(np.linalg.svd(x.reshape(-1, x.shape[-1]), compute_uv=False))


def test_frobenius_iterate_stays_in_the_ball_and_matches_reference():
    # f(x) = 0.5 |x - target|^2 with the target outside the ball of radius
    # 1: the constrained minimum lies on the sphere.
    rng = np.random.default_rng(0)
    target = rng.normal(size=(3, 4)) * 2.0
    theta = rng.normal(size=(3, 4))
    theta *= 0.5 / np.linalg.norm(theta)
    gradient_fn = lambda x: x - target  # noqa: E731
    steps = 150
    optimizer = ConditionalGradient(learning_rate=0.05, lambda_=1.0)
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected = frank_wolfe_reference(theta, gradient_fn, [0.05] * steps, 1.0, 1e-7, "fro")
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)
    norms = np.linalg.norm(actual.reshape(steps, -1), axis=1)
    assert np.all(norms <= 1.0 + 1e-6), norms.max()
    # The constraint is active: the iterate ends near the sphere, toward
    # the target.
    assert norms[-1] > 0.95
    direction = (actual[-1] / norms[-1]).ravel()
    assert direction @ (target / np.linalg.norm(target)).ravel() > 0.99


def well_separated_matrix(rows, columns, seed):
    """A matrix with singular values 6, 3, 1.5, ...: the top singular pair
    of the gradients on the way to it is well defined, so float32 and
    float64 runs pick the same vertices."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
    v, _ = np.linalg.qr(rng.normal(size=(columns, columns)))
    rank = min(rows, columns)
    return (u[:, :rank] * (6.0 * 0.5 ** np.arange(rank))) @ v[:, :rank].T


def test_nuclear_iterate_stays_in_the_ball_and_matches_reference():
    target = well_separated_matrix(5, 4, seed=1)
    theta = np.zeros((5, 4))
    gradient_fn = lambda x: x - target  # noqa: E731
    steps = 120
    optimizer = ConditionalGradient(learning_rate=0.1, lambda_=2.0, ord="nuclear")
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected = frank_wolfe_reference(theta, gradient_fn, [0.1] * steps, 2.0, 1e-7, "nuclear")
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    norms = np.array([nuclear_norm(x) for x in actual])
    assert np.all(norms <= 2.0 * (1 + 1e-5)), norms.max()
    # Each step adds a rank-one vertex: the iterate is low rank, not the
    # Frobenius iterate (which would be a multiple of the target).
    assert norms[-1] > 1.9
    assert np.linalg.matrix_rank(actual[-1], tol=1e-3) < 4


def test_nuclear_reshapes_a_rank_three_variable_to_a_matrix():
    # A (6, 4) matrix with distinct singular values, as (2, 3, 4): its
    # columns are the last axis.
    target = well_separated_matrix(6, 4, seed=2).reshape(2, 3, 4)
    gradient_fn = lambda x: x - target  # noqa: E731
    theta = np.zeros((2, 3, 4))
    optimizer = ConditionalGradient(learning_rate=0.1, lambda_=2.0, ord="nuclear")
    actual = apply_trajectory(optimizer, theta, gradient_fn, 100)
    expected = frank_wolfe_reference(theta, gradient_fn, [0.1] * 100, 2.0, 1e-7, "nuclear")
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_matches_reference_with_a_schedule_and_lr_scale():
    # Jaggi's step size 2 / (t + 2), t from 0, halved by lr_scale.
    class FrankWolfeSteps(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 2.0 / (keras.ops.cast(step, "float32") + 2.0)

    steps = 100
    optimizer = ConditionalGradient(learning_rate=FrankWolfeSteps(), lambda_=0.5)
    optimizer.lr_scale.assign(0.5)
    target = np.array([1.0, -2.0, 0.5, 3.0])
    theta = np.array([0.1, 0.1, -0.1, 0.0])
    gradient_fn = lambda x: x - target  # noqa: E731
    rates = [0.5 * 2.0 / (t + 2.0) for t in range(steps)]
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected = frank_wolfe_reference(theta, gradient_fn, rates, 0.5, 1e-7, "fro")
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ord", ["fro", "nuclear"])
def test_zero_gradient_only_contracts(ord):
    optimizer = ConditionalGradient(learning_rate=0.25, lambda_=1.0, ord=ord)
    variable = keras.Variable(np.array([[1.0, -2.0], [0.5, 4.0]], "float32"))
    optimizer.apply([keras.ops.zeros((2, 2))], [variable])
    np.testing.assert_array_equal(np.array(variable), [[0.75, -1.5], [0.375, 3.0]])


def test_weight_decay_is_decoupled():
    optimizer = ConditionalGradient(learning_rate=0.1, lambda_=1.0, weight_decay=0.5)
    variable = keras.Variable(np.full((2,), 2.0, "float32"))
    optimizer.apply([keras.ops.zeros((2,))], [variable])
    # Decay by lr * wd, then the contraction by 1 - lr.
    np.testing.assert_allclose(np.array(variable), 2.0 * (1 - 0.05) * 0.9, rtol=1e-6)


# TensorFlow Addons' "dist-belief" runs: a vector of 10 from zeros, learning
# rate 0.1 (0.9 here) and lambda 0.1, ten random gradients. The Frobenius
# and the nuclear runs share the gradients; a vector's nuclear vertex is its
# Frobenius vertex, so both lists must come out of both norms.
DIST_BELIEF_GRADIENTS = [
    [0.00096264342, 0.17914793, 0.93945462, 0.41396621, 0.53037018,
     0.93197989, 0.78648776, 0.50036013, 0.55345792, 0.96722615],
    [0.17075552, 0.88821375, 0.20873757, 0.25236958, 0.57578111,
     0.15312378, 0.5513742, 0.94687688, 0.16012503, 0.22159521],
    [0.35077485, 0.47304362, 0.44412705, 0.44368884, 0.078527533,
     0.81223965, 0.31168157, 0.43203235, 0.16792089, 0.24644311],
    [0.9694621, 0.75035888, 0.28171822, 0.83813518, 0.53807181,
     0.3728098, 0.81454384, 0.03848977, 0.89759839, 0.93665648],
    [0.38578293, 0.8536852, 0.88722926, 0.66276771, 0.13678469,
     0.94036359, 0.69107032, 0.81897682, 0.5433259, 0.67860287],
    [0.27885768, 0.76100707, 0.24625534, 0.81354135, 0.18959245,
     0.48038563, 0.84163809, 0.41172323, 0.83259648, 0.44941229],
    [0.27233034, 0.056316052, 0.5039115, 0.24105175, 0.35697976,
     0.75913221, 0.73577434, 0.16014607, 0.57500273, 0.071136251],
    [0.58697265, 0.2494842, 0.08106143, 0.39954534, 0.15892942,
     0.12683646, 0.74053431, 0.16033, 0.66625422, 0.73515922],
    [0.8215279, 0.41994119, 0.95172721, 0.68000203, 0.79439718,
     0.43384039, 0.55561525, 0.22567581, 0.93331909, 0.29438227],
    [0.68297005, 0.67758518, 0.1748755, 0.13266537, 0.70697063,
     0.055731893, 0.68593478, 0.50580865, 0.12602448, 0.093537711],
]
DIST_BELIEF_FROBENIUS = [
    [-4.1555551e-05, -7.7334875e-03, -4.0554531e-02, -1.7870162e-02, -2.2895107e-02,
     -4.0231861e-02, -3.3951234e-02, -2.1599628e-02, -2.3891762e-02, -4.1753378e-02],
    [-0.00961733, -0.0507779, -0.01580694, -0.01599489, -0.03470477,
     -0.01264373, -0.03443632, -0.05546713, -0.01140388, -0.01665068],
    [-0.02462724, -0.03699233, -0.03154434, -0.03153357, -0.00876844,
     -0.05606323, -0.02447166, -0.03469437, -0.0124694, -0.01829169],
    [-0.04124615, -0.03371741, -0.0144246, -0.03668303, -0.02240246,
     -0.02052062, -0.03503307, -0.00500922, -0.03715545, -0.0393002],
    [-0.01979208, -0.0380417, -0.03747472, -0.0305847, -0.00779536,
     -0.04024222, -0.03156913, -0.0337613, -0.02578116, -0.03148952],
    [-0.01555188, -0.04084422, -0.01573331, -0.04265549, -0.01000746,
     -0.02740575, -0.04412147, -0.02341569, -0.0431026, -0.02502293],
    [-0.01890448, -0.00767214, -0.03367592, -0.01962219, -0.02374279,
     -0.05110247, -0.05128598, -0.01254396, -0.04094185, -0.00703416],
    [-0.03772914, -0.01599993, -0.00831695, -0.02635719, -0.01207801,
     -0.01285448, -0.05034328, -0.01104364, -0.04477356, -0.04558991],
    [-0.03919835, -0.01970845, -0.04187151, -0.03195836, -0.03546333,
     -0.01999326, -0.02899324, -0.01083582, -0.04472339, -0.01725317],
    [-0.04510314, -0.04282944, -0.0147322, -0.0111956, -0.04617687,
     -0.00535998, -0.0442614, -0.03158399, -0.01207165, -0.00736567],
]


@pytest.mark.parametrize("ord", ["fro", "nuclear"])
def test_matches_tensorflow_addons_dist_belief_values(ord):
    optimizer = ConditionalGradient(learning_rate=1 - 0.1, lambda_=0.1, ord=ord)
    variable = keras.Variable(np.zeros(10, "float32"))
    for gradient, expected in zip(DIST_BELIEF_GRADIENTS, DIST_BELIEF_FROBENIUS):
        optimizer.apply([keras.ops.convert_to_tensor(np.array(gradient, "float32"))], [variable])
        # TensorFlow Addons' tolerance.
        np.testing.assert_allclose(np.array(variable), expected, rtol=1e-6, atol=1e-6)


def test_matches_tensorflow_addons_two_step_frobenius_values():
    # learning rate 0.5 (its own complement), lambda 0.01; the expected
    # values are TensorFlow Addons' closed forms.
    optimizer = ConditionalGradient(learning_rate=0.5, lambda_=0.01)
    var_0 = keras.Variable(np.array([1.0, 2.0], "float32"))
    var_1 = keras.Variable(np.array([3.0, 4.0], "float32"))
    grads = [keras.ops.convert_to_tensor(np.array(g, "float32")) for g in ([0.1, 0.1], [0.01, 0.01])]
    norm_0, norm_1 = np.sqrt(2) * 0.1, np.sqrt(2) * 0.01
    start_0, start_1 = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    optimizer.apply(grads, [var_0, var_1])
    np.testing.assert_allclose(np.array(var_0), start_0 * 0.5 - 0.5 * 0.01 * 0.1 / norm_0, rtol=1e-6)
    np.testing.assert_allclose(np.array(var_1), start_1 * 0.5 - 0.5 * 0.01 * 0.01 / norm_1, rtol=1e-6)
    optimizer.apply(grads, [var_0, var_1])
    np.testing.assert_allclose(
        np.array(var_0), (start_0 * 0.5 - 0.5 * 0.01 * 0.1 / norm_0) * 0.5 - 0.5 * 0.01 * 0.1 / norm_0,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        np.array(var_1), (start_1 * 0.5 - 0.5 * 0.01 * 0.01 / norm_1) * 0.5 - 0.5 * 0.01 * 0.01 / norm_1,
        rtol=1e-6,
    )


def test_matches_tensorflow_addons_nuclear_vertex_of_a_matrix():
    # TensorFlow Addons: a (2, 2) variable of ones, gradient [[0, 0], [1, 1]],
    # learning rate 0.1 (0.9 here), lambda 0.1; its top singular pair gives
    # the vertex [[0, 0], [1, 1]] / sqrt(2). Row 1 is checked (TensorFlow
    # Addons updated that row only, as a sparse gradient).
    optimizer = ConditionalGradient(learning_rate=0.9, lambda_=0.1, ord="nuclear")
    variable = keras.Variable(np.ones((2, 2), "float32"))
    optimizer.apply([keras.ops.convert_to_tensor(np.array([[0.0, 0.0], [1.0, 1.0]], "float32"))], [variable])
    expected_row = 0.1 * 1 - 0.9 * 0.1 * 0.7071067
    np.testing.assert_allclose(np.array(variable)[1], [expected_row] * 2, rtol=1e-6)
    np.testing.assert_allclose(np.array(variable)[0], [0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("learning_rate", 1.5, r"`learning_rate` must be in \[0, 1\]. Received: learning_rate=1.5"),
        ("learning_rate", -0.1, r"`learning_rate` must be in \[0, inf\). Received: learning_rate=-0.1"),
        ("lambda_", -1.0, r"`lambda_` must be in \[0, inf\). Received: lambda_=-1.0"),
        ("epsilon", -1e-8, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1e-08"),
        ("ord", "l2", r"`ord` must be one of 'fro', 'nuclear'. Received: ord='l2'"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ConditionalGradient(**{argument: value})
