"""Structured masks large enough for the streamed mask writer (>= 2 MiB) and the four-plane float32 column
norms, against the float64 NumPy oracle, at 1 and 2 workers (issue 18, stream7)."""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

import swiftprune as sp

import _reference_pruning as ref
from _threads import per_thread_count


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("norm", [1, 2])
def test_large_structured_masks_match_the_float64_oracle(axis, norm):
    # 3 x 1027 x 701 = 2.16 MB of mask: above the streaming threshold, an odd total (a tail under 32 bytes),
    # inner runs of 701 * 1027 (axis 0), 701 (axis 1) and 1 (axis 2: the column-norm planes, 701 wide,
    # 3081 planes: neither a multiple of 8 nor of 4).
    w = np.random.default_rng(40 + axis).standard_normal((3, 1027, 701)).astype(np.float32)
    expected = ref.structured(w.astype(np.float64), 0.4, axis, norm)
    for mask in per_thread_count(lambda: sp.structured_mask(w, 0.4, axis=axis, norm=norm)):
        np.testing.assert_array_equal(mask, expected)


def test_large_structured_mask_of_an_offset_view():
    # A view one element into a buffer: the weights are read unaligned; the mask starts wherever NumPy puts it.
    base = np.random.default_rng(44).standard_normal(2049 * 1100 + 1).astype(np.float32)
    w = base[1:].reshape(2049, 1100)
    for axis in (0, 1):
        expected = ref.structured(w.astype(np.float64), 0.5, axis, 2)
        for mask in per_thread_count(lambda: sp.structured_mask(w, 0.5, axis=axis)):
            np.testing.assert_array_equal(mask, expected)


def test_column_norm_ties_prune_the_lower_index():
    # Equal column norms (each column a permutation of the same small integers: every sum exact): the
    # lower index is pruned first, whatever the four-plane blocking.
    rng = np.random.default_rng(45)
    values = rng.integers(-8, 9, 1030).astype(np.float32)
    w = np.stack([rng.permutation(values) for _ in range(12)], axis=1)  # 1030 x 12, every column norm equal
    w[:, 5] *= 0.5
    mask = sp.structured_mask(w, 0.5, axis=1)
    np.testing.assert_array_equal(mask.all(axis=0), [False] * 5 + [False] + [True] * 6)


def test_streamed_mask_at_every_alignment_writes_exactly_its_bytes():
    # Through the C ABI, into a mask that starts 0..31 bytes past a 32-byte boundary, between guard bytes:
    # the plain head, the streamed middle and the plain tail all run, and nothing outside the mask changes.
    library = ctypes.CDLL(str(Path(sp.__file__).with_name("libswiftprune.so")))
    function = library.sp_structured_mask_f32
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int64,
                         ctypes.c_double, ctypes.c_void_p]
    shape = np.array([1500, 1401], np.int64)  # 2.1 MB of mask: streamed
    w = np.random.default_rng(46).standard_normal(tuple(shape)).astype(np.float32)
    backing = np.empty(w.size + 256, np.uint8)
    start = (-backing.ctypes.data) % 32 + 64
    for axis in (0, 1):
        expected = ref.structured(w.astype(np.float64), 0.5, axis, 2)
        for offset in range(32):
            backing.fill(0xA5)
            mask = backing[start + offset:start + offset + w.size]
            assert mask.ctypes.data % 32 == offset
            assert function(w.ctypes.data, shape.ctypes.data, 2, 0.5, axis, 2.0, mask.ctypes.data) == 0
            np.testing.assert_array_equal(mask.view(bool).reshape(w.shape), expected)
            assert np.all(backing[:start + offset] == 0xA5) and np.all(backing[start + offset + w.size:] == 0xA5)


def test_streamed_mask_in_chunks_dealt_to_several_workers():
    # 2300 x 1401 float32 = 12.9 MB: above the 12 MiB from which structured masks use two workers, so the
    # 3.2 MB mask is written in 256 KiB chunks taken in turn by 2-3 workers (whole at 1). Into a mask 0, 1, 17 and 31
    # bytes past a 32-byte boundary (every chunk then has a plain head and tail) between guard bytes.
    library = ctypes.CDLL(str(Path(sp.__file__).with_name("libswiftprune.so")))
    function = library.sp_structured_mask_f32
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int64,
                         ctypes.c_double, ctypes.c_void_p]
    shape = np.array([2300, 1401], np.int64)
    w = np.random.default_rng(47).standard_normal(tuple(shape)).astype(np.float32)
    assert w.nbytes > 12 << 20
    backing = np.empty(w.size + 256, np.uint8)
    start = (-backing.ctypes.data) % 32 + 64
    for axis in (0, 1):
        expected = ref.structured(w.astype(np.float64), 0.5, axis, 2)
        for offset in (0, 1, 17, 31):
            mask = backing[start + offset:start + offset + w.size]

            def write() -> np.ndarray:
                backing.fill(0xA5)
                assert function(w.ctypes.data, shape.ctypes.data, 2, 0.5, axis, 2.0, mask.ctypes.data) == 0
                assert np.all(backing[:start + offset] == 0xA5) and np.all(backing[start + offset + w.size:] == 0xA5)
                return mask.view(bool).reshape(w.shape).copy()

            for written in per_thread_count(write, counts=(1, 2, 3)):
                np.testing.assert_array_equal(written, expected)
