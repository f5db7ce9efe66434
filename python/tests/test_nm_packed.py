"""The packed layout of NMSparseMatrix products (NMPackedLayout in the Swift core).

References are independent of the code under test: NumPy float64 products of
the dense matrix, a NumPy transcription of the documented layout, and the
row-major kernel (`_core.nm_matmul`) whose sums the packed product repeats.
"""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _core

from _threads import per_thread_count

ROW_CHUNK, BLOCK_COLUMNS = 128, 64


def numpy_packed_layout(values: np.ndarray, indices: np.ndarray, n: int, m: int) -> np.ndarray:
    """The layout as documented: per chunk of 128 rows, per block of columns, per row,
    the block's values (float32) then its indices padded with zeros to 4 bytes."""
    rows, per_row = values.shape
    columns = per_row // n * m
    depth = max(m, BLOCK_COLUMNS // m * m)
    parts = []
    for c0 in range(0, rows, ROW_CHUNK):
        for k0 in range(0, columns, depth):
            t0, t1 = k0 // m * n, min(columns, k0 + depth) // m * n
            for row in range(c0, min(rows, c0 + ROW_CHUNK)):
                parts.append(values[row, t0:t1].astype("<f4").tobytes())
                index_bytes = indices[row, t0:t1].tobytes()
                parts.append(index_bytes + bytes(-len(index_bytes) % 4))
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def product_error(ours: np.ndarray, dense: np.ndarray, x: np.ndarray) -> float:
    reference = dense.astype(np.float64) @ x.astype(np.float64)
    scale = np.abs(dense).astype(np.float64) @ np.abs(x).astype(np.float64)
    return float(np.max(np.abs(ours - reference) / np.maximum(scale, 1e-30)))


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (2, 8), (4, 8), (3, 5)])
def test_layout_matches_numpy_transcription(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 10 + m)
    w = rng.standard_normal((130, 40 * m)).astype(np.float32)
    nm = sp.NMSparseMatrix.from_dense(w, n=n, m=m)
    packed = _core.nm_pack(nm.values, nm.indices, *nm.shape, n, m)
    np.testing.assert_array_equal(packed, numpy_packed_layout(nm.values, nm.indices, n, m))
    assert not packed.flags.writeable


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (2, 8), (3, 5)])
@pytest.mark.parametrize("rows, columns, batch", [(1, 8, 8), (65, 260, 64), (200, 520, 13), (70, 1040, 130), (129, 128, 65)])
def test_product_matches_float64_reference(n: int, m: int, rows: int, columns: int, batch: int) -> None:
    columns = columns // m * m
    rng = np.random.default_rng(rows + columns + batch)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((rows, columns)).astype(np.float32), n=n, m=m)
    x = rng.standard_normal((columns, batch)).astype(np.float32)
    ours = nm.matmul(x)
    assert nm._packed is not None and ours.dtype == np.float32 and ours.shape == (rows, batch)
    # Each output: at most `columns` float32 roundings of a running sum.
    assert product_error(ours, nm.to_dense(), x) <= columns * 2.0**-24


@pytest.mark.parametrize("batch", [64, 128, 192])
def test_bit_identical_to_row_major_kernel_for_64_column_tiles(batch: int) -> None:
    rng = np.random.default_rng(batch)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((300, 1024)).astype(np.float32))
    x = rng.standard_normal((1024, batch)).astype(np.float32)
    row_major = _core.nm_matmul(nm.values, nm.indices, 300, 1024, 2, 4, x)
    np.testing.assert_array_equal(nm.matmul(x), row_major)


