"""The im2col view of a 2-D convolution's input: one row per output position,
holding the input patch it sees, ordered as the flattened kernel, so that the
convolution is ``patches @ kernel_matrix`` and GPTQ/SparseGPT apply as to a
linear layer. Vectorized NumPy (strided windows), chunked over the batch.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

__all__ = ["patches_nchw", "patches_nhwc", "same_padding"]

# Patch rows per chunk: bounds the temporary memory of one chunk.
_CHUNK_ROWS = 1 << 16


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """``(before, after)`` padding of TensorFlow/Keras ``"same"`` (and ONNX ``SAME_UPPER``)."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
             axes: tuple[int, int]) -> np.ndarray:
    kh, kw = kernel
    eh, ew = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    if x.shape[axes[0]] < eh or x.shape[axes[1]] < ew:
        raise ValueError(f"the padded input {x.shape} is smaller than the (dilated) kernel {kh}x{kw}")
    view = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=axes)
    # view: (..., Ho', Wo', ..., eh, ew) with the window dims last.
    index = [slice(None)] * view.ndim
    index[axes[0]] = slice(None, None, strides[0])
    index[axes[1]] = slice(None, None, strides[1])
    index[-2] = slice(None, None, dilations[0])
    index[-1] = slice(None, None, dilations[1])
    return view[tuple(index)]


def patches_nchw(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int] = (1, 1),
                 pads: Sequence[int] = (0, 0, 0, 0), dilations: Sequence[int] = (1, 1)) -> Iterator[np.ndarray]:
    """Patches of an ``(N, C, H, W)`` input (PyTorch / ONNX ``Conv``), features
    ordered ``(C, kh, kw)`` as a ``(out, C, kh, kw)`` weight flattens;
    ``pads`` as ONNX: ``(top, left, bottom, right)``. Yields ``(rows, C*kh*kw)`` chunks."""
    if x.ndim != 4:
        raise ValueError(f"a 2-D convolution input must be (N, C, H, W), got shape {x.shape}")
    top, left, bottom, right = pads
    n, c = x.shape[:2]
    per_sample = None
    step = 1
    start = 0
    while start < n:
        part = x[start:start + step]
        start += part.shape[0]
        if any(pads):
            part = np.pad(part, ((0, 0), (0, 0), (top, bottom), (left, right)))
        w = _windows(part, kernel, strides, dilations, (2, 3))  # (b, C, Ho, Wo, kh, kw)
        if per_sample is None:
            per_sample = w.shape[2] * w.shape[3]
            step = max(1, _CHUNK_ROWS // max(per_sample, 1))
        yield np.ascontiguousarray(w.transpose(0, 2, 3, 1, 4, 5)).reshape(-1, c * kernel[0] * kernel[1])


def patches_nhwc(x: np.ndarray, kernel: Sequence[int], strides: Sequence[int] = (1, 1),
                 padding: str = "valid", dilations: Sequence[int] = (1, 1)) -> Iterator[np.ndarray]:
    """Patches of an ``(N, H, W, C)`` input (Keras ``Conv2D``), features
    ordered ``(kh, kw, C)`` as a ``(kh, kw, C, out)`` kernel flattens;
    ``padding`` ``"valid"`` or ``"same"``. Yields ``(rows, kh*kw*C)`` chunks."""
    if x.ndim != 4:
        raise ValueError(f"a 2-D convolution input must be (N, H, W, C), got shape {x.shape}")
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    n, h, w_, c = x.shape
    pad_h = same_padding(h, kernel[0], strides[0], dilations[0]) if padding == "same" else (0, 0)
    pad_w = same_padding(w_, kernel[1], strides[1], dilations[1]) if padding == "same" else (0, 0)
    step = 1
    per_sample = None
    start = 0
    while start < n:
        part = x[start:start + step]
        if padding == "same":
            part = np.pad(part, ((0, 0), pad_h, pad_w, (0, 0)))
        w = _windows(part, kernel, strides, dilations, (1, 2))  # (b, Ho, Wo, C, kh, kw)
        start += part.shape[0]
        if per_sample is None:
            per_sample = w.shape[1] * w.shape[2]
            step = max(1, _CHUNK_ROWS // max(per_sample, 1))
        yield np.ascontiguousarray(w.transpose(0, 1, 2, 4, 5, 3)).reshape(-1, kernel[0] * kernel[1] * c)
