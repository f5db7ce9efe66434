"""magnitude_mask / prune_magnitude against an independent NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _threads import run_in_python_threads
from _reference_pruning_core import reference_magnitude_mask

DTYPES = [np.float16, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (4, 3, 2, 5), (300, 257)])
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_exact_against_reference(dtype, shape, sparsity):
    rng = np.random.default_rng(hash((shape, sparsity)) % 2**32)
    w = rng.standard_normal(shape).astype(dtype)
    mask = sp.magnitude_mask(w, sparsity)
    assert mask.dtype == np.bool_ and mask.shape == w.shape
    np.testing.assert_array_equal(mask, reference_magnitude_mask(w, sparsity))
    assert (~mask).sum() == round(sparsity * w.size)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_prune_lower_flat_index_first(dtype):
    w = np.array([[1, -1, 2], [1, 0.5, -1]], dtype=dtype)
    mask = sp.magnitude_mask(w, 0.5)  # k = 3: 0.5, then the first two of the four |1|s
    np.testing.assert_array_equal(mask, [[False, False, True], [True, False, True]])


def test_many_ties_and_large_input():
    rng = np.random.default_rng(5)
    w = rng.integers(-8, 9, size=(1000, 701)).astype(np.float32) / 4
    for sparsity in (0.1, 0.37, 0.5, 0.999):
        np.testing.assert_array_equal(sp.magnitude_mask(w, sparsity), reference_magnitude_mask(w, sparsity))


def test_rounding_is_pythons_round():
    w = np.arange(1, 6, dtype=np.float32)  # 0.5 * 5 = 2.5 -> round() gives 2
    assert (~sp.magnitude_mask(w, 0.5)).sum() == 2
    w = np.arange(1, 8, dtype=np.float32)  # 3.5 -> 4
    assert (~sp.magnitude_mask(w, 0.5)).sum() == 4


@pytest.mark.parametrize("order", ["F", "strided", "negative"])
def test_layouts(order):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((40, 60)).astype(np.float32)
    if order == "F":
        w = np.asfortranarray(base)
    elif order == "strided":
        w = base[::2, ::3]
    else:
        w = base[::-1, ::-2]
    assert not w.flags.c_contiguous
    np.testing.assert_array_equal(sp.magnitude_mask(w, 0.6), reference_magnitude_mask(np.ascontiguousarray(w), 0.6))


def test_input_not_modified():
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        w = rng.standard_normal((50, 20)).astype(dtype)
        before = w.copy()
        sp.magnitude_mask(w, 0.5)
        sp.prune_magnitude(w, 0.5)
        np.testing.assert_array_equal(w, before)


def test_prune_magnitude():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((30, 17))
    pruned = sp.prune_magnitude(w, 0.7)
    assert pruned.dtype == np.float32 and pruned.shape == w.shape
    expected = np.where(reference_magnitude_mask(w, 0.7), w, 0).astype(np.float32)
    np.testing.assert_array_equal(pruned, expected)


def test_lists_and_scalars_are_accepted():
    np.testing.assert_array_equal(sp.magnitude_mask([3.0, -1.0, 2.0], 1 / 3), [True, False, True])
    assert sp.magnitude_mask(np.float32(2.0), 1.0).shape == ()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_raise_value_error(bad, dtype):
    w = np.ones(10, dtype=dtype)
    w[3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.magnitude_mask(w, 0.5)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.magnitude_mask(w, 0.0)


@pytest.mark.parametrize("sparsity", [-0.01, 1.01, float("nan"), float("inf")])
def test_bad_sparsity_value(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        sp.magnitude_mask(np.ones(4, np.float32), sparsity)


@pytest.mark.parametrize("sparsity", ["0.5", None, True, [0.5]])
def test_bad_sparsity_type(sparsity):
    with pytest.raises(TypeError, match="sparsity"):
        sp.magnitude_mask(np.ones(4, np.float32), sparsity)


@pytest.mark.parametrize("w", [np.arange(4), np.ones(3, dtype=bool), np.ones(2, dtype=complex), ["a", "b"]])
def test_non_float_input_raises_type_error(w):
    with pytest.raises(TypeError, match="floating-point"):
        sp.magnitude_mask(w, 0.5)


def test_two_python_threads_run_concurrently():
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(300_000).astype(np.float32) for _ in range(4)]
    expected = [reference_magnitude_mask(a, 0.3) for a in arrays]

    def work(i: int) -> np.ndarray:
        for _ in range(5):
            mask = sp.magnitude_mask(arrays[i], 0.3)
        return mask

    for result, reference in zip(run_in_python_threads(work), expected):
        np.testing.assert_array_equal(result, reference)


_WRITER_SCRIPT = """
import sys
import numpy as np
import swiftprune as sp
sys.path.insert(0, sys.argv[1])
from _reference_pruning_core import reference_magnitude_mask
rng = np.random.default_rng(3)
gauss = rng.standard_normal(400_007).astype(np.float32)  # sampled: a bracket of ~28k keys, bucketed
coarse = (rng.integers(-40, 41, size=100_003) / 8).astype(np.float32)  # ties at every threshold
for threads in (1, 2):
    sp.set_num_threads(threads)
    for w in (gauss, coarse, gauss[:50_003].astype(np.float64)):
        for sparsity in (0.0001, 0.3, 0.5, 0.9, 0.9999):
            assert np.array_equal(sp.magnitude_mask(w, sparsity), reference_magnitude_mask(w, sparsity)), sparsity
    # Global pruning: odd-sized tensors of different scales (mask segments at every
    # alignment, worker ranges crossing tensors) against the concatenation's mask.
    parts = [gauss[:100_003] * 3, coarse[:7], gauss[100_003:350_004], coarse[7:]]
    for sparsity in (0.3, 0.5, 0.97):
        expected = reference_magnitude_mask(np.concatenate(parts), sparsity)
        got = np.concatenate([m.ravel() for m in sp.global_magnitude_masks(parts, sparsity)])
        assert np.array_equal(got, expected), sparsity
