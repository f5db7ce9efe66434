"""Global, N:M, structured, block and random masks against pure-NumPy oracles."""
from __future__ import annotations

import math

import numpy as np
import pytest

import swiftprune as sp

import _reference_pruning as ref
from _threads import num_threads, per_thread_count

DTYPES = [np.float16, np.float32, np.float64]


def layouts(a: np.ndarray):
    """The same values C-contiguous, Fortran-ordered and as a strided view."""
    yield "C", np.ascontiguousarray(a)
    yield "F", np.asfortranarray(a)
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    yield "strided", big[tuple(slice(None, None, 2) for _ in a.shape)]


def as_float32_values(a: np.ndarray) -> np.ndarray:
    """The values the core sees (float16 is widened to float32 exactly)."""
    return a.astype(np.float64)


# ---------------------------------------------------------------- global


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.97, 1.0])
def test_global_matches_concatenated_reference(dtype, sparsity):
    rng = np.random.default_rng(1)
    arrays = [rng.normal(0, s, shape).astype(dtype) for s, shape in [(1, (7, 5)), (0.1, (33,)), (3, (2, 3, 4)), (1, (0, 3))]]
    masks = sp.global_magnitude_masks(arrays, sparsity)
    assert isinstance(masks, list) and len(masks) == 4
    for mask, expected, a in zip(masks, ref.global_magnitude(arrays, sparsity), arrays):
        assert mask.dtype == np.bool_ and mask.shape == a.shape
        np.testing.assert_array_equal(mask, expected)
    total = sum(a.size for a in arrays)
    assert sum(int((~m).sum()) for m in masks) == round(sparsity * total)


def test_global_mapping_keeps_keys_and_order_and_ties_follow_container_order():
    a = np.ones((2, 2), np.float32)
    b = np.ones(3, np.float32)
    masks = sp.global_magnitude_masks({"z": a, "a": b}, 5 / 7)
    assert list(masks) == ["z", "a"]
    # All equal: the first 5 positions of the concatenation are pruned.
    np.testing.assert_array_equal(masks["z"], np.zeros((2, 2), bool))
    np.testing.assert_array_equal(masks["a"], [False, True, True])


def test_global_mixed_dtypes_and_layouts():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 9))
    b = rng.standard_normal((5, 4)).astype(np.float32)
    for _, view in layouts(a):
        masks = sp.global_magnitude_masks([view, b], 0.6)
        for mask, expected in zip(masks, ref.global_magnitude([view, b], 0.6)):
            np.testing.assert_array_equal(mask, expected)


def test_global_one_threshold_prunes_small_layers_more():
    rng = np.random.default_rng(3)
    small, large = rng.normal(0, 0.01, 1000), rng.normal(0, 1, 1000)
    masks = sp.global_magnitude_masks([small, large], 0.5)
    assert (~masks[0]).sum() > 900 and (~masks[1]).sum() < 100


def test_global_empty_containers():
    assert sp.global_magnitude_masks([], 0.5) == []
    assert sp.global_magnitude_masks({}, 0.5) == {}


@pytest.mark.parametrize("bad, error", [
    (([np.ones(3)], 1.5), ValueError),
    (([np.ones(3)], -0.1), ValueError),
    (([np.ones(3)], float("nan")), ValueError),
    (([np.array([1.0, np.nan])], 0.5), ValueError),
    (([np.array([1.0, np.inf], np.float32)], 0.5), ValueError),
    (([np.arange(3)], 0.5), TypeError),
    ((np.ones(3), 0.5), TypeError),
    (("abc", 0.5), TypeError),
    (([np.ones(3)], "0.5"), TypeError),
])
def test_global_bad_input(bad, error):
    with pytest.raises(error):
        sp.global_magnitude_masks(*bad)


