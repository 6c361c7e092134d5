"""LazyAdam against independent NumPy transcriptions of Adam (Kingma & Ba
2015, Algorithm 1, with epsilon beside sqrt(v) as in Keras and TensorFlow
Addons) and of its lazy sparse form: only the rows a gradient touches have
m, v and weights updated, duplicate rows summed first."""

import keras
import numpy as np
import pytest

from conftest import BACKEND, JIT_COMPILE, apply_trajectory, build_optimizer
from keras_optlab.optimizers import LazyAdam


def adam_reference(theta, gradients, lr, beta_1, beta_2, eps, amsgrad=False, weight_decay=0.0):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    trajectory = []
    for t in range(1, len(lr) + 1):
        g = gradients(theta)
        theta = theta - lr[t - 1] * weight_decay * theta
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        v_max = np.maximum(v_max, v)
        denominator = np.sqrt(v_max if amsgrad else v) + eps
        theta = theta - lr[t - 1] * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / denominator
        trajectory.append(theta.copy())
    return np.array(trajectory)


def lazy_adam_step(state, t, rows, row_gradients, lr, beta_1, beta_2, eps, amsgrad=False):
    """One lazy step in place on `state` = (theta, m, v, v_max), float64.
    `rows` may repeat; the gradient of a row is the sum of its slices."""
    theta, m, v, v_max = state
    unique_rows = np.unique(rows)
    g = np.zeros((len(unique_rows),) + theta.shape[1:])
    for row, slice_ in zip(rows, row_gradients):
        g[np.searchsorted(unique_rows, row)] += slice_
    r = unique_rows
    m[r] = beta_1 * m[r] + (1 - beta_1) * g
    v[r] = beta_2 * v[r] + (1 - beta_2) * g * g
    v_max[r] = np.maximum(v_max[r], v[r])
    denominator = np.sqrt(v_max[r] if amsgrad else v[r]) + eps
    theta[r] -= lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m[r] / denominator


def quadratic_gradient(scales):
    # Minimum near x = 5, farther than the runs below travel: near a minimum
    # Adam's steps flip sign chaotically and float32 parts from float64.
    return lambda x: scales * (x - 5.0) + 0.05 * np.sin(7 * x)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("beta_1, beta_2", [(0.9, 0.999), (0.5, 0.9)])
def test_dense_gradient_matches_numpy_adam(beta_1, beta_2, amsgrad):
    steps = 150
    theta = np.array([1.5, -2.0, 0.5, 3.0, -0.7, 0.01])
    gradient_fn = quadratic_gradient(np.array([1.0, 0.5, 2.0, 0.1, 4.0, 30.0]))
    optimizer = LazyAdam(learning_rate=0.01, beta_1=beta_1, beta_2=beta_2, amsgrad=amsgrad)
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected = adam_reference(theta, gradient_fn, [0.01] * steps, beta_1, beta_2, 1e-7, amsgrad)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_amsgrad_changes_the_trajectory():
    # Otherwise the amsgrad test above could pass with the flag ignored
    # (with beta_2 = 0.999 v never falls within these runs).
    theta = np.array([1.5, -2.0, 0.5])
    gradient_fn = quadratic_gradient(np.array([1.0, 0.5, 2.0]))
    plain = adam_reference(theta, gradient_fn, [0.01] * 150, 0.5, 0.9, 1e-7, False)
    maxed = adam_reference(theta, gradient_fn, [0.01] * 150, 0.5, 0.9, 1e-7, True)
    assert np.max(np.abs(plain - maxed)) > 1e-3


