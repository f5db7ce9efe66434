"""SparseGPT's joint sparsification and quantization (``sp.sparsegpt_quantize``,
``prune: {method: sparsegpt, bits: ...}``) against a float64 NumPy
transcription of the paper's loop, and the float32 GPTQ/SparseGPT engine's
bounds."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_calibration import correlated_layer, output_error, reference_sparsegpt_quantize


def dequantize(values, scales, zeros, group):
    g = group or values.shape[1]
    s = np.repeat(scales, g, axis=1).astype(np.float32)
    z = np.repeat(zeros, g, axis=1)
    return (values - z).astype(np.float32) * s


@pytest.mark.parametrize("sparsity,nm,bits,group,symmetric", [
    (0.5, None, 4, 32, True),
    (None, (2, 4), 4, 32, True),
    (0.6, None, 3, None, False),
    (None, (1, 4), 8, 64, False),
])
def test_matches_float64_transcription(sparsity, nm, bits, group, symmetric):
    w, x = correlated_layer(24, 192, 600, bits)
    q = sp.sparsegpt_quantize(w, x, sparsity, nm=nm, bits=bits, group_size=group, symmetric=symmetric, block_size=64)
    hessian = x.astype(np.float64).T @ x.astype(np.float64)
    values, scales, zeros = reference_sparsegpt_quantize(w, hessian, bits, group, sparsity, nm, symmetric=symmetric,
                                                         block_size=64)
    assert q.values.shape == w.shape and q.scale.shape == scales.shape and q.group_size == group
    ours = q.values.astype(np.int64)
    # float32 vs float64: a weight within rounding of a tie may flip, and what follows it moves slightly.
    assert np.mean(ours != values) < 0.02
    zero_map = np.repeat(q.zero_point.astype(np.int64), group or w.shape[1], axis=1)
    ref_zero_map = np.repeat(zeros, group or w.shape[1], axis=1)
    assert np.mean((ours == zero_map) != (values == ref_zero_map)) < 0.02
    np.testing.assert_allclose(q.scale, scales, rtol=2e-3)
    ref_error = output_error(w, dequantize(values, scales, zeros, group), x)
    assert output_error(w, q.dequantize(), x) == pytest.approx(ref_error, rel=0.02)


def test_pattern_is_exact_and_pruned_weights_are_zero():
    w, x = correlated_layer(32, 128, 500, 1)
    q = sp.sparsegpt_quantize(w, x, 0.5, bits=4, group_size=32)
    dense = q.dequantize()
    assert (dense == 0).sum() >= round(0.5 * w.size)  # pruned ones, plus kept ones that round to 0
    q24 = sp.sparsegpt_quantize(w, x, nm=(2, 4), bits=4, group_size=32)
    groups = (q24.dequantize() != 0).reshape(32, -1, 4).sum(axis=2)
    assert groups.max() <= 2


def test_joint_beats_prune_then_round_and_matches_sparsegpt_without_rounding():
    w, x = correlated_layer(64, 256, 1024, 2)
    joint = sp.sparsegpt_quantize(w, x, 0.5, bits=4, group_size=64).dequantize()
    pruned = sp.sparsegpt(w, x, 0.5)
    mask = pruned != 0
    rounded = sp.quantize(pruned, 4, axis=0, group_size=64).dequantize() * mask
    # Pruning dominates the error; the joint pass compensates much of what rounding adds on top of it.
    base = output_error(w, pruned, x)
    assert output_error(w, joint, x) - base < 0.8 * (output_error(w, rounded, x) - base)
    # With 8 bits the rounding is tiny: the joint result is SparseGPT's.
    eight = sp.sparsegpt_quantize(w, x, 0.5, bits=8, group_size=64).dequantize()
    assert output_error(w, eight, x) == pytest.approx(output_error(w, pruned, x), rel=0.02)


def test_accumulator_input_and_bad_arguments():
    w, x = correlated_layer(16, 64, 300, 3)
    acc = sp.calibration.HessianAccumulator(64, name="fc").update(x)
    a = sp.sparsegpt_quantize(w, acc, 0.5, bits=4, group_size=32)
    b = sp.sparsegpt_quantize(w, x, 0.5, bits=4, group_size=32)
    assert np.mean(a.values != b.values) < 0.01
    with pytest.raises(ValueError, match="bits"):
        sp.sparsegpt_quantize(w, x, 0.5, bits=9)
    with pytest.raises(ValueError, match="group_size"):
        sp.sparsegpt_quantize(w, x, 0.5, bits=4, group_size=48)
    with pytest.raises(ValueError, match="sparsity"):
        sp.sparsegpt_quantize(w, x, bits=4)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.sparsegpt_quantize(np.full_like(w, np.nan), x, 0.5, bits=4, group_size=32)
    with pytest.raises(ValueError, match="fc.*positive definite"), pytest.warns(sp.calibration.CalibrationWarning):
        sp.sparsegpt_quantize(w, sp.calibration.HessianAccumulator(64, name="fc").update(x[:8]), 0.5, bits=4,
                              group_size=32, damp=0.0)  # rank 8 < 64


def test_recipe_option_gives_one_quantized_tensor():
    w, x = correlated_layer(32, 64, 400, 4)
    calibration = sp.calibration.from_arrays({"fc": x})
    result = sp.compress({"fc.weight": w}, [
        {"prune": {"method": "sparsegpt", "sparsity": 0.5, "bits": 4, "group_size": 32}}],
        calibration=calibration, progress=False)
    q = result.tensors["fc.weight"]
    assert isinstance(q, sp.QuantizedTensor) and q.bits == 4 and q.group_size == 32
    np.testing.assert_array_equal(result.weights["fc.weight"], q.dequantize())
    direct = sp.sparsegpt_quantize(w, x, 0.5, bits=4, group_size=32)
    np.testing.assert_array_equal(q.values, direct.values)
    with pytest.raises(ValueError, match="already encoded"):
        sp.compress({"fc.weight": w}, [
            {"prune": {"method": "sparsegpt", "sparsity": 0.5, "bits": 4, "group_size": 32}},
            {"quantize": {"bits": 8}}], calibration=calibration, progress=False)


def test_block_size_bound_is_a_value_error():
    from swiftprune import _core

    w, x = correlated_layer(8, 64, 100, 5)
    h = x.astype(np.float64).T @ x.astype(np.float64)
    with pytest.raises(ValueError, match="block_size"):
        _core.gptq_hessian(w, h, 4, True, 32, 0.01, 1 << 40, False, False, 0)
    with pytest.raises(ValueError, match="block_size"):
        _core.sparsegpt_hessian(w, h, 0.5, 0, 0, 1 << 40, 0.01)
    with pytest.raises(ValueError, match="block_size"):
        _core.sparsegpt_quant_hessian(w, h, 0.5, 0, 0, 0, 0.01, 4, True, 32)


def _float64_hessian_entries():
    """The library the extension loads, through ctypes, with the argument types of the C ABI's float64
    Hessian entries (no Python wrapper calls them)."""
    import ctypes
    from pathlib import Path

    import swiftprune

    library = ctypes.CDLL(str(Path(swiftprune.__file__).with_name("libswiftprune.so")))
    library.sp_last_error.restype = ctypes.c_char_p
    pointer, i64, f64, boolean = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_bool
    library.sp_quant_gptq_hessian_f64.argtypes = [pointer, i64, i64, pointer, i64, boolean, i64, f64, i64, boolean,
                                                  boolean, i64, pointer, pointer, pointer, i64]
    library.sp_sparsegpt_hessian_f64.argtypes = [pointer, i64, i64, pointer, f64, i64, i64, i64, f64, pointer]
    return library


def test_float64_hessian_entries_refuse_a_too_large_block_size():
    # The C ABI's float64 entries check the same bounds as the float32 ones: SP_ERR_VALUE and a message, not a trap.
    from swiftprune import _core

    library = _float64_hessian_entries()
    rows, cols = 4, 64
    w, x = correlated_layer(rows, cols, 100, 7)
    w = w.astype(np.float64)
    h = x.astype(np.float64).T @ x.astype(np.float64)
    values, scale, zero_point = np.empty((rows, cols), np.int8), np.empty((rows, 2), np.float32), np.empty((rows, 2), np.int8)
    out = np.empty_like(w)
    for block_size in (1 << 40, 1 << 17, 0):
        status = library.sp_quant_gptq_hessian_f64(
            w.ctypes.data, rows, cols, h.ctypes.data, 4, True, 32, 0.01, block_size, False, False, 0,
            values.ctypes.data, scale.ctypes.data, zero_point.ctypes.data, scale.size)
        assert status == 1 and b"block_size" in library.sp_last_error()  # SP_ERR_VALUE
        status = library.sp_sparsegpt_hessian_f64(w.ctypes.data, rows, cols, h.ctypes.data, 0.5, 0, 0, block_size,
                                                  0.01, out.ctypes.data)
        assert status == 1 and b"block_size" in library.sp_last_error()
    # The largest allowed block works (it is clamped to the layer's width).
    assert library.sp_quant_gptq_hessian_f64(
        w.ctypes.data, rows, cols, h.ctypes.data, 4, True, 32, 0.01, 1 << 16, False, False, 0,
        values.ctypes.data, scale.ctypes.data, zero_point.ctypes.data, scale.size) == 0
    np.testing.assert_array_equal(values, _core.gptq_hessian(w.astype(np.float32), h, 4, True, 32, 0.01, 128, False,
                                                             False, 0)[0])


def test_float64_hessian_entries_only_read_h():
    """The header's contract: h (a non-const pointer in the float64 entries) is left bit-identical, and the
    results equal the float32 entries' on the same weights rounded to float32 (the algorithm runs in float32)."""
    from swiftprune import _core

    library = _float64_hessian_entries()
    rows, cols = 6, 64
    w, x = correlated_layer(rows, cols, 100, 8)
    w = w.astype(np.float64)
    h = x.astype(np.float64).T @ x.astype(np.float64)
    original = h.copy()
    values, scale, zero_point = np.empty((rows, cols), np.int8), np.empty((rows, 2), np.float32), np.empty((rows, 2), np.int8)
    assert library.sp_quant_gptq_hessian_f64(
        w.ctypes.data, rows, cols, h.ctypes.data, 4, True, 32, 0.01, 16, True, True, 20,
        values.ctypes.data, scale.ctypes.data, zero_point.ctypes.data, scale.size) == 0, library.sp_last_error()
    assert h.tobytes() == original.tobytes()
    expected = _core.gptq_hessian(w.astype(np.float32), original, 4, True, 32, 0.01, 16, True, True, 20)
    np.testing.assert_array_equal(values, expected[0])
    np.testing.assert_array_equal(scale, expected[1])
    pruned = np.empty_like(w)
    assert library.sp_sparsegpt_hessian_f64(w.ctypes.data, rows, cols, h.ctypes.data, 0.0, 2, 4, 16, 0.01,
                                            pruned.ctypes.data) == 0, library.sp_last_error()
    assert h.tobytes() == original.tobytes()
    np.testing.assert_array_equal(pruned, _core.sparsegpt_hessian(w.astype(np.float32), original, 0.0, 2, 4, 16, 0.01))
    assert (pruned.reshape(rows, -1, 4) != 0).sum(axis=2).max() == 2


def test_float32_factorization_falls_back_to_float64():
    # A Hessian so ill-conditioned that float32 Cholesky breaks down with no damping, float64 does not.
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    h = (q * np.logspace(0, -11, 64)) @ q.T
    h = (h + h.T) / 2
    w = rng.standard_normal((8, 64)).astype(np.float32)
    from swiftprune import _core

    values, scale, zero = _core.gptq_hessian(w, h, 8, True, 0, 0.0, 128, False, False, 0)
    assert np.isfinite(scale).all() and values.shape == w.shape
