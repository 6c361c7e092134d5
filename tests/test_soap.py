"""SOAP against an independent NumPy transcription of the authors' code
(nikhilvyas/SOAP, `soap.py`, commit a1e5535): Adam run on the gradient
rotated into the eigenvectors of Shampoo's per-mode factors, the factors
started (and the variable left alone) on the first step, the eigenvectors
refreshed by one power iteration and a QR every `precondition_frequency`
steps with the second moment permuted along, and the weight decay applied
to the updated variable.

An eigenbasis is only defined up to the sign of each vector, to which the
update is invariant, and up to a rotation inside an eigenspace of more
than one dimension, to which it is not: NumPy, XLA and PyTorch choose
such rotations differently. Every preconditioned mode here therefore sees
a first gradient whose contraction C_k(g) leaves a null space of one
dimension at most (a (3, 4) matrix: C for the 4-mode has rank 3), and the
gradients are generic."""

import keras
import numpy as np
import pytest

from conftest import BACKEND, compiled_apply
from keras_optlab.optimizers.soap import SOAP


def mode_product(x, matrix, mode):
    """`x` times `matrix` along `mode`: x_k -> matrix @ x_k."""
    return np.moveaxis(np.tensordot(matrix, x, axes=(1, mode)), 0, mode)


def contraction(g, mode):
    """g contracted with itself over every mode but `mode`."""
    unfolded = np.moveaxis(g, mode, 0).reshape(g.shape[mode], -1)
    return unfolded @ unfolded.T


def soap_reference(
    thetas, gradients, lr, beta_1=0.95, beta_2=0.95, shampoo_beta=None, epsilon=1e-8,
    weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000,
    precondition_1d=False, normalize_grads=False, correct_bias=True,
):
    """Float64 SOAP on a list of variables. `gradients(thetas, i)` gives the
    list of gradients of the optimizer's step i = 0, 1, ...; returns, per
    variable, its values after each step."""
    rate_s = 1 - (beta_2 if shampoo_beta is None else shampoo_beta)
    thetas = [np.array(x, np.float64) for x in thetas]
    m = [np.zeros_like(x) for x in thetas]
    v = [np.zeros_like(x) for x in thetas]
    # Per variable, per mode: [factor, basis] or None (no rotation).
    modes = []
    for x in thetas:
        kept = [d <= max_precond_dim for d in x.shape]
        if x.ndim == 1 and not precondition_1d:
            kept = [False]
        modes.append([[np.zeros((d, d)), None] if k else None for d, k in zip(x.shape, kept)])

    def into(x, state):
        for mode, pair in enumerate(state):
            if pair is not None:
                x = mode_product(x, pair[1].T, mode)
        return x

    def out_of(x, state):
        for mode, pair in enumerate(state):
            if pair is not None:
                x = mode_product(x, pair[1], mode)
        return x

    history = [[] for _ in thetas]
    for t in range(len(lr)):
        grads = gradients(thetas, t)
        for i, (x, g, state) in enumerate(zip(thetas, grads, modes)):
            if t > 0:
                projected = into(g, state)
                m[i] = beta_1 * m[i] + (1 - beta_1) * projected
                v[i] = beta_2 * v[i] + (1 - beta_2) * projected**2
                update = out_of(m[i] / (np.sqrt(v[i]) + epsilon), state)
                if normalize_grads:
                    update = update / (1e-30 + np.sqrt(np.mean(update**2)))
                size = lr[t]
                if correct_bias:
                    size = size * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
                x = x - size * update
                thetas[i] = x = x - lr[t] * weight_decay * x
                m[i] = out_of(m[i], state)
            for mode, pair in enumerate(state):
                if pair is None:
                    continue
                pair[0] = pair[0] + rate_s * (contraction(g, mode) - pair[0])
                if t == 0:
                    pair[1] = np.linalg.eigh(pair[0])[1][:, ::-1]
                elif t % precondition_frequency == 0:
                    factor, basis = pair
                    order = np.argsort(-np.diag(basis.T @ factor @ basis))
                    v[i] = np.take(v[i], order, axis=mode)
                    pair[1] = np.linalg.qr(factor @ basis[:, order])[0]
            if t > 0:
                m[i] = into(m[i], state)
            history[i].append(thetas[i].copy())
    return [np.array(h) for h in history]