def test_global_does_not_modify_inputs():
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((5, 5)), rng.standard_normal(7).astype(np.float32)]
    copies = [a.copy() for a in arrays]
    sp.global_magnitude_masks(arrays, 0.5)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------- N:M


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 4), (1, 2), (2, 8), (5, 8), (3, 40), (30, 80), (1, 65)])
def test_nm_matches_reference_last_axis(dtype, n, m):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 2 * m)).astype(dtype)
    mask = sp.nm_mask(w, n, m)
    np.testing.assert_array_equal(mask, ref.nm(as_float32_values(w), n, m, -1))
    assert (mask.reshape(6, 2, m).sum(-1) == n).all()


# Every (shape, axis) whose axis length is a multiple of m = 4 (the others are
# the error case, tested separately).
NM_AXIS_CASES = [(shape, axis) for shape in [(4, 8, 12), (8, 4, 3), (4, 4, 1)]
                 for axis in [0, 1, 2, -1, -2, -3] if shape[axis] % 4 == 0]


@pytest.mark.parametrize("shape, axis", NM_AXIS_CASES)
def test_nm_any_axis_and_layout(shape, axis):
    rng = np.random.default_rng(6)
    w = rng.standard_normal(shape)
    for _, view in layouts(w):
        np.testing.assert_array_equal(sp.nm_mask(view, 2, 4, axis=axis), ref.nm(view, 2, 4, axis))


@pytest.mark.parametrize("shape, axis, n, m", [((3, 160, 5), 1, 30, 80), ((130, 2), 0, 7, 65), ((2, 130), 1, 64, 65)])
def test_nm_large_groups_with_ties(shape, axis, n, m):
    rng = np.random.default_rng(16)
    w = rng.integers(-3, 4, shape).astype(np.float32)  # many equal magnitudes
    np.testing.assert_array_equal(sp.nm_mask(w, n, m, axis=axis), ref.nm(w, n, m, axis))


@pytest.mark.parametrize("inner", [1, 2, 3, 7, 8, 9])
def test_nm_every_lane_stride_with_ties(inner):
    w = np.random.default_rng(17).integers(-2, 3, (5, 8, inner)).astype(np.float64)
    for n, m in ((1, 4), (2, 4), (3, 8)):
        np.testing.assert_array_equal(sp.nm_mask(w, n, m, axis=1), ref.nm(w, n, m, 1))


