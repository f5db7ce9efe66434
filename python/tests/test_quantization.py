"""quantize / QuantizedTensor / cast / metrics against independent NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _threads import per_thread_count, run_in_python_threads
from _reference_quantization import (
    reference_pack_bits,
    expand,
    grid,
    group_reduce,
    reference_bfloat16_from_float32,
    reference_bfloat16_from_float64,
    reference_dequantize,
    reference_pack,
    reference_quantize,
    scale_from_range,
)

DTYPES = [np.float16, np.float32, np.float64]


def layouts(shape):
    """(axis, group_size) pairs valid for `shape`."""
    out = [(None, None)]
    for a in range(len(shape)):
        out.append((a, None))
    out.append((-1, None))
    if len(shape) == 2:
        for a in (0, 1):
            other = shape[1 - a]
            for g in (1, 2, 4, 8, 32):
                if other % g == 0 and g <= max(other, 1):
                    out.append((a, g))
    return out


def check_exact(w, bits, symmetric, axis, group_size):
    q = sp.quantize(w, bits, symmetric=symmetric, axis=axis, group_size=group_size)
    values, scale, zero = reference_quantize(w, bits, symmetric, axis, group_size)
    assert q.values.dtype == (np.int8 if symmetric else np.uint8)
    assert q.values.shape == np.shape(w)
    assert q.scale.dtype == np.float32 and q.scale.shape == scale.shape
    assert q.zero_point.dtype == q.values.dtype and q.zero_point.shape == scale.shape
    np.testing.assert_array_equal(q.scale, scale)
    np.testing.assert_array_equal(q.zero_point.astype(np.int64), zero)
    np.testing.assert_array_equal(q.values.astype(np.int64), values)
    deq = q.dequantize()
    assert deq.dtype == np.float32 and deq.shape == np.shape(w)
    np.testing.assert_array_equal(deq, reference_dequantize(values, scale, zero, axis, group_size))
    return q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (8, 16), (4, 3, 2, 5), (33, 64), (2, 1, 9)])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_minmax_exact_against_reference(dtype, shape, bits, symmetric):
    rng = np.random.default_rng(abs(hash((shape, bits, symmetric))) % 2**32)
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 10)).astype(dtype)
    for axis, group_size in layouts(shape):
        check_exact(w, bits, symmetric, axis, group_size)


@pytest.mark.parametrize("bits", [4, 8])
def test_large_per_channel_and_groups_multithreaded(bits):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((512, 768)).astype(np.float32)
    w[:, 5] = np.abs(w[:, 5]) + 1    # a positive-only column (affine zero point 0)
    w[3] = 0.0                       # an all-zero row: scale 1
    for axis, group in [(None, None), (0, None), (1, None), (0, 128), (1, 64), (-1, None)]:
        for symmetric in (True, False):
            q = check_exact(w, bits, symmetric, axis, group)
    assert sp.quantize(w, 8, axis=0).scale[3, 0] == 1.0


def test_rounding_is_half_to_even():
    # scale = 127 / 127 = 1: values x.5 round to even.
    w = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49], np.float32)
    q = sp.quantize(w, 8)
    np.testing.assert_array_equal(q.values, [127, 0, 2, 2, 0, -2, -2, 3])
    assert q.scale.item() == 1.0 and q.zero_point.item() == 0


def test_closed_form_symmetric_and_affine():
    w = np.array([[-1.0, 0.0, 0.5, 1.0]], np.float32)
    q = sp.quantize(w, 8)
    assert q.scale.shape == (1, 1) and q.scale.item() == np.float32(1 / 127)
    np.testing.assert_array_equal(q.values, [[-127, 0, 64, 127]])  # 63.5 -> 64 (even)
    a = sp.quantize(np.array([1.0, 2.0, 3.0], np.float32), 8, symmetric=False)
    # range widened to [0, 3]: scale 3/255, zero point 0
    assert a.zero_point.item() == 0 and a.scale.item() == np.float32(3 / 255)
    np.testing.assert_array_equal(a.values, [85, 170, 255])
    b = sp.quantize(np.array([-2.0, -1.0], np.float32), 4, symmetric=False)
    assert b.zero_point.item() == 15 and b.values.tolist() == [0, 8]


def test_all_zero_groups_get_scale_one():
    w = np.zeros((4, 8), np.float32)
    for symmetric in (True, False):
        q = sp.quantize(w, 4, symmetric=symmetric, axis=0, group_size=4)
        assert np.all(q.scale == 1) and np.all(q.values == 0) and np.all(q.dequantize() == 0)


def test_scale_layout_is_broadcastable():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 4, 3)).astype(np.float32)
    q = sp.quantize(w, 8, axis=1)
    assert q.scale.shape == (1, 4, 1)
    np.testing.assert_array_equal(q.dequantize(), (q.values.astype(np.float32) - q.zero_point) * q.scale)
    g = sp.quantize(w[:, :, 0], 4, axis=1, group_size=2)
    assert g.scale.shape == (3, 4)
    assert sp.quantize(w, 8).scale.shape == (1, 1, 1)


@pytest.mark.parametrize("order", ["F", "strided", "negative"])
def test_layouts_of_memory(order):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((40, 64)).astype(np.float32)
    w = {"F": np.asfortranarray(base), "strided": base[::2, ::2], "negative": base[::-1, ::-2]}[order]
    assert not w.flags.c_contiguous
    for axis, group in [(None, None), (0, None), (1, None), (0, 8), (1, 4)]:
        check_exact(w, 4, False, axis, group)


def test_inputs_not_modified():
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        w = rng.standard_normal((16, 32)).astype(dtype)
        before = w.copy()
        sp.quantize(w, 4, axis=0, group_size=8, method="mse")
        sp.quantize(w, 8, method="percentile", percentile=99)
        sp.cast(w, "bfloat16")
        sp.cluster(w, 4)
        np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis,group", [(None, None), (0, None), (1, None), (0, 16), (1, 8)])
def test_percentile_clipping(symmetric, axis, group):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((32, 64)).astype(np.float32)
    w[0, 0] = 40.0  # an outlier
    p = 99.0
    q = sp.quantize(w, 8, symmetric=symmetric, axis=axis, group_size=group, method="percentile", percentile=p)
    lo = group_reduce(w, axis, group, np.min)
    hi = group_reduce(w, axis, group, np.max)
    c = group_reduce(np.abs(w), axis, group, lambda a, axis, keepdims=False: np.percentile(a, p, axis=axis,
                                                                                           keepdims=keepdims))
    scale, _ = scale_from_range(np.maximum(lo, -c), np.minimum(hi, c), 8, symmetric, np.float32)
    np.testing.assert_allclose(q.scale, scale, rtol=1e-6)
    qmin, qmax = grid(8, symmetric)
    assert q.values.min() >= qmin and q.values.max() <= qmax


def mse(w, q):
    return float(np.mean((w.astype(np.float64) - q.dequantize().astype(np.float64)) ** 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_mse_never_worse_than_minmax(dtype, symmetric, bits):
    rng = np.random.default_rng(bits)
    for shape, axis, group in [((64, 128), 0, 32), ((64, 128), None, None), ((64, 128), 1, None),
                               ((5, 3), 0, None), ((1000,), None, None)]:
        w = rng.standard_t(3, size=shape).astype(dtype)
        q_mse = sp.quantize(w, bits, symmetric=symmetric, axis=axis, group_size=group, method="mse")
        q_mm = sp.quantize(w, bits, symmetric=symmetric, axis=axis, group_size=group)
        # per group, and so in total
        assert mse(w, q_mse) <= mse(w, q_mm) * (1 + 1e-9)


def test_mse_clearly_better_with_outliers():
    rng = np.random.default_rng(5)
    w = rng.standard_normal(10_000).astype(np.float32)
    w[:3] = [30.0, -25.0, 28.0]
    q_mse = sp.quantize(w, 4, method="mse")
    q_mm = sp.quantize(w, 4)
    assert mse(w, q_mse) < 0.5 * mse(w, q_mm)
    assert q_mse.method == "mse"


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 300_001])
def test_packed_round_trip(bits, symmetric, n):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(np.float32)
    q = sp.quantize(w, bits, symmetric=symmetric)
    packed = q.packed()
    assert packed.dtype == np.uint8 and packed.shape == ((n * bits + 7) // 8,)
    np.testing.assert_array_equal(packed, reference_pack_bits(q.values, bits))
    if bits == 4:
        np.testing.assert_array_equal(packed, reference_pack(q.values))
    if bits == 8:
        np.testing.assert_array_equal(packed, q.values.view(np.uint8))
    np.testing.assert_array_equal(sp.QuantizedTensor.unpack(packed, q.shape, bits, symmetric), q.values)


def test_nbytes():
    w = np.ones((64, 256), np.float32)
    q4 = sp.quantize(w, 4, axis=0, group_size=128)
    assert q4.nbytes == 64 * 256 // 2 + 64 * 2 * 4
    a8 = sp.quantize(w, 8, symmetric=False, axis=0)
    assert a8.nbytes == 64 * 256 + 64 * 4 + 64
    assert sp.quantize(np.ones(7, np.float32), 3).nbytes == 3 + 4  # 21 bits of values in 3 bytes
    assert sp.quantize(np.ones(16, np.float32), 5).nbytes == 10 + 4


def test_config_round_trip():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    for kwargs in [dict(bits=4, axis=0, group_size=8), dict(bits=8, symmetric=False), dict(bits=3, axis=-1)]:
        q = sp.quantize(w, **kwargs)
        config = q.to_config()
        r = sp.QuantizedTensor.from_config(config)
        for field in ("bits", "symmetric", "axis", "group_size", "method"):
            assert getattr(r, field) == getattr(q, field)
        np.testing.assert_array_equal(r.dequantize(), q.dequantize())
    bad = q.to_config()
    bad["values"] = np.full(q.shape, 100, np.int8)  # outside [-3, 3]
    with pytest.raises(ValueError, match="values"):
        sp.QuantizedTensor.from_config(bad)
    bad = q.to_config()
    bad["zero_point"] = np.full(q.scale.shape, 1, np.int32)
    with pytest.raises(ValueError, match="zero_point"):
        sp.QuantizedTensor.from_config(bad)
    affine = sp.quantize(w, 4, symmetric=False).to_config()
    affine["zero_point"] = np.array([[-1]], np.int32)
    with pytest.raises(ValueError, match="zero_point"):
        sp.QuantizedTensor.from_config(affine)
    bad = q.to_config()
    bad["scale"] = np.zeros((1, 32), np.float32)
    with pytest.raises(ValueError, match="scale"):
        sp.QuantizedTensor.from_config(bad)


def test_dequantize_into_out():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((16, 24)).astype(np.float32)
    q = sp.quantize(w, 4, axis=1, group_size=4, symmetric=False)
    out = np.full(w.shape, np.nan, np.float32)
    assert q.dequantize(out=out) is out
    np.testing.assert_array_equal(out, q.dequantize())
    with pytest.raises(ValueError, match="out"):
        q.dequantize(out=np.empty((16, 23), np.float32))
    with pytest.raises(ValueError, match="out"):
        q.dequantize(out=np.empty((24, 16), np.float32).T)
    with pytest.raises(TypeError, match="out"):
        q.dequantize(out=np.empty(w.shape, np.float64))


def test_dequantize_is_close_to_input():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    q = sp.quantize(w, 8, axis=0)
    assert sp.relative_error(w, q.dequantize()) < 0.01
    assert sp.sqnr_db(w, q.dequantize()) > 35


# ---- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [0, 1, 9, 16, -4])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits"):
        sp.quantize(np.ones(4, np.float32), bits)


@pytest.mark.parametrize("bits", [4.0, "4", None, True])
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match="bits"):
        sp.quantize(np.ones(4, np.float32), bits)


def test_layout_errors():
    w = np.ones((6, 10), np.float32)
    with pytest.raises(ValueError, match="group_size"):
        sp.quantize(w, 4, axis=0, group_size=4)     # 10 % 4
    with pytest.raises(ValueError, match="group_size"):
        sp.quantize(w, 4, axis=1, group_size=4)     # 6 % 4
    with pytest.raises(ValueError, match="group_size"):
        sp.quantize(w, 4, group_size=2)             # no axis
    with pytest.raises(ValueError, match="group_size"):
        sp.quantize(w, 4, axis=0, group_size=0)
    with pytest.raises(ValueError, match="channel axis first"):   # conv kernels: channel axis first or last
        sp.quantize(np.ones((2, 2, 2), np.float32), 4, axis=1, group_size=2)
    with pytest.raises(ValueError, match="rank 2 or more"):
        sp.quantize(np.ones(4, np.float32), 4, axis=0, group_size=2)
    for axis in (2, -3, 100):
        with pytest.raises(ValueError, match="axis"):
            sp.quantize(w, 8, axis=axis)
    with pytest.raises(TypeError, match="axis"):
        sp.quantize(w, 8, axis=1.0)
    with pytest.raises(ValueError, match="method"):
        sp.quantize(w, 8, method="kl")
    for p in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percentile"):
            sp.quantize(w, 8, method="percentile", percentile=p)
    with pytest.raises(TypeError, match="symmetric"):
        sp.quantize(w, 8, symmetric="yes")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_nan_inf_raise(bad, dtype, method):
    w = np.ones((4, 20), dtype=dtype)
    w[2, 17] = bad
    for axis, group in [(None, None), (0, None), (1, None), (0, 4)]:
        with pytest.raises(ValueError, match="NaN or Inf"):
            sp.quantize(w, 8, axis=axis, group_size=group, method=method)


@pytest.mark.parametrize("w", [np.arange(4), np.ones(3, dtype=bool), np.ones(2, dtype=complex), ["a", "b"]])
def test_non_float_input(w):
    with pytest.raises(TypeError, match="floating-point"):
        sp.quantize(w, 8)
    with pytest.raises(TypeError, match="floating-point"):
        sp.cast(w, "float16")


def test_empty_and_scalar():
    q = sp.quantize(np.zeros((0, 4), np.float32), 4, axis=1)
    assert q.values.shape == (0, 4) and q.scale.shape == (1, 4) and q.dequantize().shape == (0, 4)
    assert q.packed().shape == (0,)
    s = sp.quantize(np.float32(3.0), 8)
    assert s.values.shape == () and s.values == 127 and s.dequantize() == 3.0


# ---- cast ----------------------------------------------------------------------------------

SPECIALS = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan, 65504.0, 65520.0, 65519.99, 1e-8, 6e-8,
            5.96e-8, 2.98e-8, 2.9802322e-08, 3e38, -3.4028235e38, 1.0009765625, 1.00048828125, 1.00146484375,
            np.finfo(np.float32).tiny, np.finfo(np.float32).smallest_subnormal, 0.1, 1 / 3]


def bits16(x):
    return np.asarray(x).view(np.uint16)


@pytest.mark.parametrize("source", [np.float16, np.float32, np.float64])
def test_float16_matches_numpy(source):
    rng = np.random.default_rng(8)
    x = np.concatenate([np.array(SPECIALS), rng.standard_normal(10_000) * 10 ** rng.uniform(-9, 6, 10_000)])
    with np.errstate(over="ignore"):
        x = x.astype(source)
        expected = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(bits16(sp.cast(x, "float16")), expected)


def test_float16_every_float32_bit_pattern_class():
    rng = np.random.default_rng(9)
    raw = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    # Concentrate around float16's range, subnormals and the NaN space.
    raw[:100_000] = (raw[:100_000] & 0x83FFFFFF) | 0x30000000
    raw[100_000:150_000] |= 0x7F800000
    x = raw.view(np.float32)
    with np.errstate(all="ignore"):
        expected = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(bits16(sp.cast(x, "float16")), expected)
    assert sp.cast(x, "float16").dtype == np.float16


def test_float16_from_float64_bits():
    rng = np.random.default_rng(10)
    raw = rng.integers(0, 2**63, size=200_000, dtype=np.uint64)
    raw[:80_000] = (raw[:80_000] & 0x800FFFFFFFFFFFFF) | (rng.integers(990, 1040, 80_000).astype(np.uint64) << 52)
    raw[80_000:90_000] |= np.uint64(0x7FF0000000000000)
    x = raw.view(np.float64)
    with np.errstate(all="ignore"):
        expected = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(bits16(sp.cast(x, "float16")), expected)


def test_bfloat16_bits_from_float32():
    rng = np.random.default_rng(12)
    raw = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    raw[:1000] = raw[:1000] & 0xFFFF0000 | 0x8000   # exact ties
    x = np.concatenate([np.array(SPECIALS, np.float32), raw.view(np.float32)])
    out = sp.cast(x, "bfloat16")
    np.testing.assert_array_equal(bits16(out), reference_bfloat16_from_float32(x))
    assert bits16(sp.cast(np.array([np.nan, -np.nan], np.float32), "bfloat16")).tolist() == [0x7FC0, 0xFFC0]
    assert bits16(sp.cast(np.array([np.inf, -np.inf, 3.4e38], np.float32), "bfloat16")).tolist() == \
        [0x7F80, 0xFF80, 0x7F80]


def test_bfloat16_from_float64_rounds_once():
    rng = np.random.default_rng(13)
    raw = rng.integers(0, 2**63, size=200_000, dtype=np.uint64)
    raw[:100_000] = (raw[:100_000] & 0x800FFFFFFFFFFFFF) | (rng.integers(850, 1200, 100_000).astype(np.uint64) << 52)
    x = np.concatenate([np.array(SPECIALS, np.float64), raw.view(np.float64)])
    np.testing.assert_array_equal(bits16(sp.cast(x, "bfloat16")), reference_bfloat16_from_float64(x))
    # 1 + 2^-8 + 2^-30 is above the midpoint: rounds up, although float32 first would tie to even (down).
    assert bits16(sp.cast(np.array([1 + 2**-8 + 2**-30]), "bfloat16")).item() == 0x3F81


def test_bfloat16_dtype_with_and_without_ml_dtypes():
    out = sp.cast(np.array([1.5, -2.0], np.float32), "bfloat16")
    try:
        import ml_dtypes
    except ImportError:
        assert out.dtype == np.uint16
    else:
        assert out.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(out.astype(np.float32), [1.5, -2.0])


def test_cast_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        sp.cast(np.ones(3, np.float32), "int8")


# ---- metrics -------------------------------------------------------------------------------

def test_metrics_closed_form():
    w = np.array([3.0, 4.0])
    assert sp.relative_error(w, np.array([3.0, 4.0])) == 0.0
    assert sp.relative_error(w, np.array([0.0, 0.0])) == 1.0
    assert sp.sqnr_db(w, w) == float("inf")
    assert sp.sqnr_db(w, w * 0.9) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        sp.sqnr_db(w, np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        sp.relative_error(np.array([np.nan]), np.array([1.0]))


def test_thread_counts_and_python_threads_agree():
    rng = np.random.default_rng(14)
    arrays = [rng.standard_normal((300, 512)).astype(np.float32) for _ in range(4)]
    expected = [reference_quantize(a, 4, True, 0, 64)[0] for a in arrays]
    for values in per_thread_count(lambda: sp.quantize(arrays[0], 4, axis=0, group_size=64).values, (1, 2, 3)):
        np.testing.assert_array_equal(values, expected[0])

    def work(i: int) -> np.ndarray:
        for _ in range(5):
            values = sp.quantize(arrays[i], 4, axis=0, group_size=64).values
        return values

    for result, reference in zip(run_in_python_threads(work), expected):
        np.testing.assert_array_equal(result, reference)


# --- quantize(..., out=) ------------------------------------------------------

@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("shape,axis,group_size", [((33, 70), 0, None), ((33, 70), -1, None), ((6, 4, 3, 8), -1, 24),
                                                   ((40,), None, None)])
def test_out_receives_the_same_integers(symmetric, shape, axis, group_size):
    w = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    fresh = sp.quantize(w, 8, symmetric=symmetric, axis=axis, group_size=group_size)
    out = np.full(shape, 99, np.int8 if symmetric else np.uint8)
    q = sp.quantize(w, 8, symmetric=symmetric, axis=axis, group_size=group_size, out=out)
    assert q.values is out
    np.testing.assert_array_equal(out, fresh.values)
    np.testing.assert_array_equal(q.scale, fresh.scale)
    np.testing.assert_array_equal(q.zero_point, fresh.zero_point)


def test_out_is_checked():
    w = np.random.default_rng(9).standard_normal((8, 16)).astype(np.float32)
    with pytest.raises(TypeError, match="int8"):
        sp.quantize(w, 8, axis=0, out=np.empty((8, 16), np.uint8))  # symmetric needs int8
    with pytest.raises(TypeError, match="uint8"):
        sp.quantize(w, 8, symmetric=False, axis=0, out=np.empty((8, 16), np.int8))
    with pytest.raises(ValueError, match="shape"):
        sp.quantize(w, 8, axis=0, out=np.empty((16, 8), np.int8))
    with pytest.raises(ValueError, match="C-contiguous"):
        sp.quantize(w, 8, axis=0, out=np.empty((16, 8), np.int8).T)
    readonly = np.empty((8, 16), np.int8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        sp.quantize(w, 8, axis=0, out=readonly)
    # An int8 view of w's own memory: refused, w is left as it was.
    buffer = np.random.default_rng(10).standard_normal(8 * 16).astype(np.float32)
    before = buffer.copy()
    alias = buffer.view(np.int8)[: 8 * 16].reshape(8, 16)
    with pytest.raises(ValueError, match="share memory"):
        sp.quantize(buffer.reshape(8, 16), 8, axis=0, out=alias)
    np.testing.assert_array_equal(buffer, before)
