"""Adam, SGD with momentum, Adam then SGD, SWATS and AdaBound on scikit-learn's
digits, from the same initial weights; saves the validation-loss curves with
the switch epochs marked.

    PYTHONPATH=. python examples/adam_then_sgd.py --output adam_then_sgd.png
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_optlab import optimizers  # noqa: E402
from keras_optlab.callbacks import LearningRateLogger, SwitchOptimizer  # noqa: E402

SWITCH_EPOCH = 9  # the callback switches after epoch index 9


def make_runs():
    """name -> (optimizer factory, callbacks factory)."""
    return {
        "Adam": (lambda: keras.optimizers.Adam(1e-3), list),
        "SGD, momentum 0.9": (lambda: keras.optimizers.SGD(0.05, momentum=0.9), list),
        f"Adam, then SGD after epoch {SWITCH_EPOCH + 1}": (
            lambda: optimizers.get("adam_then_sgd", learning_rate=1e-3, sgd_learning_rate=0.05),
            lambda: [SwitchOptimizer(at_epoch=SWITCH_EPOCH)],
        ),
        # SWATS with its defaults decides the switch itself.
        "SWATS": (lambda: optimizers.SWATS(1e-3), list),
        "AdaBound": (lambda: optimizers.AdaBound(1e-3, final_lr=0.05), list),
    }


def main(epochs: int, output: str) -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    keras.utils.set_random_seed(0)
    template = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    initial_weights = template.get_weights()
    batch_size = 32
    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))

    figure, axis = plt.subplots(figsize=(8, 5))
    for name, (make_optimizer, make_callbacks) in make_runs().items():
        model = keras.models.clone_model(template)
        model.set_weights(initial_weights)
        model.compile(
            optimizer=make_optimizer(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
            batch_size=batch_size, verbose=0,
            callbacks=make_callbacks() + [LearningRateLogger()],
        )
        losses = history.history["val_loss"]
        line, = axis.plot(range(1, epochs + 1), losses, label=name)
        switch_iteration = getattr(model.optimizer, "switch_iteration", None)
        message = ""
        if switch_iteration is not None:
            step = int(np.asarray(keras.ops.convert_to_numpy(switch_iteration)))
            if step >= 0:
                # The epoch (1-based) whose first step was the second method's.
                epoch = step // steps_per_epoch + 1
                axis.axvline(epoch, color=line.get_color(), linestyle="--", alpha=0.7)
                message = f", switched to SGD at step {step} (epoch {epoch})"
            else:
                message = ", did not switch"
        print(
            f"{name:32} val_loss {losses[-1]:.4f}  "
            f"val_accuracy {history.history['val_accuracy'][-1]:.4f}{message}"
        )

    axis.set_xlabel("epoch")
    axis.set_ylabel("validation loss")
    axis.set_yscale("log")
    axis.set_title("digits, 64-128-10 MLP; dashed: first epoch after the switch")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", default="adam_then_sgd.png")
    arguments = parser.parse_args()
    main(arguments.epochs, arguments.output)
