"""The measured 1-to-2-worker thresholds of the memory-bound kernels (issue 18, round 10: MemoryBoundWorkers.swift):
structured masks from 12 MiB of weights, dequantization from 3 Mi output elements. Just below and just above each
threshold, at 1 and 2 threads, the results are the same bits and equal independent float64/NumPy references."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp

import _reference_pruning as ref
from _reference_quantization import reference_dequantize, reference_quantize
from _threads import per_thread_count

THRESHOLD_ELEMENTS = 3 << 20  # 12 MiB of float32 weights; 3 Mi dequantized floats


@pytest.mark.parametrize("rows", [1535, 1537], ids=["below", "above"])
@pytest.mark.parametrize("axis", [0, 1])
def test_structured_mask_either_side_of_the_threshold(rows: int, axis: int) -> None:
    w = np.random.default_rng(rows + axis).standard_normal((rows, 2048), dtype=np.float32)
    assert (w.size < THRESHOLD_ELEMENTS) == (rows == 1535)
    expected = ref.structured(w.astype(np.float64), 0.5, axis, 2)
    one, two = per_thread_count(lambda: sp.structured_mask(w, 0.5, axis=axis))
    np.testing.assert_array_equal(one, expected)
    np.testing.assert_array_equal(two, expected)


@pytest.mark.parametrize("shape", [(1535, 2049), (1537, 2047)], ids=["below", "above"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_dequantize_either_side_of_the_threshold(shape: tuple[int, int], symmetric: bool) -> None:
    w = np.random.default_rng(shape[0]).standard_normal(shape, dtype=np.float32)
    assert (w.size < THRESHOLD_ELEMENTS) == (shape[0] == 1535)
    q = sp.quantize(w, 8, symmetric=symmetric, axis=0)
    zero = np.zeros((shape[0], 1), np.int64) if q.zero_point is None else np.asarray(q.zero_point).reshape(-1, 1)
    expected = reference_dequantize(q.values.astype(np.int64), np.asarray(q.scale).reshape(-1, 1), zero, 0, None)
    one, two = per_thread_count(lambda: q.dequantize())
    assert one.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()
    assert two.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()


@pytest.mark.parametrize("axis, group_size, columns", [(0, None, 2047), (1, None, 2047), (0, 128, 2176)])
def test_quantize_and_dequantize_chunks_dealt_to_several_workers(axis: int, group_size: int | None,
                                                                 columns: int) -> None:
    # 1537 x 2047 (or 2176 = 17 groups of 128) = 3.1-3.3 Mi elements: about 8 chunks per worker taken in turn
    # by 2-3 workers (one range at 1), with groups (rows, columns, groups of 128) cut by the chunk boundaries.
    # Every worker count must give the integers of the NumPy minmax formulas and the float32 bits of the
    # NumPy dequantization formula.
    w = np.random.default_rng(axis + 7).standard_normal((1537, columns), dtype=np.float32)
    expected_values, scale, zero = reference_quantize(w, 8, False, axis, group_size)
    q = sp.quantize(w, 8, symmetric=False, axis=axis, group_size=group_size)
    expected = reference_dequantize(q.values.astype(np.int64), np.asarray(q.scale), np.asarray(q.zero_point),
                                    axis, group_size)
    for values in per_thread_count(lambda: sp.quantize(w, 8, symmetric=False, axis=axis, group_size=group_size).values,
                                   counts=(1, 2, 3)):
        np.testing.assert_array_equal(values, expected_values)
    for out in per_thread_count(lambda: q.dequantize(), counts=(1, 2, 3)):
        assert out.view(np.uint32).tobytes() == expected.view(np.uint32).tobytes()