print("ok")
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_large_input_with_ties_at_the_threshold(threads):
    # At this size the one-pass (sampled) writer runs (from 2^15 entries): its provisional mask bytes are
    # corrected only between the sample's estimate and the exact threshold, and equal
    # magnitudes at the threshold are split in flat order across both workers' records.
    rng = np.random.default_rng(8)
    w = rng.standard_normal((1 << 22) + 13).astype(np.float32)
    median = np.float32(np.median(np.abs(w)))
    w[rng.choice(w.size, 5000, replace=False)] = median * rng.choice([-1, 1], 5000)
    previous = sp.get_num_threads()
    sp.set_num_threads(threads)
    try:
        for sparsity in (0.5, 0.5 - 1000 / w.size, 0.9):
            np.testing.assert_array_equal(sp.magnitude_mask(w, sparsity), reference_magnitude_mask(w, sparsity))
    finally:
        sp.set_num_threads(previous)


@pytest.mark.parametrize("writer", ["sampled", "two-pass", "three-pass"])
def test_each_forced_writer_against_reference(writer):
    # Each of the three mask writers (the size normally picks one) on float32/float64,
    # Gaussian and heavily tied data, lengths not a multiple of the vector width.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, SWIFTPRUNE_MASK_WRITER=writer)
    run = subprocess.run([sys.executable, "-c", _WRITER_SCRIPT, str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


# MagnitudeMaskWriter.chosen's cut-over (Sources/SwiftPrune/Pruning/MagnitudeMaskWriter.swift):
# below it the three-pass writer runs, from it the sampled one.
_WRITER_CUT_OVER = 1 << 15


@pytest.mark.parametrize("size", [_WRITER_CUT_OVER - 1, _WRITER_CUT_OVER])
def test_writers_either_side_of_the_cut_over(size):
    # The writer the size picks, on each side of the cut, against the NumPy reference:
    # Gaussian values with a block of copies of the median magnitude (ties at the threshold).
    rng = np.random.default_rng(size)
    w = rng.standard_normal(size).astype(np.float32)
    w[rng.choice(size, 3000, replace=False)] = np.float32(np.median(np.abs(w))) * rng.choice([-1, 1], 3000)
    for sparsity in (0.5, 0.5 - 700 / size, 0.95, 0.0001):
        np.testing.assert_array_equal(sp.magnitude_mask(w, sparsity), reference_magnitude_mask(w, sparsity))