def test_two_threads_same_result_as_one() -> None:
    rng = np.random.default_rng(7)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((640, 512)).astype(np.float32))
    x = rng.standard_normal((512, 64)).astype(np.float32)
    one, two = per_thread_count(lambda: nm.matmul(x))
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("rows, batch", [(1000, 64), (1000, 70), (2000, 129)])
def test_chunks_dealt_to_several_workers_give_the_one_worker_bits(rows: int, batch: int) -> None:
    # The 128-row chunks are taken in turn from a shared counter: which worker runs a chunk varies
    # from call to call. Rows not a multiple of 128 (a short last chunk), a second 64-column tile,
    # 1 to 5 workers, each call repeated: every result must be the one-worker bits, within float32
    # rounding of the float64 product, and for full 64-column tiles equal to the row-major kernel.
    rng = np.random.default_rng(rows + batch)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((rows, 1024)).astype(np.float32))
    x = rng.standard_normal((1024, batch)).astype(np.float32)
    results = per_thread_count(lambda: [nm.matmul(x) for _ in range(3)], counts=(1, 2, 3, 5))
    for result in (r for per_count in results for r in per_count):
        np.testing.assert_array_equal(result, results[0][0])
    assert product_error(results[0][0], nm.to_dense(), x) <= 1024 * 2.0**-24
    if batch % 64 == 0:
        np.testing.assert_array_equal(results[0][0], _core.nm_matmul(nm.values, nm.indices, rows, 1024, 2, 4, x))


def test_thin_x_and_vectors_use_row_major_arrays() -> None:
    rng = np.random.default_rng(3)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((20, 16)).astype(np.float32))
    x = rng.standard_normal((16, 7)).astype(np.float32)
    assert product_error(nm.matmul(x), nm.to_dense(), x) <= 16 * 2.0**-24
    assert product_error(nm.matmul(x[:, 0]), nm.to_dense(), x[:, 0]) <= 16 * 2.0**-24
    assert nm._packed is None


