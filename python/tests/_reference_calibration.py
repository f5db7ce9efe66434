"""Float64 NumPy transcriptions of the calibrated algorithms, written from
the papers and the authors' reference code (not from swiftprune's code).

- GPTQ (Frantar et al., 2022; gptq/gptq.py ``fasterquant`` with
  ``actorder`` and ``static_groups``, ``quant.py Quantizer.find_params`` with
  ``mse=True`` but norm 2), column by column without lazy batching;
- the MSE clipping search of one group.
"""
from __future__ import annotations

import numpy as np

from _reference_quantization import grid, scale_from_range


def correlated_layer(rows, cols, samples, seed):
    """A float32 weight (rows, cols) and correlated inputs (samples, cols), as real layer inputs are."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    mix = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    x = (rng.standard_normal((samples, cols)) @ mix + 0.1 * rng.standard_normal((samples, cols))).astype(np.float32)
    return w, x


def output_error(w, w_hat, x):
    """The layer-output error ‖(W − Ŵ) Xᵀ‖_F in float64."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    return float(np.linalg.norm(d @ np.asarray(x, np.float64).T))


def _quantize_column(col, scale, zero, bits, symmetric):
    qmin, qmax = grid(bits, symmetric)
    q = np.clip(np.round(col / scale.astype(np.float64)) + zero, qmin, qmax).astype(np.int64)
    deq = ((q - zero).astype(np.float32) * scale).astype(np.float64)
    return q, deq


def reference_group_params(block, bits, symmetric, mse_grid=0, max_shrink=0.8):
    """Per-row (scale, zero) of a (rows, g) block: min-max, or the shrink
    p = 1 - k/grid (k < max_shrink*grid) of [lo, hi] with the least Σ err²."""
    lo = np.minimum(block.min(axis=1), 0)
    hi = np.maximum(block.max(axis=1), 0)
    scale, zero = scale_from_range(lo, hi, bits, symmetric, np.float64)
    if not mse_grid:
        return scale, zero
    best = np.full(block.shape[0], np.inf)
    scale, zero = scale.copy(), zero.copy()
    for k in range(int(max_shrink * mse_grid)):
        p = 1 - k / mse_grid
        s, z = scale_from_range(p * lo, p * hi, bits, symmetric, np.float64)
        q, deq = _quantize_column(block, s[:, None], z[:, None], bits, symmetric)
        err = ((block - deq) ** 2).sum(axis=1)
        better = err < best
        best[better], scale[better], zero[better] = err[better], s[better], z[better]
    return scale, zero


