"""Large-array paths of the memory-bound kernels (issue 18) against independent
NumPy references: streamed (non-temporal) stores for quantize/dequantize
outputs of 32 MiB and more, and the sampled one-pass magnitude writer that
now serves single tensors from 2^22 entries. Sizes are just past the
thresholds, with odd shapes so the aligned middle, head and tail all run."""
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
    expected = reference_dequantize(q.values.astype(np.int64), np.asarray(q.scale), np.asarray(q.zero_point), 0, None)
    assert np.array_equal(q.dequantize(), expected)
    # Into an `out=` that starts 4 bytes past a 32-byte boundary: the scalar head runs first.
    backing = np.empty(weights.size + 16, np.float32)
    offset = (-(backing.ctypes.data // 4) + 1) % 8
    out = backing[offset:offset + weights.size].reshape(SHAPE)
    assert out.ctypes.data % 32 == 4
    assert q.dequantize(out=out) is out
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("kind", ["gaussian", "ties"])
def test_magnitude_mask_sampled_from_2_22(kind: str) -> None:
    rng = np.random.default_rng(22)
    n = (1 << 22) + 12345
    if kind == "gaussian":
        w = rng.standard_normal(n, dtype=np.float32)
    else:
        # Few distinct magnitudes: the bracket overflows and the exact writer takes over.
        w = rng.integers(-40, 41, n).astype(np.float32)
    order = np.argsort(np.abs(w.astype(np.float64)), kind="stable")  # the reference: lower index first among ties
    for sparsity in (0.3, 0.9):
        expected = np.ones(n, bool)
        expected[order[:round(sparsity * n)]] = False
        assert np.array_equal(sp.magnitude_mask(w, sparsity), expected)
