"""randomized_svd's block Krylov method (the default) against float64 NumPy
SVD, its own subspace method and scikit-learn's randomized_svd."""

import functools

import numpy as np
import pytest

import swiftprune as sp
from _reference_factorization import matrix_with_spectrum, optimal_error

sklearn_extmath = pytest.importorskip("sklearn.utils.extmath")
threadpoolctl = pytest.importorskip("threadpoolctl")  # installed with scikit-learn


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # The references' OpenBLAS threads spin against a loaded machine's other
    # processes (seconds per small QR on 2 shared cores); one thread is plenty here.
    with threadpoolctl.threadpool_limits(1):
        yield


def _error(w, factors):
    u, s, vt = factors
    return np.linalg.norm(w - (u.astype(np.float64) * s) @ vt.astype(np.float64))


SPECTRA = {
    # weight-like: power-law decay plus a noise floor (the benchmark's spectrum)
    "slow": lambda r: 1.0 / np.sqrt(1.0 + np.arange(r)),
    # fast geometric decay: the tail falls below Float precision
    "fast": lambda r: 0.9 ** np.arange(r),
    "very slow": lambda r: 1.0 / (1.0 + np.arange(r)) ** 0.1,
}


@functools.lru_cache(maxsize=None)
def _matrix(spectrum, shape):
    if shape[0] < shape[1]:  # the wide case is the tall one's transpose
        return np.ascontiguousarray(_matrix(spectrum, shape[::-1]).T)
    rng = np.random.default_rng(31)
    w = matrix_with_spectrum(rng, *shape, SPECTRA[spectrum](min(shape))) + 1e-4 * rng.standard_normal(shape)
    return w.astype(np.float32)


@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
@pytest.mark.parametrize("shape,rank", [((400, 300), 16), ((300, 400), 16), ((400, 300), 60)])
def test_krylov_reaches_sklearns_error_with_a_third_of_the_products(spectrum, shape, rank):
    w = _matrix(spectrum, shape)
    best = optimal_error(w.astype(np.float64), rank)
    krylov = _error(w, sp.randomized_svd(w, rank))
    subspace = _error(w, sp.randomized_svd(w, rank, method="subspace"))
    theirs = _error(w, sklearn_extmath.randomized_svd(w, rank, random_state=0))
    # scikit-learn's iterations q: a basis of rank (4 + q) / 4 columns in small blocks,
    # 2 rank (4 + q) / 4 columns of products against scikit-learn's 2 (q + 1) (rank + 10).
    assert krylov <= theirs * (1 + 1e-4) + 1e-6 * np.linalg.norm(w)
    assert krylov <= subspace * (1 + 1e-4) + 1e-6 * np.linalg.norm(w)
    assert krylov <= best * 1.01 + 1e-6 * np.linalg.norm(w)
    u, s, vt = sp.randomized_svd(w, rank)
    assert np.all(np.diff(s) <= 0)
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(rank), atol=1e-4)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(rank), atol=1e-4)
    # Ritz values on an orthonormal basis never exceed the singular values.
    reference = np.linalg.svd(w.astype(np.float64), compute_uv=False)[:rank]
    assert np.all(s <= reference * (1 + 1e-5) + 1e-6 * reference[0])


def test_krylov_on_an_exactly_low_rank_matrix():
    # Rank 8 asked for 16: the Krylov blocks after the first lie in the span
    # (rounding noise), and must still come out orthonormal.
    rng = np.random.default_rng(32)
    w = rng.standard_normal((300, 8)) @ rng.standard_normal((8, 200))
    u, s, vt = sp.randomized_svd(w, 16, power_iters=3)
    np.testing.assert_allclose((u.astype(np.float64) * s) @ vt, w, atol=1e-4 * np.abs(w).max())
    np.testing.assert_allclose(s[:8], np.linalg.svd(w, compute_uv=False)[:8], rtol=1e-4)
    assert np.all(s[8:] <= 1e-4 * s[0])
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(16), atol=1e-4)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(16), atol=1e-4)


def test_krylov_falls_back_to_subspace_when_the_basis_does_not_fit():
    rng = np.random.default_rng(33)
    w = matrix_with_spectrum(rng, 60, 50, SPECTRA["slow"](50)).astype(np.float32)
    # rank 30, 4 iterations: 5 blocks of 15 > 50 columns.
    for x, y in zip(sp.randomized_svd(w, 30, seed=3), sp.randomized_svd(w, 30, seed=3, method="subspace")):
        np.testing.assert_array_equal(x, y)
    # rank 10: 5 blocks of 5 fit, a different (Krylov) result, no worse.
    krylov, subspace = (sp.randomized_svd(w, 10, seed=3, method=m) for m in ("krylov", "subspace"))
    assert not np.array_equal(krylov[0], subspace[0])
    assert _error(w, krylov) <= _error(w, subspace) * (1 + 1e-4)


