"""The Swift kernels behind sparse storage layouts and report errors, against NumPy."""
import numpy as np
import pytest

from swiftprune import _core, _sparse_storage
from swiftprune.report import relative_error_chunked

DTYPES = [np.int8, np.uint8, np.int16, np.float16, np.float32, np.float64, np.bool_]


def reference_nm_select(values, nonzero, n, m, axis):
    """The N:M layout by NumPy sorting: non-zeros first, short runs filled with their first zeros, in order."""
    runs = np.moveaxis(values, axis, -1).reshape(-1, m)
    keep = np.moveaxis(nonzero, axis, -1).reshape(-1, m)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :n]
    order.sort(axis=1)
    return np.take_along_axis(runs, order, axis=1).reshape(-1), order.astype(np.uint8).reshape(-1)


def random_nm_mask(rng, shape, n, m, axis):
    """At most n marked entries in every run of m along axis (some runs short, some empty)."""
    runs = np.zeros(np.moveaxis(np.empty(shape), axis, -1).shape, bool)
    flat = runs.reshape(-1, m)
    for i in range(flat.shape[0]):
        flat[i, rng.choice(m, rng.integers(0, n + 1), replace=False)] = True
    return np.moveaxis(runs, -1, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,n,m,axis", [((64, 48), 2, 4, -1), ((64, 48), 2, 4, 0), ((6, 8, 8), 1, 8, 2),
                                            ((6, 8, 8), 7, 8, 1), ((16, 12), 3, 4, 1), ((40,), 2, 8, 0),
                                            ((4, 32), 5, 16, 1), ((2, 512), 200, 256, 1)])
def test_nm_select_matches_numpy(dtype, shape, n, m, axis):
    rng = np.random.default_rng(abs(hash((shape, n, m, axis))) % 2**32)
    values = (rng.standard_normal(shape) * 5).astype(dtype)
    nonzero = random_nm_mask(rng, shape, n, m, axis)
    stored, positions = _sparse_storage.nm_select(values, nonzero, n, m, axis)
    expected_stored, expected_positions = reference_nm_select(values, nonzero, n, m, axis)
    assert stored.dtype == values.dtype
    np.testing.assert_array_equal(stored, expected_stored)
    np.testing.assert_array_equal(positions, expected_positions)


def test_nm_compact_refuses_bad_input():
    values = np.arange(16, dtype=np.int8)
    with pytest.raises(ValueError, match="run 1 holds 3 non-zeros, more than n = 2"):
        _core.nm_compact(values, np.array([1, 0, 0, 0, 1, 1, 1, 0] + [0] * 8, bool), 2, 4)
    with pytest.raises(ValueError, match="1 <= n < m"):
        _core.nm_compact(values, np.zeros(16, bool), 4, 4)
    with pytest.raises(ValueError, match="keep has 8 entries"):
        _core.nm_compact(values, np.zeros(8, bool), 2, 4)
    with pytest.raises(TypeError):
        _core.nm_compact(values.astype(object), np.zeros(16, bool), 2, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(33, 17), (1,), (0,), (1000,), (4, 5, 6)])
def test_masked_values_match_boolean_indexing(dtype, shape):
    rng = np.random.default_rng(len(shape) * 7 + int(np.prod(shape)))
    values = (rng.standard_normal(shape) * 9).astype(dtype)
    for mask in (rng.random(shape) < 0.3, np.zeros(shape, bool), np.ones(shape, bool)):
        np.testing.assert_array_equal(_sparse_storage.masked_values(values, mask), values[mask])
    if values.size:
        for index in (0, values.size - 1):
            mask = np.zeros(values.size, bool)
            mask[index] = True
            mask = mask.reshape(shape)
            np.testing.assert_array_equal(_sparse_storage.masked_values(values, mask), values[mask])


def test_mask_compact_checks_the_count():
    with pytest.raises(ValueError, match="keeps 2 entries, the output has room for 3"):
        _core.mask_compact(np.arange(4, dtype=np.float32), np.array([1, 0, 1, 0], bool), 3)
    with pytest.raises(ValueError, match="cannot select"):
        _sparse_storage.masked_values(np.zeros((2, 3)), np.zeros((3, 2), bool))


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000, 3_000_001])
def test_relative_error_matches_float64_numpy(size):
    rng = np.random.default_rng(size)
    a = rng.standard_normal(size).astype(np.float32)
    b = a + rng.standard_normal(size).astype(np.float32) * 0.01
    if size == 0:
        assert relative_error_chunked(a, b) == 0.0
        return
    expected = np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(a.astype(np.float64))
    assert relative_error_chunked(a, b) == pytest.approx(expected, rel=1e-12)
    half = a.astype(np.float16)
    expected = np.linalg.norm(half.astype(np.float64) - b) / np.linalg.norm(half.astype(np.float64))
    assert relative_error_chunked(half, b) == pytest.approx(expected, rel=1e-12)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    brain = a.astype(ml_dtypes.bfloat16)
    wide = brain.astype(np.float64)  # exact
    expected = np.linalg.norm(wide - b) / np.linalg.norm(wide)
    assert relative_error_chunked(brain, b) == pytest.approx(expected, rel=1e-12)


def test_relative_error_edge_cases():
    zeros = np.zeros(10, np.float32)
    assert relative_error_chunked(zeros, zeros) == 0.0
    assert relative_error_chunked(zeros, np.ones(10, np.float32)) == np.inf
    sums = _core.squared_error(np.array([3, 4], np.float32), np.array([3, 0], np.float32))
    assert sums == (25.0, 16.0)
    with pytest.raises(ValueError, match="a has 2 entries, b 3"):
        _core.squared_error(np.zeros(2, np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 17, 1000, 2_000_003])
def test_apply_mask_is_numpys_multiply_and_add_bit_for_bit(size):
    rng = np.random.default_rng(size + 1)
    w = rng.standard_normal(size).astype(np.float32)
    keep = rng.random(size) < 0.5
    if size > 20:  # NaN and infinities pruned and kept, signed zeros
        w[:8] = [np.nan, -0.0, np.inf, -np.inf, 0.0, -0.0, np.nan, -np.inf]
        keep[:8] = [False, True, False, True, True, False, True, False]
    expected = np.multiply(w, keep, dtype=np.float32)
    expected += np.float32(0)
    got = _core.apply_mask(w, keep)
    assert got.shape == w.shape and got.dtype == np.float32
    assert got.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()
