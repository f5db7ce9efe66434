"""Pure-NumPy oracles for the foundation's magnitude pruning (never used by the library)."""
from __future__ import annotations

import numpy as np


def reference_magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Prune k = round(sparsity * n) smallest |w|; ties: lower C-order index first.

    Uses a stable sort of |w| in float64 (exact for float16/32/64 magnitudes).
    """
    w = np.asarray(w)
    flat = np.abs(w.astype(np.float64, copy=False)).ravel(order="C")
    k = round(sparsity * flat.size)
    order = np.argsort(flat, kind="stable")
    keep = np.ones(flat.size, dtype=bool)
    keep[order[:k]] = False
    return keep.reshape(w.shape)
