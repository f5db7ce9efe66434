"""Sparse (CSR, N:M) and int8 kernels against dense NumPy/SciPy references."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _threads import per_thread_count, run_in_python_threads
from _reference_kernels import dense_product, nm_prune, quantize_rows, quantized_product

SHAPES = [(1, 1, 1), (3, 17, 1), (17, 3, 5), (1, 1000, 3), (17, 100, 70), (33, 40, 129), (3, 16, 1000)]


def random_sparse(rows: int, columns: int, density: float, seed: int = 0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, columns)).astype(dtype)
    return np.where(rng.random((rows, columns)) < density, w, 0).astype(dtype)


def assert_product_close(y: np.ndarray, reference: np.ndarray, depth: int) -> None:
    assert y.dtype == np.float32
    assert y.shape == reference.shape
    scale = max(1.0, float(np.abs(reference).max(initial=0)))
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-6 * scale * max(1, depth) ** 0.5 * 4)


# ---- CSR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows, columns, batch", SHAPES)
def test_csr_matmul_matches_dense(rows: int, columns: int, batch: int) -> None:
    w = random_sparse(rows, columns, 0.3, seed=rows * 31 + columns)
    x = np.random.default_rng(1).standard_normal((columns, batch)).astype(np.float32)
    csr = sp.CSRMatrix.from_dense(w)
    assert_product_close(csr.matmul(x), dense_product(w, x), columns)
    assert_product_close(csr @ x, dense_product(w, x), columns)


def test_csr_vector_gives_vector() -> None:
    w = random_sparse(17, 33, 0.5)
    x = np.random.default_rng(2).standard_normal(33).astype(np.float32)
    y = sp.CSRMatrix.from_dense(w).matmul(x)
    assert y.shape == (17,)
    assert_product_close(y, dense_product(w, x), 33)


@pytest.mark.parametrize("columns, bad", [(33, 33), (33, 65535), (70000, -1), (70000, 70000), (70000, 2**31 - 1)])
def test_csr_matvec_index_corrupted_after_construction_raises(columns: int, bad: int) -> None:
    # The one-vector kernels (16- and 32-bit indices) check indices inside their loops (clamped
    # before any load): an index edited in place after validation is a clear error, never a wild read.
    rng = np.random.default_rng(5)
    indptr = np.arange(0, 64 * 20 + 1, 20)
    indices = np.concatenate([np.sort(rng.choice(columns, size=20, replace=False)) for _ in range(64)])
    csr = sp.CSRMatrix(rng.standard_normal(indices.size), indices, indptr, (64, columns))
    csr.indices[csr.nnz // 2] = bad
    with pytest.raises(ValueError, match="out of range"):
        csr.matmul(np.ones(columns, np.float32))


def test_csr_matvec_long_rows_match_float64() -> None:
    # Rows longer than the kernel's 8-wide unrolling, with a ragged tail, against float64.
    rng = np.random.default_rng(7)
    w = random_sparse(300, 4099, 0.1, seed=11)
    x = rng.standard_normal(4099).astype(np.float32)
    y = sp.CSRMatrix.from_dense(w).matmul(x)
    reference = w.astype(np.float64) @ x.astype(np.float64)
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-5 * np.abs(w).sum(axis=1).max())


@pytest.mark.parametrize("columns, bad", [(60, 60), (60, 65535), (70000, 70000), (70000, -1)])
@pytest.mark.parametrize("position", [17, 35, 50])
def test_csr_matvec_bad_index_caught_in_every_loop(columns: int, bad: int, position: int) -> None:
    # One row of 53 nonzeros. 32-bit indices: entries 0-31 go through the 32-entry loop, 32-47
    # through the 8-entry loop, 48-52 through the scalar tail; 16-bit: 0-31, 32-47 (one
    # 16-index step), 48-52. Each step checks its indices before it loads from x (a negative
    # 32-bit index counts as huge): a bad index in each loop is caught, never read.
    indptr = np.array([0, 0, 53, 53])
    csr = sp.CSRMatrix(np.arange(1, 54, dtype=np.float32), np.arange(53), indptr, (3, columns))
    assert csr.indices.dtype == (np.uint16 if columns <= 65536 else np.int32)
    csr.indices[position] = bad
    with pytest.raises(ValueError, match=f"column index {bad} out of range"):
        csr.matmul(np.ones(columns, np.float32))


@pytest.mark.parametrize("columns", [60, 65536, 70000])
def test_csr_matvec_last_column_in_every_loop_is_in_range(columns: int) -> None:
    # The largest valid index (columns - 1; 65535 for the widest 16-bit matrix) at positions
    # handled by each loop of the row kernels passes their range checks: float64 reference.
    rng = np.random.default_rng(21)
    indptr = np.array([0, 53, 53 + 53])
    indices = np.concatenate([np.arange(53), rng.integers(0, columns, 53)])
    indices[[17, 35, 50, 53 + 0, 53 + 31, 53 + 47, 53 + 52]] = columns - 1
    data = rng.standard_normal(106).astype(np.float32)
    x = rng.standard_normal(columns).astype(np.float32)
    csr = sp.CSRMatrix(data, indices, indptr, (2, columns))
    assert csr.indices.dtype == (np.uint16 if columns <= 65536 else np.int32)
    terms = data.astype(np.float64) * x[indices].astype(np.float64)
    reference = np.array([terms[:53].sum(), terms[53:].sum()])
    np.testing.assert_allclose(csr.matmul(x), reference, rtol=0, atol=1e-6 * np.abs(terms).sum())


@pytest.mark.parametrize("columns", [128, 65536, 70000])
def test_csr_matvec_every_row_length_matches_float64(columns: int) -> None:
    # Row lengths 0..99 cover every mix of the 32-, 16-, 8- and 1-entry loops of both index
    # widths; 65536 columns is the widest 16-bit matrix (its last column is index 65535).
    rng = np.random.default_rng(12)
    lengths = np.arange(100)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.sort(rng.choice(columns, size=n, replace=False)) for n in lengths])
    indices[-1] = columns - 1
    data = rng.standard_normal(indices.size).astype(np.float32)
    x = rng.standard_normal(columns).astype(np.float32)
    csr = sp.CSRMatrix(data, indices, indptr, (100, columns))
    assert csr.indices.dtype == (np.uint16 if columns <= 65536 else np.int32)
    y = csr.matmul(x)
    terms = data.astype(np.float64) * x[indices].astype(np.float64)
    reference = np.array([terms[indptr[r]:indptr[r + 1]].sum() for r in range(100)])
    bound = np.array([np.abs(terms[indptr[r]:indptr[r + 1]]).sum() for r in range(100)])
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-6 * bound.max())
    # The 16-bit kernel equals the 32-bit one up to summation order (both checked above);
    # wider products widen 16-bit indices once and give the same result as 32-bit ones.
    wide = sp.CSRMatrix(data, indices, indptr, (100, columns))
    wide.indices = wide.indices.astype(np.int32)
    x2 = rng.standard_normal((columns, 9)).astype(np.float32)
    np.testing.assert_array_equal(csr.matmul(x2), wide.matmul(x2))


@pytest.mark.parametrize("order", ["sorted", "one_row_shuffled", "duplicate"])
def test_csr_16_and_32_bit_indices_give_identical_blocked_products(order: str) -> None:
    # Sparse rows over 2600 columns (the L2-blocked path when every row is ascending), empty
    # rows between; one unsorted row or one duplicate index must turn the blocking off for
    # both index widths alike. Float64 reference from the arrays, 16-bit == 32-bit bit for bit.
    rng = np.random.default_rng(15)
    lengths = rng.integers(0, 260, size=150)
    lengths[::7] = 0
    rows = [np.sort(rng.choice(2600, size=n, replace=False)) for n in lengths]
    target = int(np.argmax(lengths))
    if order == "one_row_shuffled":
        rows[target] = rng.permutation(rows[target])
    elif order == "duplicate":
        rows[target][5] = rows[target][4]
    indices = np.concatenate(rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.standard_normal(indices.size).astype(np.float32)
    x = rng.standard_normal((2600, 64)).astype(np.float32)
    narrow = sp.CSRMatrix(data, indices, indptr, (150, 2600))
    wide = sp.CSRMatrix(data, indices, indptr, (150, 2600))
    wide.indices = wide.indices.astype(np.int32)
    assert narrow.indices.dtype == np.uint16
    y = narrow.matmul(x)
    np.testing.assert_array_equal(y, wide.matmul(x))
    dense = np.zeros((150, 2600))
    np.add.at(dense, (np.repeat(np.arange(150), lengths), indices), data.astype(np.float64))
    reference = dense @ x.astype(np.float64)
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-6 * (np.abs(dense) @ np.abs(x)).max())


def test_csr_index_dtype_is_the_narrowest_that_fits() -> None:
    for columns, dtype in ((1, np.uint16), (65536, np.uint16), (65537, np.int32)):
        w = np.zeros((2, columns), np.float32)
        w[1, -1] = 3.0
        csr = sp.CSRMatrix.from_dense(w)
        assert csr.indices.dtype == dtype and int(csr.indices[0]) == columns - 1
        assert csr.nbytes == csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
        np.testing.assert_array_equal(csr.to_dense(), w)
        x = np.arange(columns, dtype=np.float32)
        np.testing.assert_array_equal(csr.matmul(x), [0.0, 3.0 * (columns - 1)])


@pytest.mark.parametrize("batch", [64, 70, 20])
def test_csr_matmul_sparse_rows_in_l2_blocks_match_float64(batch: int) -> None:
    # Sparse rows and more columns than two L2 blocks of x (512 rows of a 64-wide tile,
    # 1024 of a 32-wide one): the product runs over x block by block, rows in chunks.
    w = random_sparse(150, 2600, 0.05, seed=13)
    x = np.random.default_rng(14).standard_normal((2600, batch)).astype(np.float32)
    y = sp.CSRMatrix.from_dense(w).matmul(x)
    reference = w.astype(np.float64) @ x.astype(np.float64)
    np.testing.assert_allclose(y, reference, rtol=0, atol=1e-6 * (np.abs(w) @ np.abs(x)).max())


def test_csr_arrays_equal_scipy() -> None:
    scipy_sparse = pytest.importorskip("scipy.sparse")
    w = random_sparse(40, 70, 0.2, seed=3)
    ours = sp.CSRMatrix.from_dense(w)
    theirs = scipy_sparse.csr_matrix(w)
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)
    # 70 columns: 16-bit indices (the narrowest dtype that holds every column, see test_csr_index_dtype).
    assert ours.indptr.dtype == np.int64 and ours.indices.dtype == np.uint16 and ours.data.dtype == np.float32
    assert ours.nnz == theirs.nnz
    assert ours.nbytes == ours.data.nbytes + ours.indices.nbytes + ours.indptr.nbytes
    x = np.random.default_rng(4).standard_normal((70, 9)).astype(np.float32)
    np.testing.assert_allclose(ours.matmul(x), theirs @ x, rtol=1e-5, atol=1e-5)


def test_csr_from_scipy_arrays_with_unsorted_indices_and_duplicates() -> None:
    # Row 0: columns 3, 1, 3 (duplicate, summed); row 1 empty; row 2: column 0.
    data = np.array([1.0, 2.0, 4.0, -1.5])
    indices = np.array([3, 1, 3, 0])
    indptr = np.array([0, 3, 3, 4], dtype=np.int32)
    csr = sp.CSRMatrix(data, indices, indptr, (3, 4))
    dense = np.array([[0, 2, 0, 5], [0, 0, 0, 0], [-1.5, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(csr.to_dense(), dense)
    x = np.arange(4 * 70, dtype=np.float32).reshape(4, 70) / 7
    assert_product_close(csr.matmul(x), dense_product(dense, x), 4)


def test_csr_round_trip_exact_and_dtypes() -> None:
    for dtype in (np.float16, np.float32, np.float64):
        w = random_sparse(9, 13, 0.4, seed=5, dtype=dtype)
        csr = sp.CSRMatrix.from_dense(w)
        np.testing.assert_array_equal(csr.to_dense(), w.astype(np.float32))
        x = np.random.default_rng(6).standard_normal((13, 20)).astype(dtype)
        assert_product_close(csr.matmul(x), dense_product(w.astype(np.float32), x.astype(np.float32)), 13)


def test_csr_layouts_and_inputs_not_modified() -> None:
    w = np.asfortranarray(random_sparse(30, 50, 0.3, seed=7))
    x = np.random.default_rng(8).standard_normal((100, 50)).astype(np.float32).T[:, ::2]  # (50, 50) strided
    w_copy, x_copy = w.copy(), x.copy()
    csr = sp.CSRMatrix.from_dense(w[:, :])
    assert_product_close(csr.matmul(x), dense_product(w, x), 50)
    np.testing.assert_array_equal(w, w_copy)
    np.testing.assert_array_equal(x, x_copy)


def test_csr_empty_and_zero() -> None:
    for rows, columns, batch in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)]:
        csr = sp.CSRMatrix.from_dense(np.zeros((rows, columns)))
        assert csr.nnz == 0
        y = csr.matmul(np.ones((columns, batch)))
        assert y.shape == (rows, batch) and not y.any()
        assert csr.to_dense().shape == (rows, columns)
    csr = sp.CSRMatrix.from_dense(np.zeros((3, 4)))
    np.testing.assert_array_equal(csr.matmul(np.ones((4, 70))), np.zeros((3, 70)))


def test_csr_nan_in_x_propagates_like_dense() -> None:
    csr = sp.CSRMatrix.from_dense(np.eye(3))
    x = np.ones((3, 2), dtype=np.float32)
    x[1, 0] = np.nan
    y = csr.matmul(x)
    assert np.isnan(y[1, 0]) and np.isfinite(y[0, 0]) and np.isfinite(y[:, 1]).all()


@pytest.mark.parametrize("bad, error", [
    (np.array([[1.0, np.nan]]), ValueError),
    (np.array([[1.0, np.inf]]), ValueError),
    (np.ones((2, 2, 2)), ValueError),
    (np.ones(3), ValueError),
    (np.ones((2, 2), dtype=np.int32), TypeError),
    (np.ones((2, 2), dtype=np.complex64), TypeError),
])
def test_csr_from_dense_rejects(bad: np.ndarray, error: type) -> None:
    with pytest.raises(error):
        sp.CSRMatrix.from_dense(bad)


def test_csr_matmul_rejects_bad_x() -> None:
    csr = sp.CSRMatrix.from_dense(np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        csr.matmul(np.ones((4, 2)))
    with pytest.raises(ValueError):
        csr.matmul(np.ones((3, 2, 2)))
    with pytest.raises(TypeError):
        csr.matmul(np.ones((3, 2), dtype=np.int64))


@pytest.mark.parametrize("data, indices, indptr, shape, error", [
    ([1.0], [3], [0, 1], (1, 3), ValueError),           # column out of range
    ([1.0], [-1], [0, 1], (1, 3), ValueError),
    ([1.0], [0], [0, 1, 0], (2, 3), ValueError),        # decreasing indptr
    ([1.0], [0], [1, 1], (1, 3), ValueError),           # indptr[0] != 0
    ([1.0], [0], [0, 1], (2, 3), ValueError),           # wrong indptr length
    ([1.0, 2.0], [0], [0, 2], (1, 3), ValueError),      # length mismatch
    ([np.nan], [0], [0, 1], (1, 3), ValueError),
    ([1.0], [0.5], [0, 1], (1, 3), TypeError),
    ([1], [0], [0, 1], (1, 3), TypeError),
    ([1.0], [0], [0, 1], (1,), TypeError),
])
def test_csr_constructor_rejects(data, indices, indptr, shape, error) -> None:
    with pytest.raises(error):
        sp.CSRMatrix(np.asarray(data), np.asarray(indices), np.asarray(indptr), shape)


def test_core_csr_matmul_checks_raw_arrays() -> None:
    # The extension and Swift validate on their own: a bad index never reaches the kernel.
    with pytest.raises(ValueError, match="out of range"):
        sp._core.csr_matmul(np.array([0, 1], dtype=np.int64), np.array([7], dtype=np.int32),
                            np.ones(1, dtype=np.float32), 1, 3, np.ones((3, 70), dtype=np.float32))
    with pytest.raises(TypeError):
        sp._core.csr_matmul(np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64),
                            np.ones(1, dtype=np.float32), 1, 3, np.ones((3, 2), dtype=np.float32))


# ---- N:M ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (2, 8), (4, 4), (3, 5), (1, 1)])
@pytest.mark.parametrize("rows, batch", [(1, 1), (3, 17), (17, 1000), (5, 64)])
def test_nm_matches_reference(n: int, m: int, rows: int, batch: int) -> None:
    columns = 4 * m
    rng = np.random.default_rng(n * 100 + m)
    w = rng.standard_normal((rows, columns)).astype(np.float32)
    x = rng.standard_normal((columns, batch)).astype(np.float32)
    nm = sp.NMSparseMatrix.from_dense(w, n=n, m=m)
    pruned = nm_prune(w, n, m)
    np.testing.assert_array_equal(nm.to_dense(), pruned)
    assert nm.values.shape == (rows, columns // m * n) and nm.indices.dtype == np.uint8
    assert_product_close(nm.matmul(x), dense_product(pruned, x), columns)


@pytest.mark.parametrize("n, m", [(2, 4), (3, 5)])
def test_nm_many_row_chunks_and_depth_blocks(n: int, m: int) -> None:
    # 150 rows = chunks of 64, 64 and 22 (75 + 75 rows on two threads: 64 + 11 each); a depth
    # of 2000 spans many x blocks (the last one partial), so each row's slice of the next row /
    # next block is prefetched along the way.
    rng = np.random.default_rng(n + m)
    w = rng.standard_normal((150, 400 * m)).astype(np.float32)
    x = rng.standard_normal((400 * m, 40)).astype(np.float32)
    nm = sp.NMSparseMatrix.from_dense(w, n=n, m=m)
    assert_product_close(nm.matmul(x), dense_product(nm_prune(w, n, m), x), 400 * m)


def test_nm_ties_keep_lower_index_and_exact_on_nm_input() -> None:
    w = np.array([[1.0, -1.0, 1.0, 0.5, 0, 0, 3, 0]], dtype=np.float32)
    nm = sp.NMSparseMatrix.from_dense(w)
    np.testing.assert_array_equal(nm.to_dense(), [[1, -1, 0, 0, 0, 0, 3, 0]])
    np.testing.assert_array_equal(nm.indices, [[0, 1, 0, 2]])
    already = nm_prune(np.random.default_rng(0).standard_normal((8, 16)), 2, 4)
    np.testing.assert_array_equal(sp.NMSparseMatrix.from_dense(already).to_dense(), already)


def test_nm_agrees_with_nm_mask_when_available() -> None:
    if not hasattr(sp, "nm_mask"):
        pytest.skip("nm_mask not in this build")
    w = np.random.default_rng(9).standard_normal((6, 24)).astype(np.float32)
    np.testing.assert_array_equal(sp.NMSparseMatrix.from_dense(w).to_dense() != 0, sp.nm_mask(w, 2, 4))


def test_nm_vector_layouts_dtypes_not_modified() -> None:
    rng = np.random.default_rng(10)
    for dtype in (np.float16, np.float32, np.float64):
        w = np.asfortranarray(rng.standard_normal((7, 12)).astype(dtype))
        x = rng.standard_normal(12).astype(dtype)
        w_copy, x_copy = w.copy(), x.copy()
        nm = sp.NMSparseMatrix.from_dense(w)
        y = nm.matmul(x)
        assert y.shape == (7,)
        assert_product_close(y, dense_product(nm_prune(w, 2, 4), x.astype(np.float32)), 12)
        np.testing.assert_array_equal(w, w_copy)
        np.testing.assert_array_equal(x, x_copy)


def test_nm_empty() -> None:
    nm = sp.NMSparseMatrix.from_dense(np.zeros((0, 8)))
    assert nm.matmul(np.ones((8, 3))).shape == (0, 3)
    nm = sp.NMSparseMatrix.from_dense(np.zeros((3, 0)))
    np.testing.assert_array_equal(nm.matmul(np.ones((0, 3))), np.zeros((3, 3)))
    np.testing.assert_array_equal(sp.NMSparseMatrix.from_dense(np.ones((2, 4))).matmul(np.ones((4, 0))), np.zeros((2, 0)))


@pytest.mark.parametrize("kwargs, error", [
    (dict(w=np.ones((2, 6))), ValueError),
    (dict(w=np.ones((2, 8)), n=5, m=4), ValueError),
    (dict(w=np.ones((2, 8)), n=0), ValueError),
    (dict(w=np.ones((2, 512)), n=2, m=256), ValueError),
    (dict(w=np.ones((2, 8)), n=2.0), TypeError),
    (dict(w=np.ones((2, 8)), m=True), TypeError),
    (dict(w=np.ones((2, 8), dtype=np.int8)), TypeError),
    (dict(w=np.array([[np.nan, 0, 0, 0]])), ValueError),
    (dict(w=np.ones(8)), ValueError),
])
def test_nm_from_dense_rejects(kwargs, error) -> None:
    with pytest.raises(error):
        sp.NMSparseMatrix.from_dense(**kwargs)


def test_nm_constructor_and_raw_indices_checked() -> None:
    with pytest.raises(ValueError):
        sp.NMSparseMatrix(np.ones((1, 2)), np.array([[0, 4]]), (1, 4))
    with pytest.raises(ValueError):
        sp.NMSparseMatrix(np.ones((1, 3)), np.array([[0, 1, 2]]), (1, 4))
    with pytest.raises(ValueError, match=">= m"):
        sp._core.nm_matmul(np.ones((1, 2), dtype=np.float32), np.array([[0, 9]], dtype=np.uint8), 1, 4, 2, 4,
                           np.ones((4, 70), dtype=np.float32))
    nm = sp.NMSparseMatrix(np.array([[2.0, 3.0]]), np.array([[1, 3]]), (1, 4))
    np.testing.assert_array_equal(nm.to_dense(), [[0, 2, 0, 3]])


# ---- int8 --------------------------------------------------------------------------------


@pytest.mark.parametrize("rows, columns, batch", SHAPES + [(5, 4, 64), (4, 7, 16)])
def test_quantized_matmul_exact_on_quantized_activations(rows: int, columns: int, batch: int) -> None:
    rng = np.random.default_rng(rows + columns + batch)
    values, scale = quantize_rows(rng.standard_normal((rows, columns)))
    x = rng.standard_normal((columns, batch)).astype(np.float32)
    y = sp.quantized_matmul(values, scale, x)
    reference = quantized_product(values, scale, x)
    assert y.dtype == np.float32 and y.shape == (rows, batch)
    np.testing.assert_allclose(y, reference, rtol=2e-6, atol=1e-6 * float(np.abs(reference).max(initial=1)))


def test_quantized_matmul_error_against_float() -> None:
    rng = np.random.default_rng(11)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    x = rng.standard_normal((256, 32)).astype(np.float32)
    values, scale = quantize_rows(w)
    exact = (values.astype(np.float32) * scale[:, None]) @ x
    y = sp.quantized_matmul(values, scale, x)
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 0.03
    # Non-negative activations (post-ReLU) use the whole 7-bit range: smaller error.
    relu = np.maximum(x, 0)
    y = sp.quantized_matmul(values, scale, relu)
    exact = (values.astype(np.float32) * scale[:, None]) @ relu
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 0.02


def test_quantized_matmul_zero_point_and_uint8() -> None:
    rng = np.random.default_rng(12)
    values = rng.integers(-128, 128, (9, 37)).astype(np.int8)
    zero_point = rng.integers(-20, 20, 9)
    scale = rng.random(9).astype(np.float32) + 0.1
    x = rng.standard_normal((37, 5)).astype(np.float32)
    np.testing.assert_allclose(sp.quantized_matmul(values, scale, x, zero_point=zero_point),
                               quantized_product(values, scale, x, zero_point), rtol=2e-6, atol=1e-5)
    unsigned = rng.integers(0, 256, (9, 37)).astype(np.uint8)
    zp = rng.integers(0, 256, 9)
    np.testing.assert_allclose(sp.quantized_matmul(unsigned, scale, x, zero_point=zp),
                               quantized_product(unsigned, scale, x, zp), rtol=2e-6, atol=1e-5)


def test_quantized_matmul_vector_scalar_scale_layouts() -> None:
    rng = np.random.default_rng(13)
    values = np.asfortranarray(rng.integers(-127, 128, (6, 10)).astype(np.int8))
    x = rng.standard_normal(10)
    values_copy, x_copy = values.copy(), x.copy()
    y = sp.quantized_matmul(values, 0.5, x)
    assert y.shape == (6,)
    np.testing.assert_allclose(y, quantized_product(np.ascontiguousarray(values), np.full(6, 0.5), x.astype(np.float32)),
                               rtol=2e-6, atol=1e-5)
    np.testing.assert_array_equal(values, values_copy)
    np.testing.assert_array_equal(x, x_copy)
    y2 = sp.quantized_matmul(values, np.full((6, 1), 0.5), x.astype(np.float16).astype(np.float64))
    assert y2.shape == (6,)


def test_quantized_matmul_empty_and_zero_columns() -> None:
    assert sp.quantized_matmul(np.zeros((0, 4), np.int8), np.zeros(0), np.ones((4, 3))).shape == (0, 3)
    np.testing.assert_array_equal(sp.quantized_matmul(np.zeros((2, 0), np.int8), np.ones(2), np.ones((0, 3))), 0)
    np.testing.assert_array_equal(sp.quantized_matmul(np.ones((2, 4), np.int8), np.ones(2), np.zeros((4, 3))), 0)


def test_quantized_matmul_awkward_activation_blocks() -> None:
    # Full 16-column blocks (the vectorized quantizer) holding a constant column (s = 1), an
    # all-zero column, signed zeros, a column of only negative values and one of huge range,
    # next to a partial block; depth 4k + 3 puts three depths in the tail.
    rng = np.random.default_rng(21)
    columns = 4 * 37 + 3
    x = rng.standard_normal((columns, 35)).astype(np.float32)
    x[:, 0] = 2.5
    x[:, 1] = 0
    x[::2, 2] = -0.0
    x[:, 3] = -np.abs(x[:, 3]) - 1
    x[:, 17] *= 1e30
    x[5, 18] = 1e-40  # a subnormal
    values, scale = quantize_rows(rng.standard_normal((13, columns)))
    np.testing.assert_allclose(sp.quantized_matmul(values, scale, x), quantized_product(values, scale, x),
                               rtol=2e-6, atol=1e-6 * float(np.abs(quantized_product(values, scale, x)).max()))


@pytest.mark.parametrize("columns, batch", [(256, 48), (64, 16), (68, 33), (4 * 16384 + 4, 16)])
def test_quantized_matmul_int32_finish_equals_int64_path(columns: int, batch: int) -> None:
    # Symmetric weights (no zero point) with a depth of whole groups of four, at most one
    # chunk deep, finish from the kernel's Int32 sums; an explicit zero point of 0 takes the
    # Int64 path. Same integers, same rounding: the two must agree bit for bit, and with the
    # float64 oracle. The last shape is one group deeper than a chunk (Int64 both ways).
    rng = np.random.default_rng(columns + batch)
    values = rng.integers(-128, 128, (9, columns)).astype(np.int8)
    scale = (rng.random(9) + 0.5).astype(np.float32)
    x = rng.standard_normal((columns, batch)).astype(np.float32)
    symmetric = sp.quantized_matmul(values, scale, x)
    explicit = sp.quantized_matmul(values, scale, x, zero_point=np.zeros(9, np.int64))
    np.testing.assert_array_equal(symmetric, explicit)
    reference = quantized_product(values, scale, x)
    np.testing.assert_allclose(symmetric, reference, rtol=2e-6, atol=1e-6 * float(np.abs(reference).max()))


def test_quantized_matmul_int32_finish_at_its_largest_sum() -> None:
    # The largest magnitude the Int32 finish must hold: weights all -128 against codes all 127
    # (x constant and positive: z = 0) over the deepest one-chunk depth, 65536:
    # -128 * 127 * 65536 = -1 065 353 216, and a second row at +127.
    depth = 4 * 16384
    values = np.full((2, depth), -128, np.int8)
    values[1] = 127
    x = np.full((depth, 16), 3.0, np.float32)
    y = sp.quantized_matmul(values, np.ones(2, np.float32), x)
    reference = quantized_product(values, np.ones(2, np.float32), x)
    assert reference[0, 0] == np.float32(-128 * 127 * depth) * np.float32(3.0 / 127)
    np.testing.assert_array_equal(y, reference)


@pytest.mark.parametrize("rows, batch", [(1000, 48), (3000, 3)])
def test_quantized_matmul_thread_counts_agree_across_chunks(rows: int, batch: int) -> None:
    # Row blocks (48 columns: 4-row tiles; 3 columns: single rows) dealt in chunks from a shared
    # counter at 2 and 3 workers: every output is one exact sum whoever takes it, so the bits
    # are those of one thread.
    rng = np.random.default_rng(22)
    values, scale = quantize_rows(rng.standard_normal((rows, 256)))
    x = rng.standard_normal((256, batch)).astype(np.float32)
    single, double, triple = per_thread_count(lambda: sp.quantized_matmul(values, scale, x), (1, 2, 3))
    np.testing.assert_array_equal(single, double)
    np.testing.assert_array_equal(single, triple)
    reference = quantized_product(values, scale, x)
    np.testing.assert_allclose(single, reference, rtol=2e-6, atol=1e-6 * float(np.abs(reference).max()))


@pytest.mark.parametrize("args, kwargs, error", [
    ((np.ones((2, 3)), np.ones(2), np.ones((3, 1))), {}, TypeError),
    ((np.ones((2, 3), np.int16), np.ones(2), np.ones((3, 1))), {}, TypeError),
    ((np.ones(3, np.int8), np.ones(1), np.ones((3, 1))), {}, ValueError),
    ((np.ones((2, 3), np.int8), np.ones(3), np.ones((3, 1))), {}, ValueError),
    ((np.ones((2, 3), np.int8), np.array([1.0, np.nan]), np.ones((3, 1))), {}, ValueError),
    ((np.ones((2, 3), np.int8), np.ones(2), np.ones((4, 1))), {}, ValueError),
    ((np.ones((2, 3), np.int8), np.ones(2), np.array([[1.0], [np.inf], [0]])), {}, ValueError),
    ((np.ones((2, 3), np.int8), np.ones(2), np.ones((3, 1), np.int32)), {}, TypeError),
    ((np.ones((2, 3), np.int8), np.ones(2), np.ones((3, 1))), dict(zero_point=np.ones(2) * 0.5), TypeError),
    ((np.ones((2, 3), np.int8), np.ones(2), np.ones((3, 1))), dict(zero_point=np.ones(3, np.int32)), ValueError),
])
def test_quantized_matmul_rejects(args, kwargs, error) -> None:
    with pytest.raises(error):
        sp.quantized_matmul(*args, **kwargs)


# ---- threads -----------------------------------------------------------------------------


def test_thread_counts_agree_and_concurrent_calls_are_safe() -> None:
    rng = np.random.default_rng(14)
    w = random_sparse(300, 256, 0.2, seed=15)
    x = rng.standard_normal((256, 70)).astype(np.float32)
    values, scale = quantize_rows(rng.standard_normal((300, 256)))
    csr, nm = sp.CSRMatrix.from_dense(w), sp.NMSparseMatrix.from_dense(rng.standard_normal((300, 256)))

    def products() -> list:
        return [csr.matmul(x), nm.matmul(x), sp.quantized_matmul(values, scale, x)]

    single, double, triple = per_thread_count(products, (1, 2, 3))
    for a, b, c in zip(single, double, triple):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    for result in run_in_python_threads(lambda _: products()):
        for a, b in zip(result, single):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("columns", [4096, 70_000])
def test_csr_matvec_thread_counts_agree_for_both_index_widths(columns: int) -> None:
    # 240k nonzeros: three workers at 3 threads (one per ~64k). Rows are split by nonzero
    # count and each row's sum is one worker's, so every thread count gives the same bits;
    # uint16 indices up to 65536 columns, int32 past it (one driver, two row kernels).
    rng = np.random.default_rng(columns)
    rows, per_row = 800, 300
    indices = np.sort(rng.choice(columns, size=(rows, per_row), replace=True), axis=1).ravel()
    data = rng.standard_normal(rows * per_row).astype(np.float32)
    indptr = np.arange(0, rows * per_row + 1, per_row)
    csr = sp.CSRMatrix(data, indices, indptr, (rows, columns))
    assert csr.indices.dtype == (np.uint16 if columns <= 65536 else np.int32)
    v = rng.standard_normal(columns).astype(np.float32)
    results = per_thread_count(lambda: csr.matmul(v), (1, 2, 3))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    expected = np.add.reduceat(data.astype(np.float64) * v[indices], indptr[:-1])
    np.testing.assert_allclose(results[0], expected, rtol=0, atol=1e-4 * np.sqrt(per_row))


# ---- deep matrices: x is processed in several blocks of rows ------------------------------


def test_deep_matrices_cross_block_boundaries() -> None:
    rng = np.random.default_rng(16)
    depth, batch = 9000, 70  # deeper than one block of x (8192 rows at 64 columns)
    w = random_sparse(3, depth, 0.05, seed=17)
    x = rng.standard_normal((depth, batch)).astype(np.float32)
    csr = sp.CSRMatrix.from_dense(w)
    assert_product_close(csr.matmul(x), dense_product(w, x), depth)
    # The same matrix with every row's entries reversed (unsorted): same product.
    reversed_indices = np.concatenate([csr.indices[a:b][::-1] for a, b in zip(csr.indptr[:-1], csr.indptr[1:])])
    reversed_data = np.concatenate([csr.data[a:b][::-1] for a, b in zip(csr.indptr[:-1], csr.indptr[1:])])
    unsorted = sp.CSRMatrix(reversed_data, reversed_indices, csr.indptr, csr.shape)
    assert_product_close(unsorted.matmul(x), dense_product(w, x), depth)
    dense = rng.standard_normal((3, depth)).astype(np.float32)
    nm = sp.NMSparseMatrix.from_dense(dense)
    assert_product_close(nm.matmul(x), dense_product(nm_prune(dense, 2, 4), x), depth)


def test_out_of_range_index_in_a_long_row_is_caught() -> None:
    for bad in (-1, 20, 2**31 - 1):
        indices = np.arange(12, dtype=np.int32)
        indices[5] = bad
        with pytest.raises(ValueError, match="out of range"):
            sp._core.csr_matmul(np.array([0, 12], dtype=np.int64), indices, np.ones(12, dtype=np.float32), 1, 20,
                                np.ones((20, 64), dtype=np.float32))
        with pytest.raises(ValueError, match="out of range"):
            sp._core.csr_to_dense(np.array([0, 12], dtype=np.int64), indices, np.ones(12, dtype=np.float32), 1, 20)


def test_repeated_calls_do_not_leak() -> None:
    import gc
    import tracemalloc

    rng = np.random.default_rng(18)
    w = random_sparse(64, 128, 0.3, seed=19)
    x = rng.standard_normal((128, 32)).astype(np.float32)
    values, scale = quantize_rows(rng.standard_normal((64, 128)))

    def round_trip() -> None:
        csr = sp.CSRMatrix.from_dense(w)
        csr.matmul(x), csr.to_dense()
        nm = sp.NMSparseMatrix.from_dense(w)
        nm.matmul(x), nm.to_dense()
        sp.quantized_matmul(values, scale, x)
        for bad in (lambda: sp.CSRMatrix.from_dense(np.full((2, 2), np.nan)),
                    lambda: sp.quantized_matmul(values, scale, np.full((128, 2), np.inf))):
            with pytest.raises(ValueError):
                bad()

    round_trip()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            round_trip()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 200_000, f"memory grew by {growth} bytes over 50 rounds"
