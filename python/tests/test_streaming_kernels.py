"""Large-array paths of the memory-bound kernels (issue 18) against independent
NumPy references: streamed (non-temporal) stores for quantize/dequantize
outputs of 32 MiB and more. Sizes are just past the threshold, with odd
shapes (and a misaligned `out=`) so the aligned middle, head and tail all run."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_quantization import reference_dequantize, reference_quantize

# 4099 x 8195 = 33.6 M entries: int8 output 32.03 MiB (streamed), float32 out 128 MiB.
SHAPE = (4099, 8195)


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    rng = np.random.default_rng(18)
    return (rng.standard_normal(SHAPE, dtype=np.float32) * rng.uniform(0.1, 3, (SHAPE[0], 1))).astype(np.float32)


@pytest.mark.parametrize("symmetric", [True, False])
def test_quantize_streamed_matches_reference(weights: np.ndarray, symmetric: bool) -> None:
    q = sp.quantize(weights, 8, symmetric=symmetric, axis=0)
    values, scale, zero = reference_quantize(weights, 8, symmetric=symmetric, axis=0)
    np.testing.assert_array_equal(np.asarray(q.scale).reshape(-1), scale.reshape(-1))
    # The streamed result equals the plain loop's too: quantize row blocks small enough not to stream.
    assert np.array_equal(q.values, values), "streamed quantize differs from the NumPy formula"
    block = sp.quantize(weights[:1000], 8, symmetric=symmetric, axis=0)
    assert np.array_equal(block.values, q.values[:1000])


@pytest.mark.parametrize("symmetric", [True, False])
def test_dequantize_streamed_matches_reference(weights: np.ndarray, symmetric: bool) -> None:
    q = sp.quantize(weights, 8, symmetric=symmetric, axis=0)
    # scale and zero point keep w's rank: (rows, 1), broadcast along each row.
    zero = np.zeros((SHAPE[0], 1), np.int64) if q.zero_point is None else np.asarray(q.zero_point).reshape(-1, 1)
    expected = reference_dequantize(q.values.astype(np.int64), np.asarray(q.scale).reshape(-1, 1), zero, 0, None)
    assert np.array_equal(q.dequantize(), expected)
    # Into an `out=` that starts 4 bytes past a 32-byte boundary: the scalar head runs first.
    backing = np.empty(weights.size + 16, np.float32)
    offset = (-(backing.ctypes.data // 4) + 1) % 8
    out = backing[offset:offset + weights.size].reshape(SHAPE)
    assert out.ctypes.data % 32 == 4
    assert q.dequantize(out=out) is out
    assert np.array_equal(out, expected)
