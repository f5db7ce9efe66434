"""Pure-NumPy oracles for low-rank factorization, written from the formulas."""
from __future__ import annotations

import numpy as np


def reference_energy_rank(s: np.ndarray, energy: float) -> int:
    """Smallest k with sum(s[:k]**2) / sum(s**2) >= energy (0 for an all-zero s)."""
    power = np.asarray(s, dtype=np.float64) ** 2
    total = power.sum()
    if total == 0:
        return 0
    for k in range(len(power) + 1):
        if power[:k].sum() >= energy * total:
            return k
    return len(power)


def reference_ratio_rank(m: int, n: int, ratio: float) -> int:
    """Largest k with k * (m + n) <= ratio * m * n, capped at min(m, n)."""
    k = 0
    while k < min(m, n) and (k + 1) * (m + n) <= ratio * m * n:
        k += 1
    return k


def optimal_error(w: np.ndarray, k: int) -> float:
    """Frobenius error of the best rank-k approximation (Eckart–Young)."""
    s = np.linalg.svd(np.asarray(w, dtype=np.float64), compute_uv=False)
    return float(np.sqrt((s[k:] ** 2).sum()))


def matrix_with_spectrum(rng: np.random.Generator, m: int, n: int, spectrum: np.ndarray) -> np.ndarray:
    """U diag(spectrum) Vᵀ with Haar-random orthonormal U (m × r), V (n × r)."""
    r = len(spectrum)
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return (u * spectrum) @ v.T


def keras_conv_to_2d(w: np.ndarray) -> np.ndarray:
    """(kh, kw, in, out) -> (kh*kw*in, out): row (i, j, c) holds input tap (i, j, c)."""
    kh, kw, cin, cout = w.shape
    out = np.empty((kh * kw * cin, cout), dtype=w.dtype)
    for i in range(kh):
        for j in range(kw):
            for c in range(cin):
                out[(i * kw + j) * cin + c] = w[i, j, c]
    return out


def torch_conv_to_2d(w: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (out, in*kh*kw): one row per output channel."""
    cout = w.shape[0]
    return np.stack([w[o].ravel() for o in range(cout)])