def test_dense_gradient_matches_reference_with_schedule_lr_scale_and_weight_decay():
    steps = 120
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=10, decay_rate=0.8)
    optimizer = LazyAdam(learning_rate=schedule, weight_decay=0.1)
    optimizer.lr_scale.assign(0.5)
    theta = np.array([1.0, -1.0, 2.0])
    gradient_fn = quadratic_gradient(np.array([1.0, 3.0, 0.2]))
    rates = [0.5 * 0.05 * 0.8 ** (t / 10) for t in range(steps)]
    actual = apply_trajectory(optimizer, theta, gradient_fn, steps)
    expected = adam_reference(theta, gradient_fn, rates, 0.9, 0.999, 1e-7, weight_decay=0.1)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_dense_gradient_equals_keras_adam():
    # Keras' Adam forms beta**t in float32, which puts up to ~5e-6 relative
    # error on its step size; LazyAdam forms 1 - beta**t with expm1. The two
    # therefore agree on the distance travelled to 1e-5 relative (plus float32
    # rounding of values up to 3: 1e-6), and LazyAdam is the closer of the two
    # to the float64 equations.
    steps = 300
    theta = np.array([1.5, -2.0, 0.5, 3.0, -0.7])
    gradient_fn = quadratic_gradient(np.array([1.0, 0.5, 2.0, 0.1, 4.0]))
    ours = apply_trajectory(LazyAdam(learning_rate=1e-3), theta, gradient_fn, steps)
    keras_adam = apply_trajectory(keras.optimizers.Adam(learning_rate=1e-3), theta, gradient_fn, steps)
    exact = adam_reference(theta, gradient_fn, [1e-3] * steps, 0.9, 0.999, 1e-7)
    np.testing.assert_allclose(ours - theta, keras_adam - theta, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(ours[-1] - theta)) > 0.1
    assert np.max(np.abs(ours - exact)) < np.max(np.abs(keras_adam - exact))


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("beta_1", 1.0, r"`beta_1` must be in \[0, 1\). Received: beta_1=1.0"),
        ("beta_2", -0.5, r"`beta_2` must be in \[0, 1\). Received: beta_2=-0.5"),
        ("epsilon", -1.0, r"`epsilon` must be in \[0, inf\). Received: epsilon=-1.0"),
        ("amsgrad", "yes", "`amsgrad` must be True or False"),
        ("learning_rate", -0.1, "`learning_rate`"),
    ],
)
def test_bad_arguments(argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LazyAdam(**{argument: value})


# An embedding table of ROWS rows; each step looks up LOOKUPS rows per sample
# among a few of the table's rows, so rows repeat within a batch and most
# rows are left out of each step.
ROWS, WIDTH, BATCH, LOOKUPS, STEPS = 40, 3, 4, 3, 60


def embedding_batches(seed=0):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(ROWS, WIDTH)).astype("float32")
    indices, targets = [], []
    for _ in range(STEPS):
        pool = rng.choice(ROWS, size=6, replace=False)
        indices.append(rng.choice(pool, size=(BATCH, LOOKUPS)).astype("int32"))
        targets.append(rng.normal(size=(BATCH, LOOKUPS, WIDTH)).astype("float32"))
    return table, indices, targets


def embedding_model(table):
    model = keras.Sequential(
        [keras.Input((LOOKUPS,), dtype="int32"), keras.layers.Embedding(ROWS, WIDTH)]
    )
    model.set_weights([table])
    return model


def half_squared_error(targets, outputs):
    # Per sample; fit averages over the batch.
    return 0.5 * keras.ops.sum(keras.ops.square(outputs - targets), axis=(1, 2))


def lazy_reference(table, indices, targets, lr, amsgrad=False):
    """Snapshots (theta, m, v) after each step for the loss
    mean over samples of half_squared_error."""
    state = [table.astype(np.float64), *(np.zeros((ROWS, WIDTH)) for _ in range(3))]
    snapshots = []
    for t, (rows, target) in enumerate(zip(indices, targets), start=1):
        rows = rows.reshape(-1)
        slices = (state[0][rows] - target.reshape(-1, WIDTH)) / BATCH
        lazy_adam_step(state, t, rows, slices, lr, 0.9, 0.999, 1e-7, amsgrad)
        snapshots.append(tuple(a.copy() for a in state[:3]))
    return snapshots


def test_batches_repeat_rows_and_leave_most_rows_out():
    _, indices, _ = embedding_batches()
    for rows in indices:
        assert len(np.unique(rows)) < rows.size
        assert len(np.unique(rows)) <= 6


