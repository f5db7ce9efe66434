"""What the two NumPy-trained digits models share (``_demo``'s MLP and ``_digits_cnn``'s CNN): the seeded
80/20 split of scikit-learn's bundled 8x8 digits, the softmax cross-entropy gradient and Adam's update."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def digits_split(images: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): the digits scaled to [0, 1], as (N, 8, 8) images or (N, 64) rows,
    split 80/20 by a permutation seeded with `seed`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = ((digits.images if images else digits.data) / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(0.8 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def cross_entropy_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The gradient of the mean softmax cross-entropy of a batch with respect to its `logits`."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def adam_update(weights: list[np.ndarray], grads: Sequence[np.ndarray], m: list[np.ndarray], v: list[np.ndarray],
                step: int, lr: float) -> None:
    """One Adam step (β = 0.9, 0.999, ε = 1e-8) of `weights` in place (kept float32); `m` and `v` are the moment
    estimates (updated in place), `step` counts from 1."""
    for i, g in enumerate(grads):
        m[i] = 0.9 * m[i] + 0.1 * g
        v[i] = 0.999 * v[i] + 0.001 * g * g
        update = lr * (m[i] / (1 - 0.9 ** step)) / (np.sqrt(v[i] / (1 - 0.999 ** step)) + 1e-8)
        weights[i] = (weights[i] - update).astype(np.float32)
