"""The trained digits CNN and MLP of ``data/digits_models.npz`` (made by
``data/make_digits_models.py``) and NumPy forward passes of them, the float
references the export tests compare runtimes against."""
from __future__ import annotations

import functools
import os

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits_models.npz")


@functools.lru_cache(maxsize=1)
def weights() -> dict[str, dict[str, np.ndarray]]:
    """``{"cnn": {"conv/kernel": ..., ...}, "mlp": {...}}`` in Keras layouts."""
    out: dict[str, dict[str, np.ndarray]] = {"cnn": {}, "mlp": {}}
    with np.load(DATA) as archive:
        for key in archive.files:
            model, *_, layer, variable = key.split("/")  # "cnn/digits_cnn/fc1/kernel"
            out[model][f"{layer}/{variable}"] = archive[key]
    return out


@functools.lru_cache(maxsize=1)
def test_split() -> tuple[np.ndarray, np.ndarray]:
    from swiftprune._demo import load_digits_split

    _, _, x, y = load_digits_split()
    return x.astype(np.float32), y


def mlp_forward(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ w["fc1/kernel"] + w["fc1/bias"], 0)
    return h @ w["fc2/kernel"] + w["fc2/bias"]


def cnn_forward(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """x (N, 8, 8, 1) NHWC; valid 3x3 convolution, ReLU, flatten (NHWC order), two Dense layers."""
    x = x.reshape(-1, 8, 8, 1).astype(np.float64)
    k = w["conv/kernel"]  # (3, 3, 1, 16)
    patches = np.stack([x[:, i:i + 6, j:j + 6, :] for i in range(3) for j in range(3)], axis=3)  # (N,6,6,9,1)
    conv = np.einsum("nhwpc,pco->nhwo", patches, k.reshape(9, 1, -1)) + w["conv/bias"]
    h = np.maximum(conv, 0).reshape(len(x), -1)
    h = np.maximum(h @ w["fc1/kernel"] + w["fc1/bias"], 0)
    return h @ w["fc2/kernel"] + w["fc2/bias"]
