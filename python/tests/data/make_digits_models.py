"""Trains the two small digits models the export tests use and saves their
weights to ``digits_models.npz`` next to this file (so the tests need no
training): a CNN (Conv2D 16x3x3 + ReLU, Flatten, Dense 32 + ReLU, Dense 10)
and an MLP (Dense 128 + ReLU, Dense 10), Keras layouts, on scikit-learn's
bundled 8x8 digits split as ``swiftprune._demo.load_digits_split`` splits it.

    KERAS_BACKEND=jax python python/tests/data/make_digits_models.py
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from swiftprune._demo import load_digits_split  # noqa: E402


def build_cnn() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
                             keras.layers.Flatten(name="flatten"), keras.layers.Dense(32, activation="relu", name="fc1"),
                             keras.layers.Dense(10, name="fc2")], name="digits_cnn")


def build_mlp() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu", name="fc1"),
                             keras.layers.Dense(10, name="fc2")], name="digits_mlp")


def main() -> None:
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = load_digits_split()
    out = {}
    for name, model, x, xt in (("cnn", build_cnn(), x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)),
                               ("mlp", build_mlp(), x_train, x_test)):
        model.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        model.fit(x, y_train, epochs=20, batch_size=64, verbose=0)
        print(name, "test accuracy", model.evaluate(xt, y_test, verbose=0)[1])
        for variable in model.weights:
            out[f"{name}/{variable.path}"] = np.asarray(variable.numpy(), dtype=np.float32)
    np.savez_compressed(os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_models.npz"), **out)


if __name__ == "__main__":
    main()
