"""Pruning: global magnitude, N:M, structured and SparseGPT against their NumPy ways."""
from __future__ import annotations

import numpy as np

import swiftprune as sp

from . import Case


def numpy_global_masks(arrays: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """The NumPy way: concatenate |w|, partition at k, compare each tensor (ties not resolved)."""
    flat = np.abs(np.concatenate([a.ravel() for a in arrays]))
    k = round(sparsity * flat.size)
    threshold = np.partition(flat, k - 1)[k - 1]
    return [np.abs(a) > threshold for a in arrays]


def numpy_nm_2_4(w: np.ndarray) -> np.ndarray:
    """The fastest vectorized NumPy 2:4 found (same ties as swiftprune): six pairwise
    comparisons per group give each entry's rank; argsort/argpartition/sort along
    the group axis are 5-6x slower than this."""
    a = np.abs(w).reshape(-1, 4)
    x0, x1, x2, x3 = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    ab, ac, ad, bc, bd, cd = x0 >= x1, x0 >= x2, x0 >= x3, x1 >= x2, x1 >= x3, x2 >= x3
    mask = np.empty(a.shape, bool)
    mask[:, 0] = (ab.astype(np.int8) + ac + ad) >= 2
    mask[:, 1] = ((~ab).astype(np.int8) + bc + bd) >= 2
    mask[:, 2] = ((~ac).astype(np.int8) + (~bc) + cd) >= 2
    mask[:, 3] = ((~ad).astype(np.int8) + (~bd) + (~cd)) >= 2
    return mask.reshape(w.shape)


def numpy_structured(w: np.ndarray, amount: float, axis: int) -> np.ndarray:
    """The NumPy way: L2 norm over the other axes, argsort, broadcast the slice mask."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    norms = np.sqrt(np.sum(np.square(w), axis=other))
    keep = np.ones(w.shape[axis], bool)
    keep[np.argsort(norms, kind="stable")[:round(amount * w.shape[axis])]] = False
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.broadcast_to(keep.reshape(shape), w.shape).copy()


def numpy_sparsegpt(w: np.ndarray, x: np.ndarray, sparsity: float, block_size: int = 128,
                    damp: float = 0.01, dtype=np.float64) -> np.ndarray:
    """A straightforward NumPy SparseGPT (the authors' fasterprune, lazy batch updates)."""
    W = w.astype(dtype)
    X = x.astype(dtype)
    rows, columns = W.shape
    H = X.T @ X
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(columns)] += damp * np.mean(np.diag(H))
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    Hinv = np.linalg.cholesky(Linv.T @ Linv).T
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        tmp = W1 ** 2 / np.diag(Hinv1)[None, :] ** 2
        thresh = np.sort(tmp.ravel())[int(tmp.size * sparsity)]
        mask1 = tmp <= thresh
        for i in range(i2 - i1):
            w_col = W1[:, i]
            d = Hinv1[i, i]
            q = w_col.copy()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w_col - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.astype(np.float32)


def _split_sizes(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    weights = rng.uniform(0.2, 1.8, parts)
    sizes = np.floor(weights / weights.sum() * total).astype(int)
    sizes[-1] += total - sizes.sum()
    return [int(s) for s in sizes]


def cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    out: list[Case] = []

    for total in ([10**6] if quick else [10**7, 10**8]):
        label = f"1e{len(str(total)) - 1}"
        arrays = [rng.standard_normal(n, dtype=np.float32) * rng.uniform(0.5, 2) for n in _split_sizes(total, 20, rng)]
        for threads in (1, 2):
            out.append(Case(f"global_magnitude_masks 20 tensors {label}, 80%",
                            lambda a=arrays: sp.global_magnitude_masks(a, 0.8),
                            lambda a=arrays: numpy_global_masks(a, 0.8),
                            "concatenate+partition", threads=threads, data={"arrays": arrays}))

    n = 10**6 if quick else 10**7
    w = rng.standard_normal((n // 1024, 1024), dtype=np.float32)
    for threads in (1, 2):
        out.append(Case(f"nm_mask 2:4 float32 {n:.0e}", lambda w=w: sp.nm_mask(w, 2, 4),
                        lambda w=w: numpy_nm_2_4(w), "pairwise ranks", threads=threads, data={"w": w}))

    shape = (1024, 640) if quick else (4096, 2560)
    w = rng.standard_normal(shape, dtype=np.float32)
    for axis in (0, 1):
        for threads in (1, 2):
            out.append(Case(f"structured_mask L2 {shape[0]}x{shape[1]} axis={axis}, 50%",
                            lambda w=w, axis=axis: sp.structured_mask(w, 0.5, axis=axis),
                            lambda w=w, axis=axis: numpy_structured(w, 0.5, axis),
                            "norm+argsort+broadcast", threads=threads, data={"w": w}))

    rows, columns, samples = (256, 256, 512) if quick else (1024, 1024, 2048)
    layer = rng.standard_normal((rows, columns)).astype(np.float32)
    base = rng.standard_normal((samples, 64)) @ rng.standard_normal((64, columns))
    x = (base + 0.1 * rng.standard_normal((samples, columns))).astype(np.float32)

    def error_note(layer=layer, x=x) -> str:
        ours = sp.sparsegpt(layer, x, 0.5)
        magnitude = sp.prune_magnitude(layer, 0.5)
        e_ours = np.linalg.norm(x @ (layer - ours).T)
        e_mag = np.linalg.norm(x @ (layer - magnitude).T)
        return f"output error {e_ours / e_mag:.2f}x magnitude pruning's; baseline float64 like ours"

    for threads in (1, 2):
        out.append(Case(f"sparsegpt {rows}x{columns}, {samples} samples, 50%",
                        lambda: sp.sparsegpt(layer, x, 0.5),
                        lambda: numpy_sparsegpt(layer, x, 0.5),
                        "NumPy SparseGPT", threads=threads, note=error_note if threads == 1 else "",
                        data={"w": layer, "x": x}))
    return out