def test_krylov_is_deterministic_and_checks_the_method():
    rng = np.random.default_rng(34)
    w = rng.standard_normal((120, 90))
    first, again = sp.randomized_svd(w, 12, seed=5), sp.randomized_svd(w, 12, seed=5)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="method"):
        sp.randomized_svd(w, 2, method="lanczos")
    with pytest.raises(ValueError, match="method"):
        sp.randomized_svd(w, 2, method=None)
    from swiftprune import _core
    with pytest.raises(ValueError, match="method"):
        _core.randomized_svd(np.ones((4, 3), np.float32), 1, 0, 0, 0, 7)


@pytest.mark.parametrize("power_iters", [5, 7, 12])
@pytest.mark.parametrize("rank", [3, 6, 10])
def test_krylov_stops_when_the_krylov_space_is_exhausted(power_iters, rank):
    # An exactly rank-3 matrix: after the first block every new block is
    # rounding noise; the basis must stay orthonormal (it did not, before the
    # iteration stopped at an invariant subspace).
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((40, 3)) @ rng.standard_normal((3, 25))).astype(np.float32)
    exact = np.linalg.svd(w.astype(np.float64), compute_uv=False)[:3]
    u, s, vt = sp.randomized_svd(w, rank, power_iters=power_iters)
    np.testing.assert_allclose(s[:3], exact, rtol=0, atol=1e-5 * exact[0])
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(rank), atol=1e-5)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(rank), atol=1e-5)


@pytest.mark.parametrize("shape", [(400, 300), (300, 400)])
def test_krylov_float32_read_in_place_gives_the_scaled_copys_factors(shape):
    # A float32 matrix of moderate magnitude is read in place; a float64 one (and a float32
    # one beyond 2^21) is copied, scaled by a power of two. That scaling is exact, so every
    # path computes the same factors, bit for bit (s scaled back by the same power of two).
    w = _matrix("slow", shape)
    in_place = sp.randomized_svd(w, 16)
    copied = sp.randomized_svd(w.astype(np.float64), 16)
    large = sp.randomized_svd(w * np.float32(2.0**30), 16)
    for ours, theirs in zip(in_place, copied):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(large[0], in_place[0])
    np.testing.assert_array_equal(large[1], in_place[1] * np.float32(2.0**30))
    np.testing.assert_array_equal(large[2], in_place[2])
    # The input is only read.
    np.testing.assert_array_equal(w, _matrix("slow", shape))


@pytest.mark.parametrize("spectrum", ["slow", "very slow"])
def test_krylov_ritz_triplets_satisfy_the_projection_identity(spectrum):
    # Rayleigh–Ritz on the Krylov basis K gives U = K E, V = Xᵀ U / σ with E the
    # eigenvectors of G = Kᵀ X Xᵀ K, hence Uᵀ X V = Σ exactly. The method computes
    # only G's block tridiagonal band (the Lanczos structure: the rest is rounding):
    # if the dropped blocks were not negligible, Uᵀ X V (float64) would not be diagonal.
    w = _matrix(spectrum, (400, 300))
    for rank, power_iters in [(16, 7), (24, 4), (40, 12)]:
        u, s, vt = sp.randomized_svd(w, rank, power_iters=power_iters)
        projected = u.T.astype(np.float64) @ w.astype(np.float64) @ vt.T.astype(np.float64)
        np.testing.assert_allclose(projected, np.diag(s.astype(np.float64)), rtol=0, atol=2e-6 * s[0])


@pytest.mark.parametrize("shape", [(1100, 700), (700, 1100)])
def test_krylov_large_basis_factors_against_float64_references(shape):
    # rank 128 at q = 4: a 256-column basis, so the Rayleigh–Ritz eigenproblem
    # takes the blocked tridiagonalization and the root-free QL eigenvalues;
    # tall and wide (U from the transposed rows of Vᵀ) with float32 read in place.
    w = _matrix("slow", shape)
    rank = 128
    u, s, vt = sp.randomized_svd(w, rank)
    w64 = w.astype(np.float64)
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(rank), atol=1e-5)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(rank), atol=1e-5)
    # The Ritz values are the eigenvalues of Uᵀ X Xᵀ U (numpy.linalg.eigh, float64), descending,
    # U the factor taken from the Krylov basis: u for a tall matrix, V for a wide one (X = wᵀ).
    basis, x = (u, w64) if shape[0] >= shape[1] else (vt.T, w64.T)
    projected = basis.T.astype(np.float64) @ x
    ritz = np.sqrt(np.linalg.eigh(projected @ projected.T)[0][::-1])
    np.testing.assert_allclose(s, ritz, rtol=0, atol=1e-5 * s[0])
    # And close to the true leading singular values, with scikit-learn's error or better.
    exact = np.linalg.svd(w64, compute_uv=False)[:rank]
    np.testing.assert_allclose(s, exact, rtol=0, atol=2e-3 * exact[0])
    theirs = sklearn_extmath.randomized_svd(w64, rank, random_state=0)
    assert _error(w64, (u, s, vt)) <= _error(w64, theirs) * 1.001
