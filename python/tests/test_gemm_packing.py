"""The float32 GEMM's packing paths (issue 18, round 7) against float64 NumPy.

Round 7 packs A six rows by eight depth steps at a time (an in-register
transpose), packs a transposed B (a Fortran-ordered ``b``) by 8 x 8
transposes, copies B rows by vectors and zeroes each C tile in the pass that
first writes it. These shapes reach each path with ragged edges: depths that
are not a multiple of 8 or of the 256-deep block, row counts that are not a
multiple of the 6-row tile, column counts above the 128 up to which A is
read in place, and both memory orders of each operand.
"""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp

SHAPES = [
    (7, 9, 140),      # one partial six-row panel, a depth of one 8-step group plus one
    (50, 300, 150),   # two depth blocks (256 + 44), a partial last panel and B panel
    (13, 263, 129),   # one column past the in-place-A limit
    (96, 17, 200),    # depth below one block, 8-step groups plus a remainder of one
]


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("order_a", ["C", "F"])
@pytest.mark.parametrize("order_b", ["C", "F"])
def test_matmul_matches_float64(m, k, n, order_a, order_b):
    rng = np.random.default_rng(m * 1000 + k + n)
    a = np.asarray(rng.standard_normal((m, k), dtype=np.float32), order=order_a)
    b = np.asarray(rng.standard_normal((k, n), dtype=np.float32), order=order_b)
    got = sp.matmul(a, b)
    expected = _reference(a, b)
    # float32 sums of k products of unit normals: error well under 1e-6 * k * max|term| terms.
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(got - expected) <= 2e-7 * k * scale + 1e-6)


def test_every_element_written_once_per_call():
    # A result full of the same product twice: no tile is skipped or added twice
    # (the in-tile zeroing replaced a separate zeroing pass over C).
    rng = np.random.default_rng(7)
    a = rng.standard_normal((61, 263), dtype=np.float32)
    b = rng.standard_normal((263, 200), dtype=np.float32)
    first = sp.matmul(a, b)
    second = sp.matmul(a, b)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, _reference(a, b), rtol=0, atol=2e-4)


def _products_at_one_and_two_threads(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sp.matmul(a, b)`` on one worker and on two, restoring the thread count."""
    before = sp.get_num_threads()
    try:
        sp.set_num_threads(1)
        one = sp.matmul(a, b)
        sp.set_num_threads(2)
        return one, sp.matmul(a, b)
    finally:
        sp.set_num_threads(before)


@pytest.mark.parametrize("order_b", ["C", "F"])
def test_row_slices_equal_at_one_and_two_threads(order_b):
    # 2100 rows, 200 columns: packed A split into row slices at 2 threads, each
    # worker packing its own B; every element's sum keeps its order.
    rng = np.random.default_rng(11)
    a = rng.standard_normal((2100, 300), dtype=np.float32)
    b = np.asarray(rng.standard_normal((300, 200), dtype=np.float32), order=order_b)
    one, two = _products_at_one_and_two_threads(a, b)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, _reference(a, b), rtol=0, atol=3e-4)


@pytest.mark.parametrize("m,k,n", [
    (2100, 600, 2100),  # packed A: B blocks of 256 + 256 + 88 deep, 2048 + 52 wide, a partial last panel
    (301, 530, 100),    # A read in place (at most 128 columns): 256 + 256 + 18 deep, a partial panel
])
def test_shared_packed_b_equal_at_one_and_two_threads(m, k, n):
    # At 2 threads the workers take row slices of C and read one copy of B packed
    # for the whole call (every depth and column block); each element's sum runs
    # over the same blocks in the same order as on one worker: identical results.
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    one, two = _products_at_one_and_two_threads(a, b)
    np.testing.assert_array_equal(one, two)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(two - _reference(a, b)) <= 2e-7 * k * scale + 1e-6)
