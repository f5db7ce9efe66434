"""Pure-NumPy oracles for quantization, written from the formulas of the
contract (DESIGN.md, "Quantization"); never used by the library."""
from __future__ import annotations

import numpy as np


def compute_dtype(w: np.ndarray) -> type:
    """float64 weights are divided in float64, float16/float32 in float32."""
    return np.float64 if w.dtype == np.float64 else np.float32


def grid(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def group_reduce(w: np.ndarray, axis, group_size, fn) -> np.ndarray:
    """fn (np.min / np.max / ...) over each group, result in the scale layout."""
    if axis is None:
        return fn(w, axis=tuple(range(w.ndim)), keepdims=True) if w.size else np.zeros((1,) * w.ndim, w.dtype)
    a = axis % w.ndim
    if group_size is None:
        others = tuple(i for i in range(w.ndim) if i != a)
        if w.size == 0:
            shape = [1] * w.ndim
            shape[a] = w.shape[a]
            return np.zeros(shape, w.dtype)
        return fn(w, axis=others, keepdims=True)
    rows, cols = w.shape
    g = group_size
    if a == 0:
        blocks = w.reshape(rows, cols // g, g)
        return fn(blocks, axis=2) if blocks.size else np.zeros((rows, cols // g), w.dtype)
    blocks = w.reshape(rows // g, g, cols)
    return fn(blocks, axis=1) if blocks.size else np.zeros((rows // g, cols), w.dtype)


def expand(scale: np.ndarray, shape, axis, group_size) -> np.ndarray:
    """The per-group array broadcast to the weight's shape."""
    if group_size is None:
        return np.broadcast_to(scale, shape)
    a = axis % 2
    return np.repeat(scale, group_size, axis=1 - a)


def scale_from_range(lo: np.ndarray, hi: np.ndarray, bits: int, symmetric: bool, dtype):
    """Scale (float32) and zero point (int64) of each clipping range."""
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    qmin, qmax = grid(bits, symmetric)
    if symmetric:
        m = np.maximum(np.abs(lo), np.abs(hi))
        scale = np.where(m == 0, 1.0, m / qmax).astype(np.float32)
        zero = np.zeros(scale.shape, np.int64)
    else:
        lo0, hi0 = np.minimum(lo, 0), np.maximum(hi, 0)
        width = hi0 - lo0
        scale = np.where(width == 0, 1.0, width / qmax).astype(np.float32)
        scale = np.where(scale == 0, np.float32(np.finfo(np.float32).smallest_subnormal), scale)
        z = np.round((-lo0).astype(dtype) / scale.astype(dtype))
        zero = np.clip(z, 0, qmax).astype(np.int64)
    scale = np.where(scale == 0, np.float32(np.finfo(np.float32).smallest_subnormal), scale).astype(np.float32)
    return scale, zero


def reference_quantize(w, bits, symmetric=True, axis=None, group_size=None):
    """(values int64, scale float32, zero_point int64) by the minmax formulas."""
    w = np.asarray(w)
    dtype = compute_dtype(w)
    x = w.astype(dtype)
    lo = group_reduce(x, axis, group_size, np.min)
    hi = group_reduce(x, axis, group_size, np.max)
    scale, zero = scale_from_range(lo, hi, bits, symmetric, dtype)
    qmin, qmax = grid(bits, symmetric)
    full_scale = expand(scale, x.shape, axis, group_size).astype(dtype)
    full_zero = expand(zero, x.shape, axis, group_size)
    q = np.clip(np.round(x / full_scale) + full_zero, qmin, qmax).astype(np.int64)
    return q, scale, zero


def reference_dequantize(q, scale, zero, axis, group_size):
    shape = q.shape
    s = expand(scale.astype(np.float32), shape, axis, group_size)
    z = expand(zero.astype(np.float32), shape, axis, group_size)
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


def reference_pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """A little-endian stream of `bits` bits per value, written one bit at a time."""
    flat = values.reshape(-1).astype(np.int64) & ((1 << bits) - 1)
    stream = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little")


def reference_stored_bytes(q) -> int:
    """What a compressed file holds for a QuantizedTensor: the values either packed at
    `bits` bits or as a bit mask plus the packed values that are not their zero point
    (whichever is smaller), then float32 scales and, when affine, uint8 zero points."""
    zero = expand(q.zero_point, q.values.shape, q.axis, q.group_size)
    n = q.values.size
    nonzeros = int(np.sum(q.values.astype(np.int64) != zero.astype(np.int64)))
    packed = (n * q.bits + 7) // 8
    bitmask = (n + 7) // 8 + (nonzeros * q.bits + 7) // 8
    return min(packed, bitmask) + 4 * q.scale.size + (0 if q.symmetric else q.zero_point.size)


def reference_pack(values: np.ndarray) -> np.ndarray:
    flat = (values.reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def reference_bfloat16_from_float32(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even on the bits; NaN: truncated, quiet bit set."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (b & 0x7FFFFFFF) > 0x7F800000
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF
    return np.where(nan, (b >> 16) | 0x40, rounded).astype(np.uint16)


def reference_bfloat16_from_float64(x: np.ndarray) -> np.ndarray:
    """Exact single rounding of float64 to bfloat16: round to odd to float32
    first (an intermediate with enough extra bits), then round to nearest even."""
    d = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        f = d.astype(np.float32)
        finite = np.isfinite(d)
        inexact = finite & (f.astype(np.float64) != d)
        # Truncate toward zero, then force the last bit to 1 when inexact.
        too_big = inexact & (np.abs(f.astype(np.float64)) > np.abs(d))
    bits = f.view(np.uint32).copy()
    bits[too_big] -= 1          # one ulp toward zero (also turns an overflowed Inf into FLT_MAX)
    bits[inexact] |= 1
    out = reference_bfloat16_from_float32(bits.view(np.float32))
    nan = np.isnan(d)
    if nan.any():
        raw = d.view(np.uint64)
        sign = ((raw >> 63) << 15).astype(np.uint16)
        payload = ((raw >> 45) & 0x7F).astype(np.uint16)
        out[nan] = (sign | 0x7F80 | 0x40 | payload)[nan]
    return out


def reference_gptq(w, x, bits, group_size, damp, symmetric=True):
    """Textbook GPTQ without lazy batching: per column, quantize (scales per row
    from the current weights when a group starts), then
    W[:, i:] -= ((w - q) / U[i, i]) ⊗ U[i, i:] with U = chol(H⁻¹)ᵀ."""
    W = np.array(w, dtype=np.float64)
    X = np.asarray(x, dtype=np.float64)
    rows, cols = W.shape
    H = X.T @ X / X.shape[0]
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * np.mean(np.diag(H)) * np.eye(cols)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    qmin, qmax = grid(bits, symmetric)
    g = group_size or cols
    Q = np.zeros((rows, cols), np.int64)
    n_groups = cols // g
    scales = np.ones((rows, n_groups), np.float32)
    zeros = np.zeros((rows, n_groups), np.int64)
    for i in range(cols):
        if i % g == 0:
            block = W[:, i:i + g]
            lo = np.minimum(block.min(axis=1), 0)
            hi = np.maximum(block.max(axis=1), 0)
            s, z = scale_from_range(lo, hi, bits, symmetric, np.float64)
            scales[:, i // g], zeros[:, i // g] = s, z
        s = scales[:, i // g].astype(np.float64)
        z = zeros[:, i // g]
        q = np.clip(np.round(W[:, i] / s) + z, qmin, qmax).astype(np.int64)
        Q[:, i] = q
        deq = ((q - z).astype(np.float32) * scales[:, i // g]).astype(np.float64)
        err = (W[:, i] - deq) / U[i, i]
        W[:, i:] -= np.outer(err, U[i, i:])
    return Q, scales, zeros


def reference_kmeans_1d(values, k, max_iter=1000):
    """Lloyd's algorithm from linspace(min, max, k); nearest centroid by
    argmin of the distance (ties: lower index); means in float64."""
    x = np.asarray(values, np.float64).ravel()
    c = np.linspace(x.min(), x.max(), k)
    for _ in range(max_iter):
        labels = np.argmin(np.abs(x[:, None] - c[None, :]), axis=1)
        new = np.array([x[labels == j].mean() if np.any(labels == j) else c[j] for j in range(k)])
        if np.array_equal(new, c):
            break
        c = new
    return np.sort(c)


def reference_optimal_kmeans_sse(values, k):
    """The least total squared error of k contiguous groups of the sorted
    values, by the O(k n²) dynamic program."""
    x = np.sort(np.asarray(values, np.float64).ravel())
    n = x.size
    p1 = np.concatenate([[0.0], np.cumsum(x)])
    p2 = np.concatenate([[0.0], np.cumsum(x * x)])

    def cost(a, b):
        s = p1[b] - p1[a]
        return max(0.0, p2[b] - p2[a] - s * s / (b - a))

    best = np.array([cost(0, i) if i else np.inf for i in range(n + 1)])
    for layer in range(1, k):
        nxt = np.full(n + 1, np.inf)
        for i in range(layer + 1, n + 1):
            nxt[i] = min(best[j] + cost(j, i) for j in range(layer, i))
        best = nxt
    return best[n]


def group_errors(groups: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int, symmetric: bool) -> np.ndarray:
    """Float64 squared reconstruction error of each row of `groups` (G, L) under its (scale, zero):
    quantized as `reference_quantize` does, reconstructed in float32 as `dequantize` does."""
    dtype = compute_dtype(groups)
    qmin, qmax = grid(bits, symmetric)
    s = scale.astype(np.float32)[:, None]
    q = np.clip(np.round(groups / s.astype(dtype)) + zero[:, None], qmin, qmax)
    back = (q - zero[:, None]).astype(np.float32) * s
    return ((groups.astype(np.float64) - back.astype(np.float64)) ** 2).sum(axis=1)


def reference_mse_search(groups: np.ndarray, bits: int, symmetric: bool):
    """The "mse" calibration's search, transcribed in float64 from its contract: minmax, then the
    clipping factors 0.95, 0.90, ... 0.2 (repeated subtraction of 0.05), then 9 steps of 0.005 on
    each side of the best; a factor replaces the incumbent only if strictly better; the winner is
    kept only if below minmax's error by a relative 1e-6. Returns (scale, zero, error) per group."""
    dtype = compute_dtype(groups)
    lo, hi = groups.min(axis=1), groups.max(axis=1)

    def params(alpha):
        a_lo = (lo.astype(np.float64) * alpha).astype(groups.dtype)
        a_hi = (hi.astype(np.float64) * alpha).astype(groups.dtype)
        return scale_from_range(a_lo, a_hi, bits, symmetric, dtype)

    scale, zero = params(1.0)
    reference = group_errors(groups, scale, zero, bits, symmetric)
    best_s, best_z, best_e, best_a = scale.copy(), zero.copy(), reference.copy(), np.ones(len(groups))

    def attempt(alpha):
        valid = (alpha > 0) & (alpha < 1)  # factors outside (0, 1) are skipped
        s, z = params(np.where(valid, alpha, 1.0))
        e = group_errors(groups, s, z, bits, symmetric)
        better = (e < best_e) & valid
        best_s[better], best_z[better], best_e[better], best_a[better] = s[better], z[better], e[better], alpha[better]

    alpha = 1 - 0.05
    while alpha > 0.2 - 1e-9:
        attempt(np.full(len(groups), alpha))
        alpha -= 0.05
    center = best_a.copy()
    for step in range(1, 10):
        attempt(center - step * 0.005)
        attempt(center + step * 0.005)
    keep = best_e < reference * (1 - 1e-6)
    return (np.where(keep, best_s, scale), np.where(keep, best_z, zero), np.where(keep, best_e, reference))
