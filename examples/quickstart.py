"""Train one small model on scikit-learn's digits with Adam and with RAdam,
from the same initial weights, and print both validation accuracies."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from keras_optlab import optimizers  # noqa: E402


def main(epochs: int = 20) -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    keras.utils.set_random_seed(0)
    template = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    initial_weights = template.get_weights()

    for name in ("adam", "radam"):
        model = keras.models.clone_model(template)
        model.set_weights(initial_weights)
        model.compile(
            optimizer=optimizers.get(name, learning_rate=1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val),
            batch_size=32, epochs=epochs, verbose=0,
        )
        accuracy = history.history["val_accuracy"][-1]
        print(f"{name:>6}: validation accuracy {accuracy:.4f} after {epochs} epochs")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
