"""Pure-NumPy oracles for the whole-model tests, written from the contract."""
from __future__ import annotations

import numpy as np


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Prune k = round(sparsity * n) smallest |w|, lower flat index first among ties."""
    flat = np.abs(np.asarray(w, dtype=np.float64)).ravel()
    k = round(sparsity * flat.size)
    order = np.argsort(flat, kind="stable")
    mask = np.ones(flat.size, dtype=bool)
    mask[order[:k]] = False
    return mask.reshape(np.shape(w))


def global_magnitude_masks(weights: dict, sparsity: float) -> dict:
    """One threshold over all tensors together (C order, then tensor order, for ties)."""
    names = list(weights)
    flat = np.concatenate([np.abs(np.asarray(weights[n], dtype=np.float64)).ravel() for n in names])
    k = round(sparsity * flat.size)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:k]] = False
    out, start = {}, 0
    for n in names:
        size = np.size(weights[n])
        out[n] = keep[start:start + size].reshape(np.shape(weights[n]))
        start += size
    return out


def relative_error(w: np.ndarray, w_hat: np.ndarray) -> float:
    w = np.asarray(w, dtype=np.float64)
    diff = w - np.asarray(w_hat, dtype=np.float64)
    return float(np.sqrt((diff ** 2).sum()) / np.sqrt((w ** 2).sum()))
