"""ScheduleFreeSGD and ScheduleFreeAdamW against an independent NumPy
(float64) transcription of the authors' `schedulefree` 1.4
`SGDScheduleFree.step` and `AdamWScheduleFree.step` (with `eval()` for x),
on a quadratic with a warmup, so that the lr_max**2 weighting of the
average matters; then the callback that moves a model between y and x."""

import types

import keras
import numpy as np
import pytest

from conftest import (
    BACKEND,
    JIT_COMPILE,
    build_optimizer,
    compiled_apply,
    regression_data,
    small_model,
)
from keras_optlab.callbacks import ScheduleFreeEval
from keras_optlab.optimizers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD


def schedule_free_reference(
    start, gradients, steps, kind, learning_rate, beta=0.9, beta_2=0.999, epsilon=1e-8,
    weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0,
):
    """Float64 schedule-free SGD (`kind="sgd"`, beta = momentum) or AdamW
    (`kind="adamw"`, beta = beta_1) over a list of arrays; `gradients(ys)`
    gives the gradients at y. Returns y, z and x (concatenated) after each
    step, and (lr_max, weight_sum) after each step."""
    ys = [np.array(x, np.float64) for x in start]
    zs = [y.copy() for y in ys]
    vs = [np.zeros_like(y) for y in ys]
    lr_max, weight_sum = -1.0, 0.0
    history, scalars = {"y": [], "z": [], "x": []}, []
    for k in range(steps):
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        lr = learning_rate * sched
        lr_max = max(lr, lr_max)
        weight = (k + 1) ** r * lr_max ** weight_lr_power
        weight_sum += weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        for i, g in enumerate(gradients(ys)):
            y, z = ys[i], zs[i]
            decay = weight_decay[i] if isinstance(weight_decay, list) else weight_decay
            g = np.array(g, np.float64)
            if kind == "sgd":
                u = g + decay * y
            else:
                vs[i] = beta_2 * vs[i] + (1 - beta_2) * g * g
                denom = np.sqrt(vs[i] / (1 - beta_2 ** (k + 1))) + epsilon
                u = g / denom + decay * y
            ys[i] = y + ckp1 * (z - y) + lr * (beta * (1 - ckp1) - 1) * u
            zs[i] = z - lr * u
        flat_y = np.concatenate([y.ravel() for y in ys])
        flat_z = np.concatenate([z.ravel() for z in zs])
        history["y"].append(flat_y)
        history["z"].append(flat_z)
        # eval(): p.lerp_(z, 1 - 1/beta)
        history["x"].append(flat_y + (1 - 1 / beta) * (flat_z - flat_y))
        scalars.append((lr_max, weight_sum))
    return {key: np.array(value) for key, value in history.items()}, np.array(scalars)


RNG = np.random.default_rng(0)
CURVATURES = [RNG.uniform(0.2, 2.0, size=(3, 4)), RNG.uniform(0.2, 2.0, size=(4,))]
TARGETS = [RNG.normal(size=(3, 4)), RNG.normal(size=(4,))]
START = [RNG.normal(size=(3, 4)).astype("float32"), RNG.normal(size=(4,)).astype("float32")]


def quadratic_gradients(ys):
    return [a * (np.asarray(y, np.float64) - t) for a, y, t in zip(CURVATURES, ys, TARGETS)]


def run(optimizer, steps):
    """The optimizer's compiled steps from START: y, z after each step,
    (lr_max, weight_sum) after each, and x, then y again, at the end
    through `to_x` and `to_y`."""
    variables = [keras.Variable(x) for x in START]
    step = compiled_apply(optimizer, variables)
    flat = lambda arrays: np.concatenate([np.array(a, np.float64).ravel() for a in arrays])
    history, scalars = {"y": [], "z": []}, []
    for _ in range(steps):
        values = [np.array(v) for v in variables]
        step([g.astype("float32") for g in quadratic_gradients(values)])
        history["y"].append(flat(variables))
        history["z"].append(flat(optimizer._z))
        scalars.append([float(np.array(optimizer.lr_max)), float(np.array(optimizer.weight_sum))])
    assert int(np.array(optimizer.steps_taken)) == steps
    optimizer.to_x(variables)
    x = flat(variables)
    optimizer.to_x(variables)  # already at x: nothing moves
    np.testing.assert_array_equal(flat(variables), x)
    assert int(np.array(optimizer.at_average)) == 1
    optimizer.to_y(variables)
    y_again = flat(variables)
    assert int(np.array(optimizer.at_average)) == 0
    return {key: np.array(value) for key, value in history.items()}, np.array(scalars), x, y_again