def _float64_layer(w, hessian, group_size):
    """(W, H, g, scales, zeros): float64 copies of the weight and the Hessian with the dead inputs (H_jj = 0) as
    the reference treats them (H_jj = 1, the weights zeroed), the group width g (all columns without groups)
    and the unit scales / zero zero points of (rows, groups)."""
    W = np.array(w, dtype=np.float64)
    H = np.array(hessian, dtype=np.float64)
    rows, cols = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    g = group_size or cols
    return W, H, g, np.ones((rows, cols // g), np.float32), np.zeros((rows, cols // g), np.int64)


def _inverse_hessian_factor(H, damp):
    """U, the upper Cholesky factor of (H + damp · mean(diag H) · I)⁻¹ (H is damped in place)."""
    H += damp * np.mean(np.diag(H)) * np.eye(H.shape[0])
    return np.linalg.cholesky(np.linalg.inv(H)).T


def reference_gptq_hessian(w, hessian, bits, group_size, damp=0.01, symmetric=True, act_order=False,
                           static_groups=False, mse_grid=0):
    """(values (rows, cols) int64, scales (rows, groups), zeros) as the reference GPTQ."""
    W, H, g, scales, zeros = _float64_layer(w, hessian, group_size)
    rows, cols = W.shape
    n_groups = cols // g
    static = group_size is None or static_groups or act_order
    if static:
        for j in range(n_groups):
            scales[:, j], zeros[:, j] = reference_group_params(W[:, j * g:(j + 1) * g], bits, symmetric, mse_grid)
    perm = np.arange(cols)
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
    U = _inverse_hessian_factor(H, damp)
    Q = np.zeros((rows, cols), np.int64)
    for i in range(cols):
        j = perm[i] // g
        if not static and i % g == 0:
            scales[:, j], zeros[:, j] = reference_group_params(W[:, i:i + g], bits, symmetric, mse_grid)
        q, deq = _quantize_column(W[:, i], scales[:, j], zeros[:, j], bits, symmetric)
        Q[:, perm[i]] = q
        err = (W[:, i] - deq) / U[i, i]
        W[:, i:] -= np.outer(err, U[i, i:])
    return Q, scales, zeros


def reference_awq(w, x, bits, group_size, n_grid=20):
    """AWQ's auto_scale search (llm-awq ``search_module_scale``) for one linear
    layer, float64: s = mean|x|^α / sqrt(max·min), W·s fake-quantized
    (affine, groups along the input, min-max) and divided by s; the α with the
    least ‖(W − Ŵ) Xᵀ‖²."""
    W = np.asarray(w, np.float64)
    X = np.asarray(x, np.float64)
    x_mean = np.abs(X).mean(axis=0)
    qmax = 2 ** bits - 1
    best = (np.inf, None, None)
    for k in range(n_grid):
        alpha = k / n_grid
        s = np.maximum(x_mean ** alpha, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        scaled = (W * s).astype(np.float32).astype(np.float64)
        g = scaled.reshape(W.shape[0], -1, group_size)
        lo = np.minimum(g.min(axis=2, keepdims=True), 0)
        hi = np.maximum(g.max(axis=2, keepdims=True), 0)
        scale = np.where(hi - lo == 0, 1.0, (hi - lo) / qmax).astype(np.float32).astype(np.float64)
        zero = np.clip(np.round(-lo / scale), 0, qmax)
        q = np.clip(np.round(g / scale) + zero, 0, qmax)
        deq = ((q - zero) * scale).reshape(W.shape) / s
        err = np.linalg.norm((W - deq) @ X.T) ** 2
        if err < best[0]:
            best = (err, alpha, s)
    return best[1], best[2]


def reference_smoothquant(w, x, alpha):
    """SmoothQuant's smoothing factors: max|X_j|^α / max|W_:j|^(1−α)."""
    s = np.abs(np.asarray(x, np.float64)).max(axis=0) ** alpha / np.abs(np.asarray(w, np.float64)).max(axis=0) ** (1 - alpha)
    return np.maximum(s, 1e-5)


def reference_sparsegpt_quantize(w, hessian, bits, group_size, sparsity=None, nm=None, damp=0.01, symmetric=True,
                                 block_size=128):
    """SparseGPT's joint sparsification and quantization (Frantar and Alistarh,
    2023, section 3.5; sparsegpt.py ``fasterprune`` with a quantizer), float64,
    column by column without lazy batching.

    The mask: unstructured, chosen at the start of each block of
    ``block_size`` columns (rounded down to a multiple of the group) over all
    rows jointly, the smallest ``w² / U_ii²`` (``round(s·rows·end) -
    round(s·rows·start)`` of them, the lower row-major index first among
    ties); n:m, per row when each group of m columns starts, the ``m - n``
    smallest (the lower index kept among ties). Scales: per row from the
    weights before the loop (no groups), or per group from the current
    weights when the group starts. A pruned weight is stored as the zero
    point; each column's error ``(w - dequantized) / U_ii`` is spread over
    the later columns. Returns (values, scales, zeros).
    """
    W, H, g, scales, zeros = _float64_layer(w, hessian, group_size)
    rows, cols = W.shape
    if group_size is None:
        scales[:, 0], zeros[:, 0] = reference_group_params(W, bits, symmetric)
    U = _inverse_hessian_factor(H, damp)
    d = np.diag(U)
    block = g * (block_size // g) if group_size is not None and g < block_size else (g if group_size else block_size)
    block = min(block, cols)
    Q = np.zeros((rows, cols), np.int64)
    keep = np.ones((rows, cols), bool)
    for i1 in range(0, cols, block):
        i2 = min(cols, i1 + block)
        if nm is None:
            scores = (W[:, i1:i2] ** 2 / d[i1:i2] ** 2).ravel()
            k = int(round(sparsity * rows * i2)) - int(round(sparsity * rows * i1))
            pruned = np.argsort(scores, kind="stable")[:k]
            block_keep = np.ones(scores.size, bool)
            block_keep[pruned] = False
            keep[:, i1:i2] = block_keep.reshape(rows, i2 - i1)
        for i in range(i1, i2):
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                scores = W[:, i:i + m] ** 2 / d[i:i + m] ** 2
                # descending score, the lower index first among ties: keep the first n
                order = np.argsort(-scores, axis=1, kind="stable")
                keep[:, i:i + m] = False
                np.put_along_axis(keep[:, i:i + m], order[:, :n], True, axis=1)
            j = i // g
            if group_size is not None and i % g == 0:
                scales[:, j], zeros[:, j] = reference_group_params(W[:, i:i + g], bits, symmetric)
            q, deq = _quantize_column(W[:, i], scales[:, j], zeros[:, j], bits, symmetric)
            q = np.where(keep[:, i], q, zeros[:, j])
            deq = np.where(keep[:, i], deq, 0.0)
            Q[:, i] = q
            err = (W[:, i] - deq) / U[i, i]
            W[:, i:] -= np.outer(err, U[i, i:])
    return Q, scales, zeros