def run(optimizer, thetas, gradients, steps):
    """The optimizer's trajectories on float32 variables, each step compiled
    as fit compiles it; `gradients(xs, i)` is evaluated at the variables'
    current values."""
    variables = [keras.Variable(np.asarray(x, "float32")) for x in thetas]
    step = compiled_apply(optimizer, variables)
    history = [[] for _ in variables]
    for t in range(steps):
        values = [np.array(v).astype(np.float64) for v in variables]
        step([g.astype("float32") for g in gradients(values, t)])
        for h, v in zip(history, variables):
            h.append(np.array(v).astype(np.float64))
    return [np.array(h) for h in history]


STEPS = 200


def quadratic(shapes, seed):
    """Start points and a noisy quadratic's gradient `gradients(xs, i)`
    for variables of `shapes`. Minima 1.5 to 2.5 from 0 and starts up to
    1.2 from them, on the same side of 0 (so that a scalar's relative error
    means something); a curvature and a noise scale per element, so that
    no factor tends to a multiple of the identity; new noise at every
    step."""
    rng = np.random.default_rng(seed)
    signs = [np.sign(rng.normal(size=s)) for s in shapes]
    targets = [sign * rng.uniform(1.5, 2.5, size=s) for sign, s in zip(signs, shapes)]
    starts = [t + sign * rng.uniform(-1.2, 1.2, size=s) for t, sign, s in zip(targets, signs, shapes)]
    curvatures = [rng.uniform(0.3, 1.5, size=s) for s in shapes]
    scales = [rng.uniform(0.02, 0.2, size=s) for s in shapes]
    noise = [rng.normal(size=(STEPS,) + tuple(s)) for s in shapes]

    def gradients(values, t):
        return [
            c * (x - target) + scale * n[t]
            for x, target, c, scale, n in zip(values, targets, curvatures, scales, noise)
        ]

    return starts, gradients


def relative_error(actual, expected):
    """Per step, |actual - expected| / |expected| over the whole variable."""
    axes = tuple(range(1, actual.ndim))
    return np.sqrt(((actual - expected) ** 2).sum(axes) / (expected**2).sum(axes))


# float32 eigenvectors, QR and projections against float64 ones: the
# largest error seen on these cases was 1.1e-6 (the rank-3 tensor on
# TensorFlow; 9e-7 on JAX and PyTorch), and 6e-6 on other draws.
TOLERANCE = 1e-5