if BACKEND == "tensorflow":
    import tensorflow as tf

    def optimizer_slots(optimizer, variable):
        index = optimizer._get_variable_index(variable)
        return optimizer._momentums[index], optimizer._velocities[index]

    def snapshot(model, optimizer):
        variable = model.layers[0].embeddings
        m, v = optimizer_slots(optimizer, variable)
        return tuple(np.array(x) for x in (variable, m, v))

    def apply_step(model, optimizer):
        """One step of `optimizer` on the loss of a batch, with the sparse
        gradient TensorFlow gives an embedding lookup."""
        variables = model.trainable_variables
        optimizer.build(variables)

        def step(rows, target):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(half_squared_error(target, model(rows)))
            gradients = tape.gradient(loss, variables)
            assert isinstance(gradients[0], tf.IndexedSlices)
            optimizer.apply(gradients, variables)

        return step

    def train_with_apply(compile_step, lr=0.01, amsgrad=False):
        table, indices, targets = embedding_batches()
        model = embedding_model(table)
        optimizer = LazyAdam(learning_rate=lr, amsgrad=amsgrad)
        step = apply_step(model, optimizer)
        if compile_step:
            step = tf.function(step, jit_compile=True)
        snapshots = []
        for rows, target in zip(indices, targets):
            step(tf.constant(rows), tf.constant(target))
            snapshots.append(snapshot(model, optimizer))
        return table, indices, targets, snapshots

    class Snapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.snapshots = []

        def on_train_batch_end(self, batch, logs=None):
            self.snapshots.append(snapshot(self.model, self.model.optimizer))

    def train_with_fit(lr=0.01):
        table, indices, targets = embedding_batches()
        model = embedding_model(table)
        model.compile(optimizer=LazyAdam(learning_rate=lr), loss=half_squared_error, jit_compile=True)
        build_optimizer(model)
        recorder = Snapshots()
        model.fit(
            np.concatenate(indices), np.concatenate(targets), batch_size=BATCH,
            shuffle=False, epochs=1, verbose=0, callbacks=[recorder],
        )
        return table, indices, targets, recorder.snapshots

    def assert_lazy_and_matches_reference(table, indices, targets, snapshots, lr, amsgrad=False):
        assert len(snapshots) == STEPS
        reference = lazy_reference(table, indices, targets, lr, amsgrad)
        previous = (table, np.zeros((ROWS, WIDTH), "float32"), np.zeros((ROWS, WIDTH), "float32"))
        rows_moved_before = np.zeros(ROWS, bool)
        revisited = 0
        for rows, current, expected in zip(indices, snapshots, reference):
            untouched = np.setdiff1d(np.arange(ROWS), rows)
            # Rows that Adam would move (m != 0) but LazyAdam must leave alone.
            revisited += int(rows_moved_before[untouched].sum())
            for after, before in zip(current, previous):
                np.testing.assert_array_equal(after[untouched], before[untouched])
            for after, wanted in zip(current, expected):
                np.testing.assert_allclose(after, wanted, rtol=1e-5, atol=1e-6)
            rows_moved_before[np.unique(rows)] = True
            previous = current
        assert revisited > STEPS

    @pytest.mark.parametrize("amsgrad", [False, True])
    def test_sparse_eager_steps_touch_only_looked_up_rows(amsgrad):
        table, indices, targets, snapshots = train_with_apply(False, amsgrad=amsgrad)
        assert_lazy_and_matches_reference(table, indices, targets, snapshots, 0.01, amsgrad)

    def test_sparse_steps_under_xla_touch_only_looked_up_rows():
        table, indices, targets, snapshots = train_with_apply(True)
        assert_lazy_and_matches_reference(table, indices, targets, snapshots, 0.01)

    def test_sparse_steps_under_compiled_fit_touch_only_looked_up_rows():
        table, indices, targets, snapshots = train_with_fit()
        assert_lazy_and_matches_reference(table, indices, targets, snapshots, 0.01)

    def test_repeated_indices_equal_their_sum():
        # As TensorFlow Addons tested: slices 0.1 and 0.1 on row 1 step like
        # one slice 0.2; row 0 is never touched.
        def run(values, indices):
            variable = keras.Variable(np.array([[1.0], [2.0]], "float32"))
            optimizer = LazyAdam()
            gradient = tf.IndexedSlices(
                tf.constant(values, shape=[len(values), 1]), tf.constant(indices), tf.constant([2, 1])
            )
            for _ in range(3):
                optimizer.apply([gradient], [variable])
            return np.array(variable)

        repeated = run([0.1, 0.1], [1, 1])
        np.testing.assert_array_equal(repeated, run([0.2], [1]))
        assert repeated[0, 0] == 1.0 and repeated[1, 0] < 2.0

    def test_keras_adam_moves_rows_a_step_did_not_touch():
        # The contrast that makes the tests above meaningful.
        table, indices, targets = embedding_batches()
        model = embedding_model(table)
        step = apply_step(model, keras.optimizers.Adam(0.01))
        step(tf.constant(indices[0]), tf.constant(targets[0]))
        before = np.array(model.layers[0].embeddings)
        step(tf.constant(indices[1]), tf.constant(targets[1]))
        after = np.array(model.layers[0].embeddings)
        moved_only_before = np.setdiff1d(indices[0], indices[1])
        assert moved_only_before.size > 0
        assert np.all(after[moved_only_before] != before[moved_only_before])

    def test_sparse_steps_under_mirrored_strategy_match_the_lazy_reference():
        # Each replica sees half of every batch; the sparse gradients are
        # combined before the step, which must be the one-device lazy step.
        table, indices, targets = embedding_batches()
        # Reduced on one device rather than by collectives: TensorFlow numbers
        # collective instances per process, and a gather of sparse indices
        # whose number an earlier strategy used for an all-reduce of floats
        # aborts ("expected type 0 ... but got type 2").
        strategy = tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
        with strategy.scope():
            model = embedding_model(table)
            model.compile(optimizer=LazyAdam(0.01), loss=half_squared_error, jit_compile=False)
        model.fit(
            np.concatenate(indices), np.concatenate(targets), batch_size=BATCH,
            shuffle=False, epochs=1, verbose=0,
        )
        reference = lazy_reference(table, indices, targets, 0.01)[-1][0]
        np.testing.assert_allclose(np.array(model.layers[0].embeddings), reference, rtol=1e-5, atol=1e-6)

else:

    def test_embedding_training_equals_keras_adam():
        # JAX and PyTorch give Keras dense gradients: LazyAdam is Adam there.
        table, indices, targets = embedding_batches()

        def train(optimizer):
            model = embedding_model(table)
            model.compile(optimizer=optimizer, loss=half_squared_error, jit_compile=JIT_COMPILE)
            build_optimizer(model)
            model.fit(
                np.concatenate(indices), np.concatenate(targets), batch_size=BATCH,
                shuffle=False, epochs=3, verbose=0,
            )
            return np.array(model.layers[0].embeddings)

        ours = train(LazyAdam(0.002))
        adam = train(keras.optimizers.Adam(0.002))
        np.testing.assert_allclose(ours, adam, rtol=1e-6, atol=1e-6)
        assert np.max(np.abs(ours - table)) > 0.1
