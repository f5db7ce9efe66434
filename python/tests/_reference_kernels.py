"""Pure-NumPy oracles for the sparse and int8 kernels, written from the formulas."""
from __future__ import annotations

import numpy as np


def dense_product(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """W @ x in float64."""
    return np.asarray(w, dtype=np.float64) @ np.asarray(x, dtype=np.float64)


def nm_prune(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep, in every run of m entries along the last axis, the n of largest |w| (ties: lower index)."""
    w = np.asarray(w, dtype=np.float32)
    groups = w.reshape(-1, m)
    # Stable sort on -|w|: among equal magnitudes the lower index comes first.
    order = np.argsort(-np.abs(groups), axis=1, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    return np.where(keep, groups, 0).reshape(w.shape).astype(np.float32)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-row quantization: scale = max|w| / 127 (1 for a zero row)."""
    w = np.asarray(w, dtype=np.float32)
    scale = np.abs(w).max(axis=1, initial=0) / np.float32(127)
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    values = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return values, scale


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column unsigned 7-bit quantization with a zero point, as documented."""
    x = np.asarray(x, dtype=np.float32)
    lo = np.minimum(x.min(axis=0, initial=0), np.float32(0)).astype(np.float32)
    hi = np.maximum(x.max(axis=0, initial=0), np.float32(0)).astype(np.float32)
    s = ((hi - lo) / np.float32(127)).astype(np.float32)
    s = np.where(s == 0, np.float32(1), s).astype(np.float32)
    z = np.clip(np.rint(-lo / s), 0, 127).astype(np.float32)
    xq = np.clip(np.rint(x / s) + z, 0, 127).astype(np.int64)
    return xq, s, z.astype(np.int64)


def quantized_product(values: np.ndarray, scale: np.ndarray, x: np.ndarray, zero_point=None) -> np.ndarray:
    """dequantize(W) @ quantize(x), exactly: integer dot products, then one float32 rounding and scaling."""
    x2 = x.reshape(x.shape[0], -1)
    xq, s, z = quantize_activations(x2)
    zp = np.zeros(values.shape[0], dtype=np.int64) if zero_point is None else np.asarray(zero_point, dtype=np.int64)
    integer = (values.astype(np.int64) - zp[:, None]) @ (xq - z[None, :])
    y = integer.astype(np.float32) * (np.asarray(scale, dtype=np.float32)[:, None] * s[None, :])
    return y.reshape((values.shape[0],) + x.shape[1:])
