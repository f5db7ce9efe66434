"""Pure-NumPy oracles for the pruning tests, written from the definitions
(slow and obvious on purpose; never imported by the library)."""
from __future__ import annotations

import numpy as np


def prune_lowest(scores: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask (flat) pruning the k lowest scores, lower index first among ties."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    keep = np.ones(flat.size, dtype=bool)
    keep[order[:k]] = False
    return keep


def global_magnitude(arrays: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    flat = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays]) if arrays else np.zeros(0)
    keep = prune_lowest(flat, round(sparsity * flat.size))
    out, start = [], 0
    for a in arrays:
        out.append(keep[start:start + a.size].reshape(a.shape))
        start += a.size
    return out


def nm(w: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    a = np.moveaxis(np.abs(np.asarray(w, dtype=np.float64)), axis, -1)
    shape = a.shape
    groups = a.reshape(-1, m)
    keep = np.zeros(groups.shape, dtype=bool)
    for g in range(groups.shape[0]):
        order = sorted(range(m), key=lambda j: (-groups[g, j], j))
        keep[g, order[:n]] = True
    return np.moveaxis(keep.reshape(shape), -1, axis)


def slice_norms(w: np.ndarray, axis: int, norm: float) -> np.ndarray:
    a = np.moveaxis(np.asarray(w, dtype=np.float64), axis, 0).reshape(w.shape[axis], -1)
    if norm == 1:
        return np.abs(a).sum(axis=1)
    if norm == 2:
        return np.sqrt((a * a).sum(axis=1))
    return np.abs(a).max(axis=1, initial=0.0)


def structured(w: np.ndarray, amount: float, axis: int, norm: float) -> np.ndarray:
    length = w.shape[axis]
    keep_slices = prune_lowest(slice_norms(w, axis, norm), round(amount * length))
    shape = [1] * w.ndim
    shape[axis] = length
    return np.broadcast_to(keep_slices.reshape(shape), w.shape).copy()


def block(w: np.ndarray, sparsity: float, block_shape: tuple[int, int]) -> np.ndarray:
    rows, cols = w.shape
    br, bc = block_shape
    grid_r, grid_c = -(-rows // br), -(-cols // bc)
    scores = np.zeros((grid_r, grid_c))
    a = np.abs(np.asarray(w, dtype=np.float64))
    for i in range(grid_r):
        for j in range(grid_c):
            scores[i, j] = a[i * br:(i + 1) * br, j * bc:(j + 1) * bc].mean()
    keep_blocks = prune_lowest(scores, round(sparsity * scores.size)).reshape(grid_r, grid_c)
    return np.repeat(np.repeat(keep_blocks, br, axis=0), bc, axis=1)[:rows, :cols]


def wanda(w: np.ndarray, x: np.ndarray, sparsity: float) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt((x * x).sum(axis=0))
    scores = np.abs(w) * norms[None, :]
    k = round(sparsity * w.shape[1])
    return np.stack([prune_lowest(row, k) for row in scores]) if w.shape[0] else np.zeros(w.shape, bool)


def sparsegpt(w: np.ndarray, x: np.ndarray, sparsity: float, nm_pattern=None, block_size: int = 128,
              damp: float = 0.01) -> np.ndarray:
    """SparseGPT as the authors' reference code (fasterprune), in float64 NumPy,
    with exact per-block counts round(s*rows*end) - round(s*rows*start)."""
    W = np.array(w, dtype=np.float64)
    X = np.asarray(x, dtype=np.float64)
    rows, columns = W.shape
    H = X.T @ X
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(columns)] += damp * np.mean(np.diag(H))
    Hinv = np.linalg.inv(H)
    U = np.linalg.cholesky(Hinv).T  # upper: Hinv = U^T U
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        if nm_pattern is None:
            tmp = W1 ** 2 / np.diag(U1)[None, :] ** 2
            k = round(sparsity * rows * i2) - round(sparsity * rows * i1)
            prune = ~prune_lowest(tmp, k).reshape(tmp.shape)
        else:
            n, m = nm_pattern
            prune = np.zeros_like(W1, dtype=bool)
        for i in range(count):
            w_col = W1[:, i]
            d = U1[i, i]
            if nm_pattern is not None and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / np.diag(U1)[i:i + m][None, :] ** 2
                for r in range(rows):
                    order = sorted(range(m), key=lambda j: (-tmp[r, j], j))
                    prune[r, i + np.array(order[n:])] = True
            q = w_col.copy()
            q[prune[:, i]] = 0
            Q1[:, i] = q
            err = (w_col - q) / d
            W1[:, i:] -= np.outer(err, U1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W