def assert_matches(actual, expected, rtol=1e-5):
    history, scalars, x, y_again = actual
    expected_history, expected_scalars = expected
    scale = np.abs(expected_history["z"]).max()
    for key in ("y", "z"):
        np.testing.assert_allclose(
            history[key], expected_history[key], rtol=rtol, atol=rtol * scale, err_msg=key
        )
    np.testing.assert_allclose(x, expected_history["x"][-1], rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(y_again, history["y"][-1], rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(scalars, expected_scalars, rtol=1e-5)


SGD = dict(kind="sgd", cls=ScheduleFreeSGD, beta="momentum", learning_rate=0.1)
ADAMW = dict(kind="adamw", cls=ScheduleFreeAdamW, beta="beta_1", learning_rate=0.05)


def build(setup, **options):
    """The optimizer and the reference's keyword arguments for `options`."""
    options = {"learning_rate": setup["learning_rate"], **options}
    reference = {("beta" if k == setup["beta"] else k): v for k, v in options.items()}
    return setup["cls"](**options), dict(kind=setup["kind"], **reference)


@pytest.mark.parametrize("setup", [SGD, ADAMW], ids=["sgd", "adamw"])
def test_matches_the_reference_over_100_steps_with_warmup(setup):
    steps = 100
    optimizer, reference = build(setup, warmup_steps=20)
    actual = run(optimizer, steps)
    expected = schedule_free_reference(START, quadratic_gradients, steps, **reference)
    assert_matches(actual, expected)
    history = expected[0]
    # The distinctive features happened: x, y and z differ, and the
    # warmup's lr_max**2 weighting differs from equal weights.
    assert np.abs(history["x"][-1] - history["y"][-1]).max() > 1e-3
    assert np.abs(history["z"][-1] - history["y"][-1]).max() > 1e-3
    equal_weights = schedule_free_reference(
        START, quadratic_gradients, steps, **{**reference, "weight_lr_power": 0.0}
    )[0]
    assert np.abs(equal_weights["x"][-1] - history["x"][-1]).max() > 1e-3


OPTION_CASES = {
    "sgd_momentum": (SGD, dict(momentum=0.5)),
    "sgd_weight_decay": (SGD, dict(weight_decay=0.3)),
    "sgd_r_and_power": (SGD, dict(r=1.5, weight_lr_power=1.0, warmup_steps=10)),
    "adamw_beta_1": (ADAMW, dict(beta_1=0.6)),
    "adamw_beta_2": (ADAMW, dict(beta_2=0.9)),
    "adamw_epsilon": (ADAMW, dict(epsilon=0.1)),
    "adamw_weight_decay": (ADAMW, dict(weight_decay=0.3)),
    "adamw_r_and_power": (ADAMW, dict(r=1.5, weight_lr_power=1.0, warmup_steps=10)),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_each_option_matches_the_reference_and_changes_the_run(case):
    steps = 40
    setup, options = OPTION_CASES[case]
    optimizer, reference = build(setup, **options)
    actual = run(optimizer, steps)
    expected = schedule_free_reference(START, quadratic_gradients, steps, **reference)
    assert_matches(actual, expected)
    _, default = build(setup)
    default_x = schedule_free_reference(START, quadratic_gradients, steps, **default)[0]["x"]
    assert np.abs(expected[0]["x"] - default_x).max() > 1e-3


def test_exclude_from_weight_decay_and_lr_scale():
    # Only the second variable decays; lr_scale 0.5 halves the rate.
    steps = 20
    optimizer = ScheduleFreeSGD(learning_rate=0.2, weight_decay=0.3, warmup_steps=5)
    variables = [keras.Variable(x) for x in START]
    optimizer.exclude_from_weight_decay(var_list=[variables[0]])
    optimizer.lr_scale.assign(0.5)
    step = compiled_apply(optimizer, variables)
    for _ in range(steps):
        step([g.astype("float32") for g in quadratic_gradients([np.array(v) for v in variables])])
    expected, _ = schedule_free_reference(
        START, quadratic_gradients, steps, "sgd", 0.1, weight_decay=[0.0, 0.3], warmup_steps=5
    )
    actual = np.concatenate([np.array(v, np.float64).ravel() for v in variables])
    np.testing.assert_allclose(actual, expected["y"][-1], rtol=1e-5, atol=1e-6)
    decayed, _ = schedule_free_reference(
        START, quadratic_gradients, steps, "sgd", 0.1, weight_decay=0.3, warmup_steps=5
    )
    assert np.abs(decayed["y"][-1][:12] - expected["y"][-1][:12]).max() > 1e-3


class _Probe(keras.callbacks.Callback):
    """Placed before ScheduleFreeEval: at each validation, the weights (y)
    and z before the move to x."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_test_begin(self, logs=None):
        optimizer = self.model.optimizer
        variables = self.model.trainable_variables
        zs = [np.array(optimizer._z[optimizer._get_variable_index(v)], np.float64) for v in variables]
        self.seen.append(([np.array(v, np.float64) for v in variables], zs))


def _compiled_model(optimizer):
    model = small_model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT_COMPILE)
    build_optimizer(model)
    return model


def test_callback_validates_at_x_ends_at_x_and_a_second_fit_resumes_from_y_exactly():
    x_train, y_train = regression_data(n=64)
    x_val, y_val = regression_data(n=32, seed=1)
    fit = dict(batch_size=16, shuffle=False, verbose=0)
    beta = 0.8
    optimizer = lambda: ScheduleFreeAdamW(learning_rate=0.02, beta_1=beta, warmup_steps=3)
    split, probe, callback = _compiled_model(optimizer()), _Probe(), ScheduleFreeEval()
    history = split.fit(
        x_train, y_train, epochs=2, validation_data=(x_val, y_val),
        callbacks=[probe, callback], **fit,
    )
    # Validation ran at x = y + (1 - 1/beta)(z - y), computed here in
    # float64 from what the probe saw before the move, and fit ended there.
    assert len(probe.seen) == 2
    ys, zs = probe.seen[-1]
    xs = [y + (1 - 1 / beta) * (z - y) for y, z in zip(ys, zs)]
    for actual, expected in zip(split.get_weights(), xs):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert int(np.array(split.optimizer.at_average)) == 1
    at_x = split.evaluate(x_val, y_val, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"], [
        history.history["val_loss"][0], at_x], rtol=1e-6)
    # The same check at the first epoch: the loss at that epoch's x.
    at_end = split.get_weights()
    ys_0, zs_0 = probe.seen[0]
    split.set_weights([(y + (1 - 1 / beta) * (z - y)).astype("float32") for y, z in zip(ys_0, zs_0)])
    np.testing.assert_allclose(history.history["val_loss"][0], split.evaluate(x_val, y_val, verbose=0), rtol=1e-5)
    split.set_weights([y.astype("float32") for y in ys])
    at_y = split.evaluate(x_val, y_val, verbose=0)
    assert abs(at_y - at_x) > 1e-3 * at_x  # x is not y: the check can fail
    split.set_weights(at_end)

    # Two more epochs from where fit left the model (at x) continue from y
    # as four uninterrupted epochs do, bit for bit.
    split.fit(x_train, y_train, epochs=2, callbacks=[callback], **fit)
    whole = _compiled_model(optimizer())
    whole.fit(x_train, y_train, epochs=4, callbacks=[ScheduleFreeEval()], **fit)
    for a, b in zip(split.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(split.optimizer.variables, whole.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_callback_serves_keras_schedule_free_adamw():
    # The callback moves Keras' ScheduleFreeAdamW by the relation its own
    # step uses, x = (y - (1 - beta) z) / beta with z its slot `momentum`.
    # On JAX that x is the mean of z_1 .. z_t (Keras averages with weights
    # 1/t). On TensorFlow and PyTorch Keras 3.15's step reads the slot after
    # updating it (`momentum.value` is the live variable), so its average
    # is not that mean; the relation is the same.
    optimizer = keras.optimizers.ScheduleFreeAdamW(learning_rate=0.05, beta_1=0.7)
    variables = [keras.Variable(x) for x in START]
    step = compiled_apply(optimizer, variables)
    zs = []
    for _ in range(15):
        step([g.astype("float32") for g in quadratic_gradients([np.array(v) for v in variables])])
        zs.append(np.concatenate([np.array(m, np.float64).ravel() for m in optimizer._momentums]))
    flat = lambda: np.concatenate([np.array(v, np.float64).ravel() for v in variables])
    y = flat()
    expected = (y - 0.3 * zs[-1]) / 0.7
    callback = ScheduleFreeEval()
    callback.set_model(types.SimpleNamespace(optimizer=optimizer, trainable_variables=variables))
    callback.on_train_end()
    np.testing.assert_allclose(flat(), expected, rtol=1e-5, atol=1e-6)
    if BACKEND == "jax":
        np.testing.assert_allclose(flat(), np.mean(zs, axis=0), rtol=1e-5, atol=1e-6)
    callback.on_train_end()  # already at x: nothing moves
    np.testing.assert_allclose(flat(), expected, rtol=1e-5, atol=1e-6)
    callback.on_epoch_begin(0)
    np.testing.assert_array_equal(flat(), y)


def test_callback_refuses_other_optimizers():
    callback = ScheduleFreeEval()
    callback.set_model(types.SimpleNamespace(optimizer=keras.optimizers.SGD(), trainable_variables=[]))
    with pytest.raises(TypeError, match="schedule-free optimizer"):
        callback.on_train_begin()


@pytest.mark.parametrize("cls", [ScheduleFreeSGD, ScheduleFreeAdamW])
def test_saved_and_loaded_with_the_model(cls, tmp_path):
    model = small_model()
    model.compile(optimizer=cls(warmup_steps=7, r=0.5, weight_lr_power=1.5, weight_decay=0.01), loss="mse")
    build_optimizer(model)
    model.optimizer.build(model.trainable_variables)
    for index, variable in enumerate(model.optimizer.variables):
        variable.assign(np.full(variable.shape, index + 1, variable.dtype))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is cls
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    assert int(np.array(loaded.optimizer.at_average)) == int(np.array(model.optimizer.at_average))


def test_config_round_trip_keeps_every_argument():
    for optimizer in (
        ScheduleFreeSGD(learning_rate=0.5, momentum=0.8, weight_decay=0.01, warmup_steps=10,
                        r=1.0, weight_lr_power=1.0),
        ScheduleFreeAdamW(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6,
                          weight_decay=0.01, warmup_steps=10, r=1.0, weight_lr_power=1.0),
    ):
        restored = type(optimizer).from_config(optimizer.get_config())
        assert restored.get_config() == optimizer.get_config()
        assert restored.warmup_steps == 10 and restored.r == 1.0


@pytest.mark.parametrize(
    "cls, argument, value, message",
    [
        (ScheduleFreeSGD, "momentum", 1.0, r"`momentum` must be in \(0, 1\). Received: momentum=1.0"),
        (ScheduleFreeSGD, "momentum", 0, r"`momentum` must be in \(0, 1\). Received: momentum=0"),
        (ScheduleFreeSGD, "weight_decay", -0.1, r"`weight_decay` must be in \[0, inf\). Received: weight_decay=-0.1"),
        (ScheduleFreeSGD, "warmup_steps", -1, r"`warmup_steps` must be in \[0, inf\). Received: warmup_steps=-1"),
        (ScheduleFreeSGD, "warmup_steps", 2.5, r"`warmup_steps` must be an integer"),
        (ScheduleFreeSGD, "r", -1.0, r"`r` must be in \[0, inf\). Received: r=-1.0"),
        (ScheduleFreeSGD, "learning_rate", -1.0, r"`learning_rate` must be in \[0, inf\). Received: learning_rate=-1.0"),
        (ScheduleFreeAdamW, "weight_lr_power", "2", r"`weight_lr_power` must be a number"),
        (ScheduleFreeAdamW, "beta_1", 0.0, r"`beta_1` must be in \(0, 1\). Received: beta_1=0.0"),
        (ScheduleFreeAdamW, "beta_2", 1.0, r"`beta_2` must be in \[0, 1\). Received: beta_2=1.0"),
        (ScheduleFreeAdamW, "epsilon", 0.0, r"`epsilon` must be in \(0, inf\). Received: epsilon=0.0"),
    ],
)
def test_bad_arguments(cls, argument, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        cls(**{argument: value})
