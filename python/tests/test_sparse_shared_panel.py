"""The sparse products' x panel: one copy of x shared by every worker (CSR and 2:4).

When x has 8 to 64 columns and fits in one 16 MiB panel, the blocked sparse
products copy it once per call for all workers instead of once per worker.
Every thread count must give the same bits, and the products must match the
float64 dense reference, for sorted CSR rows (blocked over the depth),
unsorted ones (one block) and N:M rows.
"""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_kernels import dense_product, nm_prune
from _threads import num_threads, per_thread_count


def _close(y: np.ndarray, reference: np.ndarray, depth: int) -> None:
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(y, reference, rtol=0, atol=4e-6 * scale * depth**0.5)


@pytest.mark.parametrize("batch", [8, 33, 64])
def test_shared_panel_products_match_float64_at_every_thread_count(batch: int) -> None:
    rng = np.random.default_rng(batch)
    rows, depth = 301, 3000  # depth spans several L1 and L2 blocks of x; 301 rows leave partial chunks
    x = rng.standard_normal((depth, batch)).astype(np.float32)
    w = rng.standard_normal((rows, depth)).astype(np.float32)
    sparse = np.where(rng.random((rows, depth)) < 0.1, w, 0).astype(np.float32)
    csr = sp.CSRMatrix.from_dense(sparse)
    # The same entries with each row reversed: unsorted rows take the unblocked path.
    starts, ends = csr.indptr[:-1], csr.indptr[1:]
    unsorted = sp.CSRMatrix(np.concatenate([csr.data[a:b][::-1] for a, b in zip(starts, ends)]),
                            np.concatenate([csr.indices[a:b][::-1] for a, b in zip(starts, ends)]),
                            csr.indptr, csr.shape)
    nm = sp.NMSparseMatrix.from_dense(w, n=2, m=4)
    cases = [(csr, sparse), (unsorted, sparse), (nm, nm_prune(w, 2, 4))]
    for matrix, dense in cases:
        results = per_thread_count(lambda: matrix.matmul(x), (1, 2, 3))
        for other in results[1:]:
            np.testing.assert_array_equal(results[0], other)
        _close(results[0], dense_product(dense, x), depth)


def test_x_not_modified_and_non_contiguous_x_accepted() -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((70, 512)).astype(np.float32)
    wide = rng.standard_normal((512, 128)).astype(np.float32)
    x = wide[:, ::2]  # a strided view of 64 columns
    before = x.copy()
    nm = sp.NMSparseMatrix.from_dense(w)
    csr = sp.CSRMatrix.from_dense(np.where(rng.random(w.shape) < 0.2, w, 0).astype(np.float32))
    _close(nm.matmul(x), dense_product(nm.to_dense(), before), 512)
    _close(csr.matmul(x), dense_product(csr.to_dense(), before), 512)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("row_count", [3, 40])
def test_few_heavy_rows_match_float64_at_every_thread_count(row_count: int) -> None:
    # The workers' row ranges are cut by nonzero count: with 3 rows (and 3 workers) a range holds one row,
    # with 40 rows of very unequal length the ranges hold very different row counts.
    rng = np.random.default_rng(row_count)
    depth = 4096
    x = rng.standard_normal((depth, 64)).astype(np.float32)
    density = np.linspace(0.02, 0.9, row_count)[:, None] ** 2
    w = np.where(rng.random((row_count, depth)) < density, rng.standard_normal((row_count, depth)), 0).astype(np.float32)
    csr = sp.CSRMatrix.from_dense(w)
    results = per_thread_count(lambda: csr.matmul(x), (1, 2, 3))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    _close(results[0], dense_product(w, x), depth)


@pytest.mark.parametrize("index_dtype", [np.int32, np.uint16])
def test_out_of_range_index_in_one_worker_is_caught_at_every_thread_count(index_dtype: type) -> None:
    # The raw arrays through the extension (the Python class checks indices itself): one bad index in a
    # late row must fail the call whichever worker's rows hold it.
    rng = np.random.default_rng(11)
    rows, depth = 600, 2048
    csr = sp.CSRMatrix.from_dense(np.where(rng.random((rows, depth)) < 0.1, 1.0, 0.0).astype(np.float32))
    indices = csr.indices.astype(index_dtype)
    indices[csr.indptr[rows - 3] + 1] = depth  # one past the last column
    x = rng.standard_normal((depth, 64)).astype(np.float32)
    for count in (1, 2, 3):
        with num_threads(count), pytest.raises(ValueError, match="out of range"):
            sp._core.csr_matmul(csr.indptr, indices, csr.data, rows, depth, x)
