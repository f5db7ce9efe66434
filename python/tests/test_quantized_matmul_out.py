"""``quantized_matmul(..., out=)`` and ``QuantizedTensor.matmul(x, out=)``: the
product written into the caller's array is bit-identical to the one returned
without ``out``, every element is written, and a bad ``out`` is refused with a
clear error before anything runs."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp


def layer(rows: int, cols: int, batch: int | None, seed: int = 0, affine: bool = False):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    shape = (cols,) if batch is None else (cols, batch)
    x = rng.standard_normal(shape).astype(np.float32)
    return sp.quantize(w, 8, symmetric=not affine, axis=0), w, x


def args(q):
    zero_point = None if q.symmetric else q.zero_point.reshape(-1)
    return q.values, q.scale.reshape(-1), zero_point


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("rows, cols, batch", [(1, 1, None), (17, 33, None), (17, 33, 1), (64, 96, 9),
                                               (256, 512, 64), (300, 1000, 130)])
def test_out_is_bit_identical_to_the_returned_product(rows, cols, batch, affine):
    q, w, x = layer(rows, cols, batch, affine=affine)
    values, scale, zero_point = args(q)
    fresh = sp.quantized_matmul(values, scale, x, zero_point)
    out = np.full(fresh.shape, np.nan, dtype=np.float32)   # every element must be overwritten
    result = sp.quantized_matmul(values, scale, x, zero_point, out=out)
    assert result is out
    assert np.array_equal(out.view(np.uint32), fresh.view(np.uint32))
    # And the product is W @ x (7-bit activations: about 1% error), not only self-consistent.
    expected = q.dequantize().astype(np.float64) @ x.astype(np.float64)
    if np.linalg.norm(expected) > 0:
        assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 0.03


def test_out_reused_across_calls_and_threads():
    q, _, x = layer(128, 256, 32, seed=3)
    values, scale, _ = args(q)
    out = np.empty((128, 32), np.float32)
    for threads in (1, 2, 3):
        previous = sp.get_num_threads()
        sp.set_num_threads(threads)
        try:
            for seed in range(3):
                xs = np.random.default_rng(seed).standard_normal((256, 32)).astype(np.float32)
                sp.quantized_matmul(values, scale, xs, out=out)
                assert np.array_equal(out, sp.quantized_matmul(values, scale, xs))
        finally:
            sp.set_num_threads(previous)


def test_uint8_values_and_converted_inputs_with_out():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 256, (20, 40), dtype=np.uint8)
    scale = rng.uniform(0.01, 0.1, 20)                         # float64: converted
    zero_point = rng.integers(0, 256, 20)
    x = np.asfortranarray(rng.standard_normal((40, 7)))      # float64, F order: converted
    out = np.empty((20, 7), np.float32)
    sp.quantized_matmul(values, scale, x, zero_point, out=out)
    assert np.array_equal(out, sp.quantized_matmul(values, scale, x, zero_point))


def test_quantized_tensor_matmul_out():
    q, _, x = layer(48, 80, 6, seed=7)
    out = np.empty((48, 6), np.float32)
    assert q.matmul(x, out=out) is out
    assert np.array_equal(out, q.matmul(x))
    out1 = np.empty(48, np.float32)
    assert np.array_equal(q.matmul(x[:, 0], out=out1), q @ x[:, 0])
    grouped = sp.quantize(np.ones((8, 32), np.float32), 4, axis=0, group_size=16)
    with pytest.raises(ValueError, match="int8 kernel only"):
        grouped.matmul(np.ones((32, 2), np.float32), out=np.empty((8, 2), np.float32))


@pytest.mark.parametrize("make_out, error, message", [
    (lambda: np.empty((16, 5), np.float64), TypeError, "out must be a float32 numpy array, got numpy.float64"),
    (lambda: [[0.0] * 5] * 16, TypeError, "out must be a float32 numpy array, got list"),
    (lambda: np.empty((16, 6), np.float32), ValueError, r"out must have the product's shape \(16, 5\)"),
    (lambda: np.empty((5, 16), np.float32), ValueError, r"out must have the product's shape \(16, 5\)"),
    (lambda: np.empty(80, np.float32), ValueError, r"out must have the product's shape \(16, 5\)"),
    (lambda: np.empty((16, 5), np.float32, order="F"), ValueError, "writeable C-contiguous"),
    (lambda: np.empty((16, 10), np.float32)[:, ::2], ValueError, "writeable C-contiguous"),
    (lambda: _read_only((16, 5)), ValueError, "writeable C-contiguous"),
])
def test_bad_out_raises(make_out, error, message):
    q, _, x = layer(16, 24, 5, seed=9)
    values, scale, _ = args(q)
    with pytest.raises(error, match=message):
        sp.quantized_matmul(values, scale, x, out=make_out())


def _read_only(shape):
    out = np.zeros(shape, np.float32)
    out.flags.writeable = False
    return out


def test_out_of_a_1d_product_must_be_1d():
    q, _, x = layer(16, 24, None, seed=9)
    values, scale, _ = args(q)
    with pytest.raises(ValueError, match=r"out must have the product's shape \(16,\)"):
        sp.quantized_matmul(values, scale, x, out=np.empty((16, 1), np.float32))


def test_out_sharing_memory_with_an_input_is_refused():
    q, _, _ = layer(16, 24, 5, seed=11)
    values, scale, _ = args(q)
    rng = np.random.default_rng(11)
    # x and out in one buffer, overlapping: writing y would change x while the kernel reads it.
    buffer = rng.standard_normal(24 * 5 + 40).astype(np.float32)
    x = buffer[: 24 * 5].reshape(24, 5)
    out = buffer[40: 40 + 16 * 5].reshape(16, 5)
    before = buffer.copy()
    with pytest.raises(ValueError, match="must not share memory with the inputs"):
        sp.quantized_matmul(values, scale, x, out=out)
    assert np.array_equal(buffer, before)   # refused before anything was written
    # out over the scales (float32, used as given) is refused too.
    scales = np.empty(16 * 5, np.float32)
    scales[:16] = scale
    with pytest.raises(ValueError, match="must not share memory with the inputs"):
        sp.quantized_matmul(values, scales[:16], np.ones((24, 5), np.float32), out=scales.reshape(16, 5))
    # Adjacent but disjoint: accepted.
    buffer = rng.standard_normal(24 * 5 + 16 * 5).astype(np.float32)
    x, out = buffer[: 24 * 5].reshape(24, 5), buffer[24 * 5:].reshape(16, 5)
    expected = sp.quantized_matmul(values, scale, x.copy())
    sp.quantized_matmul(values, scale, x, out=out)
    assert np.array_equal(out, expected)
