"""gptq against a textbook NumPy GPTQ and against round-to-nearest."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_calibration import correlated_layer, output_error
from _reference_quantization import reference_gptq


@pytest.mark.parametrize("bits,group", [(4, 32), (4, None), (3, 64), (8, 16)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_reference_gptq(bits, group, symmetric):
    w, x = correlated_layer(24, 192, 400, bits)
    q = sp.gptq(w, x, bits, group, damp=0.01, symmetric=symmetric)
    values, scales, zeros = reference_gptq(w, x, bits, group, 0.01, symmetric)
    assert q.axis == 0 and q.group_size == group and q.bits == bits
    assert q.values.shape == w.shape and q.scale.shape == scales.shape
    # GPTQ runs in float32 (the paper's precision) with lazy batching, the reference in float64: a weight
    # within rounding error of a tie may flip, and (on the fine 8-bit grid) nudge a neighbour after it.
    diff = np.abs(q.values.astype(np.int64) - values)
    assert diff.max() <= 2 and np.mean(diff != 0) < 0.02
    # (a flip moves the later groups' scales of its row a little: dynamic scales follow the updated weights)
    assert np.mean(~np.isclose(q.scale, scales, rtol=1e-4, atol=0)) < 0.05
    # The flips do not cost accuracy: the output error is the reference's.
    reference = (values - zeros.repeat(group or w.shape[1], axis=1)).astype(np.float32) * scales.repeat(
        group or w.shape[1], axis=1)
    assert output_error(w, q.dequantize(), x) == pytest.approx(output_error(w, reference, x), rel=0.01)


@pytest.mark.parametrize("bits,group,symmetric,ratio", [
    (4, 128, True, 0.8), (3, 64, True, 0.8), (4, None, True, 0.8), (8, 64, True, 0.8), (4, 32, False, 0.8),
    (2, 32, False, 0.85),  # symmetric 2-bit has only 3 levels: little room to compensate
])
def test_output_error_clearly_below_round_to_nearest(bits, group, symmetric, ratio):
    w, x = correlated_layer(64, 256, 1024, 7)
    q = sp.gptq(w, x, bits, group, symmetric=symmetric)
    rtn = sp.quantize(w, bits, axis=0, group_size=group, symmetric=symmetric)
    assert output_error(w, q.dequantize(), x) < ratio * output_error(w, rtn.dequantize(), x)


def test_dead_columns_are_zero():
    w, x = correlated_layer(8, 64, 128, 3)
    x[:, 5] = 0
    q = sp.gptq(w, x, 4, 16)
    assert np.all(q.dequantize()[:, 5] == 0)


def test_dtypes_and_layouts():
    w, x = correlated_layer(16, 64, 200, 4)
    ref = sp.gptq(w, x, 4, 32).values
    np.testing.assert_array_equal(sp.gptq(w.astype(np.float64), x.astype(np.float64), 4, 32).values, ref)
    np.testing.assert_array_equal(sp.gptq(np.asfortranarray(w), x[:, :], 4, 32).values, ref)
    before = w.copy()
    sp.gptq(w, x, 4, 32)
    np.testing.assert_array_equal(w, before)
    assert sp.gptq(w.astype(np.float16), x.astype(np.float16), 4, 32).values.shape == w.shape


def test_empty():
    q = sp.gptq(np.zeros((0, 32), np.float32), np.ones((5, 32), np.float32), 4, 16)
    assert q.values.shape == (0, 32) and q.scale.shape == (0, 2)


def test_bad_input():
    w, x = correlated_layer(8, 64, 100, 5)
    with pytest.raises(ValueError, match="group_size"):
        sp.gptq(w, x, 4, 48)
    with pytest.raises(ValueError, match="bits"):
        sp.gptq(w, x, 9, 32)
    with pytest.raises(ValueError, match="damp"):
        sp.gptq(w, x, 4, 32, damp=-1)
    with pytest.raises(ValueError, match="input columns"):
        sp.gptq(w, x[:, :32], 4, 32)
    with pytest.raises(ValueError, match="shape"):
        sp.gptq(w.ravel(), x, 4, 32)
    with pytest.raises(ValueError, match="sample"):
        sp.gptq(w, x[:0], 4, 32)
    bad = w.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.gptq(bad, x, 4, 32)
    badx = x.copy()
    badx[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.gptq(w, badx, 4, 32)
    with pytest.raises(ValueError, match="positive definite"):
        sp.gptq(w, x[:10], 4, 32, damp=0.0)  # rank 10 < 64
    with pytest.raises(TypeError, match="floating-point"):
        sp.gptq(w, x.astype(np.int32), 4, 32)


@pytest.mark.parametrize("cols,group", [(100, 25), (130, None), (7, 7)])
def test_odd_sizes_match_reference(cols, group):
    w, x = correlated_layer(5, cols, 300, cols)
    q = sp.gptq(w, x, 4, group)
    values, scales, _ = reference_gptq(w, x, 4, group, 0.01)
    diff = np.abs(q.values.astype(np.int64) - values)
    assert diff.max() <= 1 and np.mean(diff != 0) < 0.01
    np.testing.assert_allclose(q.scale, scales, rtol=1e-4)


def test_gptq_tall_layer_same_at_one_and_two_threads():
    # 2048 rows: the lazy block update W[:, i2:] -= E · Hinv[i1:i2, i2:] (E stored transposed) has
    # >= 1024 rows per worker, so two workers each take a slice of its rows; a slice offset by rows
    # of the transposed operand once gave a worse layer (361 -> 498 output error at 4096²).
    from _threads import per_thread_count
    w, x = correlated_layer(2048, 256, 1024, seed=5)
    one, two = per_thread_count(lambda: sp.gptq(w, x, 4, 128).dequantize(), (1, 2))
    np.testing.assert_array_equal(one, two)
    rtn = sp.quantize(w, 4, axis=0, group_size=128).dequantize()
    assert output_error(w, two, x) < output_error(w, rtn, x)



def test_wide_layer_matches_reference_across_factor_panels():
    # 600 inputs: the inverse-Hessian factor's Cholesky and triangular inverse work in panels of 256 columns
    # (the rows below a panel and the off-diagonal block rows by GEMMs), here two full panels and a partial one.
    from _threads import per_thread_count
    w, x = correlated_layer(12, 600, 1500, 11)
    one, two = per_thread_count(lambda: sp.gptq(w, x, 4, 40), (1, 2))
    np.testing.assert_array_equal(one.values, two.values)
    np.testing.assert_array_equal(one.scale, two.scale)
    values, scales, zeros = reference_gptq(w, x, 4, 40, 0.01)
    diff = np.abs(one.values.astype(np.int64) - values)
    assert diff.max() <= 2 and np.mean(diff != 0) < 0.02
    reference = (values - zeros.repeat(40, axis=1)).astype(np.float32) * scales.repeat(40, axis=1)
    assert output_error(w, one.dequantize(), x) == pytest.approx(output_error(w, reference, x), rel=0.01)