def test_nm_ties_keep_the_lower_index():
    w = np.array([[1.0, -1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(sp.nm_mask(w), [[True, True, False, False, True, True, False, False]])
    # Signed zeros are equal magnitudes.
    z = np.array([-0.0, 0.0, -0.0, 0.0])
    np.testing.assert_array_equal(sp.nm_mask(z, 1, 4), [True, False, False, False])


def test_nm_closed_form():
    w = np.array([[0.1, -0.4, 0.3, 0.2], [5, 1, -2, 0]], np.float32)
    np.testing.assert_array_equal(sp.nm_mask(w), [[False, True, True, False], [True, False, True, False]])


def test_nm_empty_and_large_parallel():
    assert sp.nm_mask(np.zeros((0, 8), np.float32)).shape == (0, 8)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((300, 1024)).astype(np.float32)
    mask = sp.nm_mask(w)
    np.testing.assert_array_equal(mask[:5], ref.nm(w[:5], 2, 4, -1))
    groups = np.abs(w).reshape(300, 256, 4)
    kept = np.where(mask.reshape(300, 256, 4), groups, np.inf).min(-1)
    pruned = np.where(mask.reshape(300, 256, 4), -np.inf, groups).max(-1)
    assert (kept >= pruned).all() and (mask.reshape(300, 256, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("kwargs, error", [
    (dict(n=4, m=4), ValueError),
    (dict(n=5, m=4), ValueError),
    (dict(n=0, m=4), ValueError),
    (dict(n=2, m=1), ValueError),
    (dict(axis=2), ValueError),
    (dict(axis=-3), ValueError),
    (dict(n=2, m=3), ValueError),  # 8 % 3 != 0
    (dict(n=2.0), TypeError),
    (dict(axis=0.5), TypeError),
])
def test_nm_bad_arguments(kwargs, error):
    with pytest.raises(error):
        sp.nm_mask(np.ones((2, 8), np.float32), **kwargs)


def test_nm_bad_arrays():
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.nm_mask(np.array([1, 2, np.nan, 4.0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.nm_mask(np.array([[1, 2, 3, np.inf]], np.float32), axis=1)
    with pytest.raises(ValueError, match="scalar"):
        sp.nm_mask(np.float32(1.0))
    with pytest.raises(TypeError):
        sp.nm_mask(np.arange(8))


# ---------------------------------------------------------------- structured


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", [1, 2, math.inf])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_structured_matches_reference(dtype, norm, axis):
    rng = np.random.default_rng(8)
    w = rng.standard_normal((5, 6, 70)).astype(dtype)  # inner 70 >= 64 and < 64 paths
    for amount in (0.0, 0.34, 0.5, 1.0):
        expected = ref.structured(as_float32_values(w), amount, axis, norm)
        np.testing.assert_array_equal(sp.structured_mask(w, amount, axis=axis, norm=norm), expected)


def test_structured_layouts_and_keras_conv_filters():
    rng = np.random.default_rng(9)
    kernel = rng.standard_normal((3, 3, 16, 32))
    for _, view in layouts(kernel):
        mask = sp.structured_mask(view, 0.25, axis=-1)
        np.testing.assert_array_equal(mask, ref.structured(view, 0.25, 3, 2))
        assert (~mask.all(axis=(0, 1, 2))).sum() == 8


def test_structured_ties_prune_the_lower_index_and_closed_form():
    w = np.array([[3.0, 4.0], [0.0, 5.0], [4.0, 3.0], [1.0, 1.0]])
    # L2 norms 5, 5, 5, sqrt 2: prune row 3, then row 0 (lowest index among the ties).
    np.testing.assert_array_equal(sp.structured_mask(w, 0.5, axis=0).all(axis=1), [False, True, True, False])
    # L1 norms 7, 5, 7, 2.
    np.testing.assert_array_equal(sp.structured_mask(w, 0.5, axis=0, norm=1).all(axis=1), [True, False, True, False])
    # inf norms 4, 5, 4, 1.
    np.testing.assert_array_equal(sp.structured_mask(w, 0.5, axis=0, norm="inf").all(axis=1),
                                  [False, True, True, False])


def test_structured_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    rng = np.random.default_rng(10)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    for dim in (0, 1):
        module = torch.nn.Conv2d(6, 8, 3)
        module.weight.data = torch.from_numpy(w.copy())
        prune.ln_structured(module, "weight", amount=0.5, n=2, dim=dim)
        np.testing.assert_array_equal(sp.structured_mask(w, 0.5, axis=dim), module.weight_mask.numpy().astype(bool))


def test_structured_empty_and_1d():
    assert sp.structured_mask(np.zeros((0, 4)), 0.5, axis=1).shape == (0, 4)
    np.testing.assert_array_equal(sp.structured_mask(np.array([3.0, -1.0, 2.0]), 0.34), [True, False, True])


@pytest.mark.parametrize("kwargs, error", [
    (dict(amount=1.1), ValueError),
    (dict(amount=-0.5), ValueError),
    (dict(amount=0.5, axis=2), ValueError),
    (dict(amount=0.5, axis=-3), ValueError),
    (dict(amount=0.5, norm=3), ValueError),
    (dict(amount=0.5, norm="fro"), ValueError),
    (dict(amount=0.5, norm=None), TypeError),
    (dict(amount=0.5, axis="0"), TypeError),
])
def test_structured_bad_arguments(kwargs, error):
    with pytest.raises(error):
        sp.structured_mask(np.ones((3, 4)), **kwargs)


@pytest.mark.parametrize("norm", [1, 2, math.inf])
def test_structured_nan_inf(norm):
    w = np.ones((3, 100), np.float32)
    w[1, 50] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.structured_mask(w, 0.5, axis=0, norm=norm)
    w[1, 50] = -np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.structured_mask(w, 0.5, axis=1, norm=norm)


# ---------------------------------------------------------------- block


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", [(1, 4), (2, 2), (3, 5), (4, 1), (1, 1), (16, 16)])
def test_block_matches_reference_with_edge_blocks(dtype, block):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((10, 13)).astype(dtype)
    for sparsity in (0.0, 0.3, 0.5, 1.0):
        np.testing.assert_array_equal(sp.block_mask(w, sparsity, block), ref.block(as_float32_values(w), sparsity, block))


def test_block_edge_block_scored_on_its_own_entries():
    # 1 x 3 with block (1, 2): blocks [1, 1] (mean 1) and the partial [1.5] (mean 1.5).
    w = np.array([[1.0, 1.0, 1.5]])
    np.testing.assert_array_equal(sp.block_mask(w, 0.5, (1, 2)), [[False, False, True]])
    # Equal means: the lower block index goes first.
    w = np.array([[2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(sp.block_mask(w, 0.5, (1, 2)), [[False, False, True]])


def test_block_layouts_and_count():
    rng = np.random.default_rng(12)
    w = rng.standard_normal((8, 12))
    for _, view in layouts(w):
        mask = sp.block_mask(view, 0.5, (2, 4))
        np.testing.assert_array_equal(mask, ref.block(view, 0.5, (2, 4)))
        assert (~mask).sum() == 6 * 8


@pytest.mark.parametrize("args, error", [
    ((np.ones((3, 4)), 1.5), ValueError),
    ((np.ones((3, 4)), 0.5, (0, 4)), ValueError),
    ((np.ones((3, 4)), 0.5, (1, -1)), ValueError),
    ((np.ones((3, 4)), 0.5, (1, 2, 3)), TypeError),
    ((np.ones((3, 4)), 0.5, 4), TypeError),
    ((np.ones((3, 4, 2)), 0.5), ValueError),
    ((np.ones(4), 0.5), ValueError),
    ((np.array([[1.0, np.nan]]), 0.5), ValueError),
    ((np.ones((3, 4), np.int32), 0.5), TypeError),
])
def test_block_bad_input(args, error):
    with pytest.raises(error):
        sp.block_mask(*args)


def test_block_empty():
    assert sp.block_mask(np.zeros((0, 5)), 0.5).shape == (0, 5)


# ---------------------------------------------------------------- random


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (10, 10), (3, 5, 7)])
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_random_prunes_exactly_k(shape, sparsity):
    w = np.ones(shape, np.float32)
    mask = sp.random_mask(w, sparsity, seed=3)
    assert mask.shape == shape and mask.dtype == np.bool_
    assert (~mask).sum() == round(sparsity * w.size)


def test_random_is_seeded_and_seeds_differ():
    w = np.zeros((50, 40))
    np.testing.assert_array_equal(sp.random_mask(w, 0.5, seed=11), sp.random_mask(w, 0.5, seed=11))
    assert not np.array_equal(sp.random_mask(w, 0.5, seed=11), sp.random_mask(w, 0.5, seed=12))
    sp.random_mask(w, 0.5, seed=2**64 - 1)


@pytest.mark.parametrize("sparsity", [0.25, 0.75])  # both Floyd branches (draw pruned / draw kept)
def test_random_is_uniform_over_positions_and_pairs(sparsity):
    from scipy import stats

    n, trials = 16, 4000
    k = round(sparsity * n)
    counts = np.zeros(n)
    pair = np.zeros((n, n))
    for seed in range(trials):
        pruned = ~sp.random_mask(np.zeros(n), sparsity, seed=seed)
        counts += pruned
        pair += np.outer(pruned, pruned)
    # Every position is pruned with probability k / n: chi-square over positions.
    expected = trials * k / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, n - 1) > 1e-6, (counts, chi2)
    # Every pair is pruned together with probability k (k - 1) / (n (n - 1)).
    off = ~np.eye(n, dtype=bool)
    expected_pair = trials * k * (k - 1) / (n * (n - 1))
    assert np.abs(pair[off] - expected_pair).max() < 6 * math.sqrt(expected_pair) + 1


def test_random_position_is_not_biased_to_the_end():
    # A sampler that prunes the last k would fail this (and the chi-square above).
    pruned = np.zeros(1000)
    for seed in range(50):
        pruned += ~sp.random_mask(np.zeros(1000), 0.1, seed=seed)
    assert pruned[:500].sum() > 1500 and pruned[500:].sum() > 1500


@pytest.mark.parametrize("args, kwargs, error", [
    ((np.ones(4), 1.5), {}, ValueError),
    ((np.ones(4), 0.5), dict(seed=-1), ValueError),
    ((np.ones(4), 0.5), dict(seed=2**64), ValueError),
    ((np.ones(4), 0.5), dict(seed=1.5), TypeError),
    ((np.array([1.0, np.nan]), 0.5), {}, ValueError),
    ((np.arange(4), 0.5), {}, TypeError),
])
def test_random_bad_input(args, kwargs, error):
    with pytest.raises(error):
        sp.random_mask(*args, **kwargs)


# ---------------------------------------------------------------- shared properties


@pytest.mark.parametrize("fn", [
    lambda w: sp.nm_mask(w, 2, 4),
    lambda w: sp.structured_mask(w, 0.5, axis=1),
    lambda w: sp.block_mask(w, 0.5, (2, 2)),
    lambda w: sp.random_mask(w, 0.5),
    lambda w: sp.global_magnitude_masks([w, w], 0.5),
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_inputs_are_not_modified(fn, dtype):
    w = np.random.default_rng(13).standard_normal((6, 8)).astype(dtype)
    before = w.copy()
    fn(w)
    np.testing.assert_array_equal(w, before)


def test_large_inputs_use_threads_and_agree_with_one_thread():
    rng = np.random.default_rng(14)
    w = rng.standard_normal((512, 1024)).astype(np.float32)
    single, multi = per_thread_count(lambda: [
        sp.nm_mask(w), sp.structured_mask(w, 0.3, axis=1), sp.block_mask(w, 0.3, (4, 4)),
        sp.global_magnitude_masks([w, w[:7]], 0.3)[0]])
    for a, b in zip(single, multi):
        np.testing.assert_array_equal(a, b)


def test_concurrent_calls_from_python_threads_agree():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(15)
    w = rng.standard_normal((256, 512)).astype(np.float32)
    x = rng.standard_normal((64, 512)).astype(np.float32)
    jobs = [
        lambda: sp.nm_mask(w),
        lambda: sp.structured_mask(w, 0.5, axis=0),
        lambda: sp.block_mask(w, 0.5, (4, 4)),
        lambda: sp.random_mask(w, 0.5, seed=1),
        lambda: sp.global_magnitude_masks([w, x], 0.5)[0],
        lambda: sp.wanda_mask(w, x, 0.5),
        lambda: sp.sparsegpt(w[:32], x, 0.5, block_size=64) != 0,
    ]
    expected = [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: jobs[i % len(jobs)](), range(4 * len(jobs))))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % len(jobs)])


def test_size_one_and_odd_shapes():
    one = np.array([[-2.5]], np.float32)
    np.testing.assert_array_equal(sp.block_mask(one, 1.0, (3, 3)), [[False]])
    np.testing.assert_array_equal(sp.block_mask(one, 0.4, (3, 3)), [[True]])
    np.testing.assert_array_equal(sp.structured_mask(one, 1.0, axis=1), [[False]])
    np.testing.assert_array_equal(sp.random_mask(one, 1.0), [[False]])
    np.testing.assert_array_equal(sp.global_magnitude_masks([one], 0.6)[0], [[False]])
    np.testing.assert_array_equal(sp.nm_mask(np.array([0.0, -1.0]), 1, 2), [False, True])
    odd = np.random.default_rng(18).standard_normal((3, 5, 7))
    np.testing.assert_array_equal(sp.structured_mask(odd, 0.6, axis=1, norm=1), ref.structured(odd, 0.6, 1, 1))
    np.testing.assert_array_equal(sp.block_mask(odd[0], 0.5, (2, 3)), ref.block(odd[0], 0.5, (2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_large_with_ties_at_the_threshold_across_workers(dtype):
    rng = np.random.default_rng(19)
    arrays = [rng.standard_normal(n).astype(dtype) for n in (150_000, 1, 250_000)]
    # 3000 exact copies of one magnitude spread over every tensor and both worker halves.
    for a in (arrays[0], arrays[2]):
        a[rng.choice(a.size, 1500, replace=False)] = rng.choice([-1, 1], 1500) * dtype(0.6745)
    for threads in (1, 2):
        with num_threads(threads):
            for sparsity in (0.49, 0.5, 0.502):
                masks = sp.global_magnitude_masks(arrays, sparsity)
                for mask, expected in zip(masks, ref.global_magnitude(arrays, sparsity)):
                    np.testing.assert_array_equal(mask, expected)
            # Mostly equal values: the threshold bucket is huge (the three-pass fallback).
            zeros = [np.where(rng.random(200_000) < 0.9, 0.0, rng.standard_normal(200_000)).astype(dtype)]
            for mask, expected in zip(sp.global_magnitude_masks(zeros, 0.6), ref.global_magnitude(zeros, 0.6)):
                np.testing.assert_array_equal(mask, expected)


def test_no_reference_leaks_on_success_and_error_paths():
    import sys

    rng = np.random.default_rng(20)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    w64 = w.astype(np.float64)
    x = rng.standard_normal((32, 16)).astype(np.float32)
    bad = np.array([[np.nan] * 16] * 8, np.float32)
    calls = [
        lambda: sp.nm_mask(w), lambda: sp.structured_mask(w, 0.5), lambda: sp.block_mask(w, 0.5),
        lambda: sp.global_magnitude_masks([w, w64], 0.5), lambda: sp.wanda_mask(w, x, 0.5),
        lambda: sp.sparsegpt(w, x, 0.5), lambda: sp.random_mask(w, 0.5),
    ]
    failing = [
        lambda: sp.nm_mask(bad), lambda: sp.structured_mask(bad, 0.5), lambda: sp.block_mask(bad, 0.5),
        lambda: sp.global_magnitude_masks([w, bad], 0.5), lambda: sp.wanda_mask(bad, x, 0.5),
        lambda: sp.sparsegpt(w, bad, 0.5), lambda: sp.wanda_mask(w64, x[:, :3], 0.5),
    ]
    for call in calls + failing:
        try:
            call()
        except ValueError:
            pass
    before = [sys.getrefcount(a) for a in (w, w64, x, bad)]
    for _ in range(50):
        for call in calls:
            call()
        for call in failing:
            with pytest.raises(ValueError):
                call()
    assert [sys.getrefcount(a) for a in (w, w64, x, bad)] == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_large_inputs_ties_extremes_and_heavy_zero_buckets(dtype):
    # Over 2**20 entries (multi-worker passes, fallbacks for huge tie buckets); every outcome must equal the reference.
    rng = np.random.default_rng(21)
    arrays = [rng.standard_normal(n).astype(dtype) for n in (700_000, 3, 500_000)]
    arrays[0][rng.choice(700_000, 4000, replace=False)] = dtype(0.6745)  # ties at the median
    for threads in (1, 2):
        with num_threads(threads):
            for sparsity in (1e-6, 0.3, 0.5, 0.5004, 0.999999):
                masks = sp.global_magnitude_masks(arrays, sparsity)
                for mask, expected in zip(masks, ref.global_magnitude(arrays, sparsity)):
                    np.testing.assert_array_equal(mask, expected)
            heavy = [np.where(rng.random(1_200_000) < 0.9, 0.0, rng.standard_normal(1_200_000)).astype(dtype)]
            for sparsity in (0.5, 0.95):
                for mask, expected in zip(sp.global_magnitude_masks(heavy, sparsity), ref.global_magnitude(heavy, sparsity)):
                    np.testing.assert_array_equal(mask, expected)
            with pytest.raises(ValueError, match="NaN or Inf"):
                bad = arrays[2].copy()
                bad[123_456] = np.nan
                sp.global_magnitude_masks([arrays[0], bad], 0.5)
