"""matmul (the tensor core's SGEMM) against float64 NumPy products."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _threads import per_thread_count

DTYPES = [np.float16, np.float32, np.float64]


def reference(a, b):
    return np.asarray(a, dtype=np.float32).astype(np.float64) @ np.asarray(b, dtype=np.float32).astype(np.float64)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 3), (6, 256, 16), (13, 300, 33), (100, 37, 53),
                                   (1, 513, 1), (257, 1, 129), (130, 260, 4100)])
def test_matmul_shapes_against_float64(m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = sp.matmul(a, b)
    assert c.dtype == np.float32 and c.shape == (m, n)
    np.testing.assert_allclose(c, reference(a, b), rtol=0, atol=1e-5 * np.sqrt(k) * 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F", "strided", "negative"])
def test_matmul_dtypes_and_layouts(dtype, order):
    rng = np.random.default_rng(3)
    base_a = rng.standard_normal((37, 29)).astype(dtype)
    base_b = rng.standard_normal((29, 41)).astype(dtype)
    make = {
        "C": lambda x: x,
        "F": np.asfortranarray,
        "strided": lambda x: np.repeat(x, 2, axis=0)[::2],
        "negative": lambda x: x[::-1, ::-1].copy()[::-1, ::-1],
    }[order]
    a, b = make(base_a), make(base_b)
    before_a, before_b = a.copy(), b.copy()
    np.testing.assert_allclose(sp.matmul(a, b), reference(base_a, base_b), atol=1e-4)
    np.testing.assert_array_equal(a, before_a)
    np.testing.assert_array_equal(b, before_b)


def test_matmul_transposed_views():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((50, 70)).astype(np.float32)
    b = rng.standard_normal((50, 60)).astype(np.float32)
    np.testing.assert_allclose(sp.matmul(a.T, b), reference(a.T, b), atol=1e-4)   # XᵀX-style product
    np.testing.assert_allclose(sp.matmul(b.T, b), reference(b.T, b), atol=1e-4)


def test_matmul_empty_and_closed_form():
    assert sp.matmul(np.zeros((0, 3)), np.zeros((3, 4))).shape == (0, 4)
    assert sp.matmul(np.zeros((2, 3)), np.zeros((3, 0))).shape == (2, 0)
    np.testing.assert_array_equal(sp.matmul(np.zeros((2, 0)), np.zeros((0, 5))), np.zeros((2, 5)))
    np.testing.assert_array_equal(sp.matmul(np.eye(3), np.arange(9.0).reshape(3, 3)), np.arange(9.0).reshape(3, 3))
    np.testing.assert_array_equal(sp.matmul([[1.0, 2.0]], [[3.0], [4.0]]), [[11.0]])


@pytest.mark.parametrize("m,k,n", [(300, 400, 500), (3100, 600, 150)])
def test_matmul_threads_give_the_same_result(m, k, n):
    # A packed (C wider than 128 columns). 300 rows: workers share each packed B block, split by
    # row blocks; 3100 rows (>= 1024 per worker): each worker takes a slice of C's rows and packs
    # its own B. Either way every element sums the same depth blocks in the same order.
    rng = np.random.default_rng(m)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    one, two, three = per_thread_count(lambda: sp.matmul(a, b), (1, 2, 3))
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_allclose(one, reference(a, b), rtol=0, atol=1e-5 * np.sqrt(k) * 4)
    # A in Fortran order is passed transposed, so a worker's slice of C's rows starts at a
    # column of the stored A (the row-slice path once offset it by rows: wrong products at 2 threads).
    a_columns = np.asfortranarray(a)
    one_t, two_t = per_thread_count(lambda: sp.matmul(a_columns, b), (1, 2))
    np.testing.assert_array_equal(one_t, two_t)
    np.testing.assert_allclose(two_t, reference(a, b), rtol=0, atol=1e-5 * np.sqrt(k) * 4)


@pytest.mark.parametrize("m,n", [(1003, 64), (1000, 70), (61, 128)])
def test_matmul_thin_product_threads_give_the_same_result(m, n):
    # C at most 128 columns wide (a weight times a block of activations): A is read in place
    # and two threads each take a slice of C's rows over the whole depth (k = 700 spans three
    # depth blocks); the row tiles match one thread's, so the result is bit-identical.
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, 700)).astype(np.float32)
    b = rng.standard_normal((700, n)).astype(np.float32)
    one, two, three = per_thread_count(lambda: sp.matmul(a, b), (1, 2, 3))
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)
    np.testing.assert_allclose(two, reference(a, b), rtol=0, atol=1e-5 * np.sqrt(700) * 4)


def test_matmul_bad_input():
    with pytest.raises(ValueError, match="inner dimensions"):
        sp.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        sp.matmul(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        sp.matmul(np.ones((2, 3)), np.ones((3, 2, 1)))
    with pytest.raises(TypeError, match="floating"):
        sp.matmul(np.ones((2, 2), dtype=np.int32), np.ones((2, 2)))
    with pytest.raises(TypeError, match="floating"):
        sp.matmul(np.ones((2, 2)), np.ones((2, 2), dtype=np.complex128))