# (shapes, arguments, seed). At the defaults: a (3, 4, 1) kernel (its
# mode of size 1 is unrotated here and rotated by its 1 x 1 basis in the
# reference), a rank-3 tensor (one factor per mode), a bias and a scalar
# (Adam's path). Then
# every other argument moved: with `max_precond_dim=5` a (4, 6) matrix
# keeps its 6-mode unrotated, a square matrix, and with `precondition_1d`
# a vector of two is rotated (its first factor has rank 1 of 2); the basis
# is refreshed every 3 steps. (Each preconditioned mode costs TensorFlow
# about 0.5 s of compilation: its own eigendecomposition and QR.)
CASES = {
    "defaults": ([(3, 4, 1), (2, 3, 4), (3,), ()], {}, 1),
    "1d-normalized-uncorrected": (
        [(4, 6), (3, 3), (2,)],
        {"precondition_1d": True, "normalize_grads": True, "correct_bias": False,
         "shampoo_beta": 0.8, "precondition_frequency": 3, "max_precond_dim": 5,
         "beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-6, "weight_decay": 0.1},
        0,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_reference_across_refreshes(case):
    shapes, options, seed = CASES[case]
    starts, gradients = quadratic(shapes, seed)
    lr = [0.01] * STEPS
    actual = run(SOAP(learning_rate=0.01, **options), starts, gradients, STEPS)
    expected = soap_reference(starts, gradients, lr, **options)
    # The refreshes matter: with the basis of step 0 kept throughout, every
    # rotated variable ends 1000 times the tolerance or more away.
    frozen = soap_reference(starts, gradients, lr, **{**options, "precondition_frequency": 10**6})
    for i, shape in enumerate(shapes):
        if len(shape) >= 2 or options.get("precondition_1d"):
            assert relative_error(frozen[i], expected[i]).max() > 1000 * TOLERANCE, shape
    for a, e, start in zip(actual, expected, starts):
        # The first step moves nothing (weight decay included).
        np.testing.assert_array_equal(a[0], np.float32(start))
        assert relative_error(a, e).max() < TOLERANCE


def counted_compiled_apply(optimizer, variables):
    """`conftest.compiled_apply`'s step, and a dict whose "traces" counts
    how often TensorFlow or JAX traced it (Python in the step runs only
    then); on PyTorch, which runs eagerly, every step counts."""
    counter = {"traces": 0}
    if not optimizer.built:
        optimizer.build(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True, reduce_retracing=True)
        def compiled(grads):
            counter["traces"] += 1
            optimizer.apply(grads, variables)

        def step(gradients):
            compiled([tf.convert_to_tensor(g) for g in gradients])

        return step, counter
    if BACKEND == "jax":
        import jax

        @jax.jit
        def jitted(optimizer_values, values, grads):
            counter["traces"] += 1
            return optimizer.stateless_apply(optimizer_values, grads, values)

        def step(gradients):
            values, state = jitted(
                [v.value for v in optimizer.variables], [v.value for v in variables],
                [keras.ops.convert_to_tensor(g) for g in gradients],
            )
            for variable, value in zip(list(variables) + optimizer.variables, values + state):
                variable.assign(value)

        return step, counter

    def step(gradients):
        counter["traces"] += 1
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], variables)

    return step, counter


FREQUENCY = 4
LOW_START = np.array([[1.0, -0.5, 0.75], [0.25, 1.5, -1.0]])


@pytest.fixture(scope="module")
def recorded():
    """Ten compiled steps, t = 0..9, of one optimizer (one compilation for
    the tests below) on a float32 (3, 4) matrix with generic gradients and
    a bfloat16 (2, 3) matrix with the gradient of 0.5 |x|^2: per step, the
    gradients, what the variables, slots, factors and bases hold after it,
    and the trace count."""
    rng = np.random.default_rng(2)
    optimizer = SOAP(learning_rate=0.1, weight_decay=0.5, precondition_frequency=FREQUENCY)
    start = rng.normal(size=(3, 4)).astype("float32")
    variables = [keras.Variable(start), keras.Variable(LOW_START, dtype="bfloat16")]
    step, counter = counted_compiled_apply(optimizer, variables)
    records = [{"values": [start, LOW_START]}]
    for _ in range(10):
        gradients = [rng.normal(size=(3, 4)).astype("float32"), np.array(variables[1])]
        step(gradients)
        records.append({
            "gradients": gradients,
            "values": [keras.ops.convert_to_numpy(keras.ops.cast(v, "float32")) for v in variables],
            "momentum": np.array(optimizer._momentums[0]),
            "velocity": np.array(optimizer._velocities[0]),
            "factors": [[np.array(f) for f, _ in modes] for modes in optimizer._factors],
            "bases": [[np.array(b) for _, b in modes] for modes in optimizer._factors],
            "traces": counter["traces"],
        })
    return optimizer, records


def test_first_step_only_starts_the_factors_and_their_eigenbases(recorded):
    # The default shampoo_beta is beta_2 = 0.95: L_k = 0.05 C_k(g). The
    # bases hold L_k's eigenvectors by descending eigenvalue (C for the
    # 4-mode has rank 3: its last vector spans the null space). Nothing
    # moves, weight decay included.
    _, records = recorded
    before, after = records[0], records[1]
    np.testing.assert_array_equal(after["values"][0], before["values"][0])
    np.testing.assert_array_equal(after["momentum"], 0.0)
    np.testing.assert_array_equal(after["velocity"], 0.0)
    gradient = after["gradients"][0].astype(np.float64)
    for mode, (factor, basis) in enumerate(zip(after["factors"][0], after["bases"][0])):
        expected = 0.05 * contraction(gradient, mode)
        np.testing.assert_allclose(factor, expected, rtol=1e-5, atol=1e-6)
        vectors = np.linalg.eigh(expected)[1][:, ::-1]
        # The same vectors in the same order, each up to its sign.
        np.testing.assert_allclose(np.abs(vectors.T @ basis), np.eye(len(expected)), atol=1e-5)


def test_basis_is_refreshed_exactly_when_the_frequency_divides_the_step(recorded):
    # Chosen inside the compiled step from its count: the bases change on
    # the steps t = 4 and 8 of 1..9 and are left bit for bit on the others,
    # while the factors move at every step.
    _, records = recorded
    for step in range(1, 10):
        # records[step + 1] holds the state after step `step`.
        previous, current = records[step], records[step + 1]
        for before, after in zip(previous["bases"], current["bases"]):
            for a, b in zip(before, after):
                assert np.array_equal(a, b) == (step % FREQUENCY != 0), step
        for a, b in zip(previous["factors"][0], current["factors"][0]):
            assert not np.array_equal(a, b)


if BACKEND in ("tensorflow", "jax"):

    def test_compiled_step_is_traced_once_across_first_step_and_refreshes(recorded):
        # The first step's eigendecomposition, the refreshes and the steps
        # between are branches of one trace.
        _, records = recorded
        assert records[1]["traces"] >= 1
        assert all(r["traces"] == records[1]["traces"] for r in records[1:])


def test_bfloat16_variable_moves_with_float32_linear_algebra(recorded):
    optimizer, records = recorded
    values = [r["values"][1] for r in records]
    assert keras.backend.standardize_dtype(optimizer._momentums[1].dtype) == "bfloat16"
    for factor, basis in optimizer._factors[1]:
        assert keras.backend.standardize_dtype(basis.dtype) == "float32"
        assert keras.backend.standardize_dtype(factor.dtype) == "float32"
    assert all(np.all(np.isfinite(v)) for v in values)
    np.testing.assert_array_equal(values[1], values[0].astype("float32"))
    assert np.sum(values[-1] ** 2) < 0.5 * np.sum(LOW_START**2)
    assert all(np.all(np.isfinite(b)) for b in records[-1]["bases"][1])


def test_which_modes_keep_a_factor():
    # Every mode from 2 up to max_precond_dim, of every variable of rank 2
    # or more (a convolution kernel too); rank 1 only with precondition_1d;
    # never a scalar, nor a mode of size 1 (its basis is +-1).
    shapes = [(3, 3, 2, 4), (5, 4), (4,), (), (4, 1)]
    expected = [[3, 3, 2, 4], [None, 4], [None], [], [4, None]]
    optimizer = SOAP(max_precond_dim=4)
    optimizer.build([keras.Variable(np.zeros(s, "float32")) for s in shapes])
    sizes = [[None if pair is None else tuple(pair[0].shape)[0] for pair in modes]
             for modes in optimizer._factors]
    assert sizes == expected
    for modes in optimizer._factors:
        for pair in modes:
            if pair is not None:
                assert all(keras.backend.standardize_dtype(m.dtype) == "float32" for m in pair)
                assert tuple(pair[1].shape) == tuple(pair[0].shape)
    # Two slots per variable, two matrices per kept mode, and Keras'
    # iteration, learning rate and lr_scale.
    assert len(optimizer.variables) == 3 + 2 * len(shapes) + 2 * (4 + 1 + 1)
    vectors = SOAP(precondition_1d=True, max_precond_dim=4)
    vectors.build([keras.Variable(np.zeros(s, "float32")) for s in [(4,), (5,)]])
    assert [[pair is not None for pair in modes] for modes in vectors._factors] == [[True], [False]]


def test_excluded_variables_are_not_decayed():
    optimizer = SOAP(learning_rate=0.01, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kept"])
    starts = [np.array([1.0, -2.0, 0.5]), np.array([1.0, -2.0, 0.5])]
    variables = [
        keras.Variable(np.float32(starts[0]), name="kept_bias"),
        keras.Variable(np.float32(starts[1]), name="decayed_bias"),
    ]
    gradients = [np.array([0.1, -0.3, 0.2]), np.array([0.1, -0.3, 0.2])]
    step = compiled_apply(optimizer, variables)
    for _ in range(4):
        step([np.float32(g) for g in gradients])
    constant = lambda xs, t: gradients  # noqa: E731
    undecayed = soap_reference(starts, constant, [0.01] * 4, weight_decay=0.0)
    decayed = soap_reference(starts, constant, [0.01] * 4, weight_decay=0.5)
    np.testing.assert_allclose(np.array(variables[0]), undecayed[0][-1], rtol=1e-6)
    np.testing.assert_allclose(np.array(variables[1]), decayed[1][-1], rtol=1e-6)
    assert not np.allclose(decayed[1][-1], undecayed[1][-1], rtol=1e-4)


def test_config_round_trip_keeps_every_argument():
    optimizer = SOAP(
        learning_rate=0.02, beta_1=0.9, beta_2=0.99, shampoo_beta=0.8, epsilon=1e-6,
        weight_decay=0.0, precondition_frequency=3, max_precond_dim=128,
        precondition_1d=True, normalize_grads=True, correct_bias=False,
    )
    restored = SOAP.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.shampoo_beta == 0.8 and restored.precondition_frequency == 3
    assert restored.max_precond_dim == 128 and restored.precondition_1d is True
    assert restored.normalize_grads is True and restored.correct_bias is False
    assert SOAP.from_config(SOAP().get_config()).shampoo_beta is None


def test_defaults_are_the_references():
    optimizer = SOAP()
    config = optimizer.get_config()
    assert float(np.array(optimizer.learning_rate)) == pytest.approx(3e-3)
    assert (config["beta_1"], config["beta_2"], config["shampoo_beta"]) == (0.95, 0.95, None)
    assert (config["epsilon"], config["weight_decay"]) == (1e-8, 0.01)
    assert (config["precondition_frequency"], config["max_precond_dim"]) == (10, 10000)
    assert (config["precondition_1d"], config["normalize_grads"], config["correct_bias"]) == (
        False, False, True
    )


def test_integer_arguments_are_accepted():
    optimizer = SOAP(learning_rate=1, beta_1=0, shampoo_beta=0, epsilon=0, weight_decay=0,
                     precondition_frequency=5.0)
    assert optimizer.shampoo_beta == 0.0 and optimizer.precondition_frequency == 5
    assert isinstance(optimizer.precondition_frequency, int)


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
        ("beta_2", -0.5, r"`beta_2` must be in \[0, 1\). Received: beta_2=-0.5"),
        ("shampoo_beta", -1, r"`shampoo_beta` must be in \[0, 1\). Received: shampoo_beta=-1.0"),
        ("shampoo_beta", 1.0, r"`shampoo_beta` must be in \[0, 1\). Received: shampoo_beta=1.0"),
        ("shampoo_beta", "beta_2",
         r"`shampoo_beta` must be a number in \[0, 1\). Received: shampoo_beta='beta_2'"),
        ("epsilon", -1e-8, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1e-08"),
        ("weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        ("precondition_frequency", 0,
         r"`precondition_frequency` must be in \[1, inf\). Received: precondition_frequency=0"),
        ("precondition_frequency", 2.5,
         r"`precondition_frequency` must be an integer in \[1, inf\). "
         r"Received: precondition_frequency=2.5"),
        ("max_precond_dim", 0, r"`max_precond_dim` must be in \[1, inf\). Received: max_precond_dim=0"),
        ("max_precond_dim", None,
         r"`max_precond_dim` must be an integer in \[1, inf\). Received: max_precond_dim=None"),
        ("precondition_1d", 1, r"`precondition_1d` must be True or False. Received: precondition_1d=1"),
        ("normalize_grads", "no",
         r"`normalize_grads` must be True or False. Received: normalize_grads='no'"),
        ("correct_bias", None, r"`correct_bias` must be True or False. Received: correct_bias=None"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SOAP(**{argument: value})
