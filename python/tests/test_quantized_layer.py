"""QuantizedTensor.matmul: the quantized weight run as a layer, against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [0, None])
@pytest.mark.parametrize("shape", [(17, 33), (64, 128)])
def test_int8_kernel_layouts_match_the_dequantized_product(symmetric, axis, shape):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(np.float32)
    x = np.maximum(rng.standard_normal((shape[1], 9)), 0).astype(np.float32)
    q = sp.quantize(w, 8, symmetric=symmetric, axis=axis)
    expected = q.dequantize().astype(np.float64) @ x
    got = q.matmul(x)
    assert got.shape == (shape[0], 9) and got.dtype == np.float32
    # Activations are quantized to 7 bits on the fly: about 1% error.
    assert relative(got, expected) < 0.03
    np.testing.assert_allclose(q @ x[:, 0], got[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [dict(axis=1), dict(axis=0, group_size=16), dict(axis=1, group_size=8)])
def test_other_layouts_use_the_dequantized_weight(kwargs):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((32, 48)).astype(np.float32)
    x = rng.standard_normal((48, 5)).astype(np.float32)
    q = sp.quantize(w, 4, **kwargs)
    np.testing.assert_allclose(q.matmul(x), q.dequantize().astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q.matmul(x[:, 0]), q.dequantize().astype(np.float64) @ x[:, 0], rtol=1e-4, atol=1e-4)


def test_bad_shapes_raise():
    q = sp.quantize(np.ones((4, 6), np.float32), 8, axis=0)
    with pytest.raises(ValueError):
        q.matmul(np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        sp.quantize(np.ones((2, 3, 4), np.float32), 8).matmul(np.ones((4, 1), np.float32))
