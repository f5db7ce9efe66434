"""cluster / ClusteredTensor against a NumPy Lloyd reference and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_quantization import reference_kmeans_1d, reference_optimal_kmeans_sse


def mixture(n, k, seed):
    rng = np.random.default_rng(seed)
    centers = np.linspace(-4, 4, k)
    return (centers[rng.integers(0, k, n)] + rng.standard_normal(n) * 0.3).astype(np.float32)


def nearest(values, centroids):
    x = np.asarray(values, np.float64).reshape(-1, 1)
    return np.argmin(np.abs(x - centroids.astype(np.float64)[None, :]), axis=1)


@pytest.mark.parametrize("k", [2, 5, 8])
def test_converges_to_the_reference_lloyd_fixed_point(k):
    w = mixture(4000, k, k)
    c = sp.cluster(w, k, max_iter=1000)
    np.testing.assert_allclose(c.centroids, reference_kmeans_1d(w, k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (30, 17), (4, 3, 5), (100_000,)])
@pytest.mark.parametrize("k", [1, 3, 16, 300])
def test_indices_are_nearest_centroids(dtype, shape, k):
    rng = np.random.default_rng(k)
    w = rng.standard_normal(shape).astype(dtype)
    c = sp.cluster(w, k)
    assert c.indices.shape == w.shape
    assert c.indices.dtype == (np.uint8 if k <= 256 else np.uint16)
    assert c.centroids.dtype == np.float32 and c.centroids.shape == (k,)
    assert np.all(np.diff(c.centroids) >= 0)
    np.testing.assert_array_equal(c.indices.ravel(), nearest(w.astype(np.float32).ravel(), c.centroids))
    deq = c.dequantize()
    assert deq.dtype == np.float32 and deq.shape == w.shape
    np.testing.assert_array_equal(deq, c.centroids[c.indices])


def test_centroids_are_means_of_their_clusters():
    w = np.random.default_rng(1).standard_t(4, size=20_000).astype(np.float32)
    c = sp.cluster(w, 16, max_iter=10_000)
    labels = c.indices.ravel()
    for j in range(16):
        members = w[labels == j].astype(np.float64)
        assert members.size > 0
        assert c.centroids[j] == pytest.approx(members.mean(), rel=1e-5, abs=1e-6)


def test_few_distinct_values_are_exact():
    w = np.array([[1.0, 2.0, 2.0], [5.0, 1.0, 5.0]], np.float32)
    c = sp.cluster(w, 16)
    np.testing.assert_array_equal(c.dequantize(), w)
    np.testing.assert_array_equal(c.centroids[:3], [1, 2, 5])
    assert np.all(c.centroids[3:] == 5)
    one = sp.cluster(np.full(10, 0.25, np.float32), 4)
    assert np.all(one.dequantize() == 0.25)


def test_kmeans_plus_plus_is_seeded_and_good():
    w = mixture(50_000, 8, 3)
    a = sp.cluster(w, 8, init="kmeans++", seed=1)
    b = sp.cluster(w, 8, init="kmeans++", seed=1)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    mse = np.mean((a.dequantize() - w) ** 2)
    assert mse < 0.1


def test_no_worse_than_scikit_learn():
    sklearn = pytest.importorskip("sklearn.cluster")
    w = np.random.default_rng(4).standard_normal(100_000).astype(np.float32)
    ours = sp.cluster(w, 16)
    km = sklearn.KMeans(n_clusters=16, n_init=1, random_state=0).fit(w.reshape(-1, 1))
    theirs = km.cluster_centers_.ravel()[km.labels_]
    mse_ours = np.mean((ours.dequantize() - w).astype(np.float64) ** 2)
    mse_theirs = np.mean((theirs - w).astype(np.float64) ** 2)
    assert mse_ours <= mse_theirs * 1.001


def test_empty_clusters_are_relocated():
    # Linear init over [-100, 100] puts most centroids where there is no data.
    rng = np.random.default_rng(5)
    w = np.concatenate([rng.standard_normal(5000), [-100.0, 100.0]]).astype(np.float32)
    c = sp.cluster(w, 8, max_iter=1000)
    counts = np.bincount(c.indices, minlength=8)
    assert np.all(counts > 0)


def test_config_round_trip_and_nbytes():
    w = np.random.default_rng(6).standard_normal((64, 32)).astype(np.float32)
    c = sp.cluster(w, 16)
    r = sp.ClusteredTensor.from_config(c.to_config())
    np.testing.assert_array_equal(r.dequantize(), c.dequantize())
    assert c.nbytes == 64 * 32 // 2 + 16 * 4


def test_empty_input():
    c = sp.cluster(np.zeros((0, 3), np.float32), 4)
    assert c.indices.shape == (0, 3) and c.dequantize().shape == (0, 3)


def test_bad_input():
    w = np.ones(10, np.float32)
    for k in (0, -1, 70_000):
        with pytest.raises(ValueError, match="n_clusters"):
            sp.cluster(w, k)
    with pytest.raises(TypeError, match="n_clusters"):
        sp.cluster(w, 4.0)
    with pytest.raises(ValueError, match="init"):
        sp.cluster(w, 4, init="random")
    with pytest.raises(ValueError, match="max_iter"):
        sp.cluster(w, 4, max_iter=-1)
    with pytest.raises(ValueError, match="seed"):
        sp.cluster(w, 4, seed=-1)
    with pytest.raises(TypeError, match="floating-point"):
        sp.cluster(np.arange(4), 2)
    for bad in (np.nan, np.inf):
        x = w.copy()
        x[3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            sp.cluster(x, 4)
    with pytest.raises(ValueError, match="out of range"):
        sp.ClusteredTensor(np.array([0, 5], np.uint8), np.zeros(3, np.float32))


@pytest.mark.parametrize("n,k", [(40, 3), (90, 5), (200, 8), (17, 16)])
def test_optimal_matches_the_dynamic_program(n, k):
    w = np.random.default_rng(n).standard_t(3, size=n).astype(np.float32)
    c = sp.cluster(w, k, init="optimal")
    sse = float(np.sum((c.dequantize().astype(np.float64) - w.astype(np.float64)) ** 2))
    assert sse == pytest.approx(reference_optimal_kmeans_sse(w, k), rel=1e-6, abs=1e-9)
    np.testing.assert_array_equal(c.indices.ravel(), nearest(w, c.centroids))
    for init in ("linear", "kmeans++"):
        other = sp.cluster(w, k, init=init)
        assert sse <= float(np.sum((other.dequantize().astype(np.float64) - w) ** 2)) * (1 + 1e-9)


def test_max_iter_zero_keeps_the_linear_init():
    w = np.linspace(-1, 1, 101).astype(np.float32) ** 3
    c = sp.cluster(w, 5, max_iter=0)
    np.testing.assert_allclose(c.centroids, np.linspace(w.min(), w.max(), 5), rtol=1e-6, atol=1e-7)
    assert c.iterations == 0
