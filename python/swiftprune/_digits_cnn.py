"""A tiny MobileNet-style CNN on scikit-learn's 8x8 digits, trained in NumPy.

Used by the planner's tests, notebook and README to show what a budgeted plan
does on a convolutional model: a 3x3 conv (1→16), a 3x3 depthwise conv with
stride 2 (16 channels), a 1x1 pointwise conv (16→32) and a dense classifier
(512→10), ReLU between, Keras layouts (conv ``(kh, kw, in, out)``, depthwise
``(kh, kw, channels, 1)``, dense ``(in, out)``). Seeded: every run gives the
same weights. No framework needed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._numpy_training import adam_update, cross_entropy_gradient, digits_split

NAMES = ("conv.kernel", "conv.bias", "depthwise.kernel", "depthwise.bias", "pointwise.kernel", "pointwise.bias",
         "dense.kernel", "dense.bias")


def _patches(x: np.ndarray, stride: int) -> np.ndarray:
    """3x3 'same' patches of NHWC ``x``: (N, H/stride, W/stride, 3, 3, C)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    view = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # N, H, W, C, 3, 3
    view = view[:, ::stride, ::stride]
    return np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3))


def _unpatch(grad: np.ndarray, shape: Sequence[int], stride: int) -> np.ndarray:
    """Adjoint of :func:`_patches`: sums patch gradients back onto the input."""
    n, h, w, c = shape
    padded = np.zeros((n, h + 2, w + 2, c), grad.dtype)
    out_h, out_w = grad.shape[1], grad.shape[2]
    for i in range(3):
        for j in range(3):
            padded[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += grad[:, :, :, i, j]
    return padded[:, 1:-1, 1:-1]


def forward(weights: Sequence[np.ndarray], images: np.ndarray, cache: bool = False):
    """Logits for ``images`` (N, 8, 8) in [0, 1]; with ``cache`` also the activations."""
    wc, bc, wd, bd, wp, bp, wf, bf = (np.asarray(w, np.float32) for w in weights)
    x = images.reshape(-1, 8, 8, 1).astype(np.float32)
    p1 = _patches(x, 1)
    z1 = p1.reshape(-1, 9) @ wc.reshape(9, -1) + bc
    a1 = np.maximum(z1, 0).reshape(x.shape[0], 8, 8, -1)
    p2 = _patches(a1, 2)
    z2 = np.einsum("nijabc,abc->nijc", p2, wd[..., 0]) + bd
    a2 = np.maximum(z2, 0)
    z3 = a2.reshape(-1, a2.shape[-1]) @ wp.reshape(wp.shape[-2], -1) + bp
    a3 = np.maximum(z3, 0).reshape(x.shape[0], -1)
    logits = a3 @ wf + bf
    if cache:
        return logits, (x, p1, z1, a1, p2, z2, a2, z3, a3)
    return logits


def accuracy(weights: Sequence[np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy."""
    return float((forward(weights, images).argmax(axis=1) == labels).mean())


def layer_inputs(weights: Sequence[np.ndarray], images: np.ndarray) -> dict[str, np.ndarray]:
    """Calibration inputs ``{kernel name: (samples, features)}`` (patches for the
    convs, in Keras ``(kh, kw, in)`` order; the depthwise kernel gets its
    input channels)."""
    _, (x, p1, z1, a1, p2, z2, a2, z3, a3) = forward(weights, images, cache=True)
    return {"conv.kernel": p1.reshape(-1, 9), "depthwise.kernel": a1.reshape(-1, a1.shape[-1]),
            "pointwise.kernel": a2.reshape(-1, a2.shape[-1]), "dense.kernel": a3}


def train(images: np.ndarray, labels: np.ndarray, *, epochs: int = 12, batch: int = 64, lr: float = 3e-3,
          seed: int = 0) -> list[np.ndarray]:
    """Adam on softmax cross-entropy; returns the 8 arrays in :data:`NAMES` order."""
    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    weights = [he((3, 3, 1, 16), 9), np.zeros(16, np.float32), he((3, 3, 16, 1), 9), np.zeros(16, np.float32),
               he((1, 1, 16, 32), 16), np.zeros(32, np.float32), he((512, 10), 512), np.zeros(10, np.float32)]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(labels), batch):
            index = order[start:start + batch]
            logits, (x, p1, z1, a1, p2, z2, a2, z3, a3) = forward(weights, images[index], cache=True)
            d = cross_entropy_gradient(logits, labels[index])
            wc, bc, wd, bd, wp, bp, wf, bf = weights
            g_wf, g_bf = a3.T @ d, d.sum(0)
            d3 = (d @ wf.T).reshape(-1, wp.shape[-1]) * (z3 > 0)
            g_wp, g_bp = (a2.reshape(-1, a2.shape[-1]).T @ d3).reshape(wp.shape), d3.sum(0)
            d2 = (d3 @ wp.reshape(wp.shape[-2], -1).T).reshape(a2.shape) * (z2 > 0)
            g_wd = np.einsum("nijabc,nijc->abc", p2, d2)[..., None]
            g_bd = d2.sum((0, 1, 2))
            d1 = _unpatch(np.einsum("nijc,abc->nijabc", d2, wd[..., 0]), a1.shape, 2) * (z1 > 0).reshape(a1.shape)
            d1 = d1.reshape(-1, d1.shape[-1])
            g_wc, g_bc = (p1.reshape(-1, 9).T @ d1).reshape(wc.shape), d1.sum(0)
            grads = [g_wc, g_bc, g_wd, g_bd, g_wp, g_bp, g_wf, g_bf]
            step += 1
            adam_update(weights, grads, m, v, step, lr)
    return weights


def load_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digit images (N, 8, 8) in [0, 1], split 80/20 by a seeded permutation."""
    return digits_split(images=True, seed=seed)


def trained(seed: int = 0) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The trained weights by name, and the data split."""
    split = load_split(seed)
    weights = train(split[0], split[1], seed=seed)
    return dict(zip(NAMES, weights)), split