def test_arrays_read_only_and_not_shared_with_the_caller() -> None:
    values = np.array([[2.0, 3.0]], np.float32)
    indices = np.array([[1, 3]], np.uint8)
    nm = sp.NMSparseMatrix(values, indices, (1, 4))
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    before = nm.matmul(x)
    values[0, 0] = 100.0  # the caller's array, not the matrix's
    np.testing.assert_array_equal(nm.matmul(x), before)
    np.testing.assert_array_equal(before[0], 2.0 * x[1] + 3.0 * x[3])
    with pytest.raises(ValueError, match="read-only"):
        nm.values[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        sp.NMSparseMatrix.from_dense(np.ones((2, 4))).indices[0, 0] = 3


def test_corrupt_or_mis_sized_layout_raises() -> None:
    nm = sp.NMSparseMatrix.from_dense(np.arange(1, 9, dtype=np.float32).reshape(1, 8))
    packed = _core.nm_pack(nm.values, nm.indices, 1, 8, 2, 4).copy()
    x = np.ones((8, 8), np.float32)
    bad = packed.copy()
    bad[16] = 4  # the first index byte: after the record's four float32 values
    with pytest.raises(ValueError, match=">= m"):
        _core.nm_packed_matmul(bad, 1, 8, 2, 4, x)
    with pytest.raises(ValueError, match="bytes"):
        _core.nm_packed_matmul(packed[:-4], 1, 8, 2, 4, x)
    with pytest.raises(ValueError, match="rows"):
        _core.nm_packed_matmul(packed, 1, 8, 2, 4, np.ones((4, 8), np.float32))
    with pytest.raises(ValueError, match=">= m"):
        _core.nm_pack(nm.values, np.array([[0, 1, 0, 4]], np.uint8), 1, 8, 2, 4)


@pytest.mark.parametrize("columns", [256, 260, 68])
def test_corrupt_index_in_the_64_column_2_4_kernel_raises(columns: int) -> None:
    # The 2:4 kernel for 64-column tiles checks indices as it decodes them, four groups to a
    # 64-bit word and the rest one group at a time (columns 260 and 68 leave a one-group tail).
    rng = np.random.default_rng(columns)
    nm = sp.NMSparseMatrix.from_dense(rng.standard_normal((3, columns)).astype(np.float32))
    packed = _core.nm_pack(nm.values, nm.indices, 3, columns, 2, 4)
    x = rng.standard_normal((columns, 64)).astype(np.float32)
    np.testing.assert_array_equal(_core.nm_packed_matmul(packed, 3, columns, 2, 4, x),
                                  _core.nm_matmul(nm.values, nm.indices, 3, columns, 2, 4, x))
    layout = numpy_packed_layout(nm.values, nm.indices, 2, 4)
    np.testing.assert_array_equal(packed, layout)
    # Row 1's last index of the last block: in the tail when the block holds a number of groups
    # that is not a multiple of 4, else in the last 64-bit word; then row 2's first index.
    last_block = (columns - 1) // BLOCK_COLUMNS * BLOCK_COLUMNS
    count = (columns - last_block) // 4 * 2
    record = count * 4 + -(-count // 4) * 4  # the indices padded to 4 bytes
    first_record_of_block = sum((min(columns, k0 + BLOCK_COLUMNS) - k0) // 4 * 2 * 5 for k0 in range(0, last_block, 64)) * 3
    for byte in (first_record_of_block + record + count * 4 + count - 1, first_record_of_block + 2 * record + count * 4):
        for bad_index in (4, 255):
            corrupt = layout.copy()
            corrupt[byte] = bad_index
            with pytest.raises(ValueError, match=">= m"):
                _core.nm_packed_matmul(corrupt, 3, columns, 2, 4, x)


def test_empty_shapes() -> None:
    assert sp.NMSparseMatrix.from_dense(np.zeros((0, 8))).matmul(np.ones((8, 16))).shape == (0, 16)
    np.testing.assert_array_equal(sp.NMSparseMatrix.from_dense(np.ones((3, 0))).matmul(np.ones((0, 16))),
                                  np.zeros((3, 16)))
    np.testing.assert_array_equal(sp.NMSparseMatrix.from_dense(np.ones((2, 4))).matmul(np.ones((4, 0))), np.zeros((2, 0)))


@pytest.mark.parametrize("call", ["nm_matmul", "nm_pack", "nm_to_dense"])
@pytest.mark.parametrize("short", ["values", "indices", "both"])
def test_arrays_shorter_than_the_shape_raise(call: str, short: str) -> None:
    # The C ABI reads rows * cols / m * n elements of each array without a length; before the
    # check, a 1-element array here read 8 MiB past its end (a crash or garbage, never an error).
    rows, columns = 4096, 4096
    count = rows * columns // 2
    values = np.ones(1 if short != "indices" else count, np.float32)
    indices = np.zeros(1 if short != "values" else count, np.uint8)
    args = (values, indices, rows, columns, 2, 4)
    functions = {"nm_matmul": lambda: _core.nm_matmul(*args, np.ones((columns, 8), np.float32)),
                 "nm_pack": lambda: _core.nm_pack(*args),
                 "nm_to_dense": lambda: _core.nm_to_dense(*args)}
    with pytest.raises(ValueError, match=f"must hold rows \\* cols / m \\* n = {count} elements"):
        functions[call]()


@pytest.mark.parametrize("call", ["nm_matmul", "nm_pack", "nm_to_dense"])
def test_longer_arrays_and_bad_layouts_raise(call: str) -> None:
    values, indices = np.ones(9, np.float32), np.zeros(9, np.uint8)  # 2:4 of (2, 16) holds 16
    x = np.ones((16, 8), np.float32)
    functions = {"nm_matmul": lambda *a: _core.nm_matmul(*a, x), "nm_pack": _core.nm_pack, "nm_to_dense": _core.nm_to_dense}
    with pytest.raises(ValueError, match="= 16 elements, got 9 and 9"):
        functions[call](values, indices, 2, 16, 2, 4)
    with pytest.raises(ValueError, match="multiple of m"):
        functions[call](values, indices, 2, 18, 2, 4)
    with pytest.raises(ValueError, match="n must be in"):
        functions[call](values, indices, 2, 16, 0, 4)
    with pytest.raises(ValueError, match="negative"):
        functions[call](values, indices, -2, 16, 2, 4)
