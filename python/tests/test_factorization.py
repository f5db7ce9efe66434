"""svd / randomized_svd / low_rank against NumPy's LAPACK SVD and closed forms."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _threads import per_thread_count, run_in_python_threads
from _reference_factorization import (
    keras_conv_to_2d,
    matrix_with_spectrum,
    optimal_error,
    reference_energy_rank,
    reference_ratio_rank,
    torch_conv_to_2d,
)

DTYPES = [np.float16, np.float32, np.float64]


def assert_valid_svd(w, u, s, vt, tol=1e-5):
    """Shapes, dtypes, order, orthonormality and agreement with NumPy's SVD."""
    w64 = np.asarray(w, dtype=np.float64)
    m, n = w64.shape
    r = min(m, n)
    assert u.shape == (m, r) and s.shape == (r,) and vt.shape == (r, n)
    assert u.dtype == s.dtype == vt.dtype == np.float32
    if r == 0:
        return
    reference = np.linalg.svd(w64, compute_uv=False)
    scale = max(reference[0], np.finfo(np.float64).tiny)
    assert np.all(np.diff(s) <= 0), "singular values must be descending"
    np.testing.assert_allclose(s, reference, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(r), atol=1e-5)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(r), atol=1e-5)
    np.testing.assert_allclose((u.astype(np.float64) * s) @ vt, w64, rtol=0, atol=tol * scale)


# ---- svd ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 5), (5, 7), (64, 64), (200, 31), (31, 200)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_svd_random_matrices(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(dtype)
    assert_valid_svd(w, *sp.svd(w))


@pytest.mark.parametrize("condition", [1e3, 1e7, 1e12])
def test_svd_ill_conditioned(condition):
    rng = np.random.default_rng(3)
    w = matrix_with_spectrum(rng, 90, 60, np.logspace(0, -np.log10(condition), 60))
    assert_valid_svd(w, *sp.svd(w))


@pytest.mark.parametrize("shape", [(60, 45), (45, 60)])
def test_svd_rank_deficient(shape):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((shape[0], 5)) @ rng.standard_normal((5, shape[1]))
    u, s, vt = sp.svd(w)
    assert_valid_svd(w, u, s, vt)
    assert np.all(s[5:] <= 1e-5 * s[0])


def test_svd_closed_forms():
    # A scaled permutation: singular values are the scales, sorted.
    w = np.zeros((4, 4))
    w[0, 2], w[1, 0], w[2, 3], w[3, 1] = 3.0, -1.0, 2.0, 0.5
    u, s, vt = sp.svd(w)
    np.testing.assert_allclose(s, [3, 2, 1, 0.5], rtol=1e-6)
    assert_valid_svd(w, u, s, vt)
    # Rank one: the outer product x yᵀ has s[0] = |x| |y| and nothing else.
    x, y = np.arange(1.0, 6.0), np.array([2.0, -1.0, 0.5])
    u, s, vt = sp.svd(np.outer(x, y))
    np.testing.assert_allclose(s[0], np.linalg.norm(x) * np.linalg.norm(y), rtol=1e-6)
    np.testing.assert_allclose(s[1:], 0, atol=1e-5)
    np.testing.assert_allclose(np.abs(u[:, 0]), x / np.linalg.norm(x), atol=1e-6)


def test_svd_zero_ones_and_repeated_values():
    assert_valid_svd(np.zeros((6, 4)), *sp.svd(np.zeros((6, 4))))
    assert_valid_svd(np.ones((20, 20)), *sp.svd(np.ones((20, 20))))
    eye = np.eye(8)[::-1] * 2.0
    u, s, vt = sp.svd(eye)
    np.testing.assert_allclose(s, 2.0, rtol=1e-6)
    assert_valid_svd(eye, u, s, vt)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_svd_empty(shape):
    u, s, vt = sp.svd(np.zeros(shape, dtype=np.float32))
    r = min(shape)
    assert u.shape == (shape[0], r) and s.shape == (r,) and vt.shape == (r, shape[1])


@pytest.mark.parametrize("layout", ["F", "strided", "negative"])
def test_svd_layouts_and_input_untouched(layout):
    rng = np.random.default_rng(6)
    base = rng.standard_normal((40, 30))
    w = {"F": np.asfortranarray(base), "strided": np.repeat(base, 2, axis=1)[:, ::2], "negative": base[::-1, ::-1]}[layout]
    before = w.copy()
    assert_valid_svd(w, *sp.svd(w))
    np.testing.assert_array_equal(w, before)


def test_svd_bad_input():
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.svd(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.svd(np.array([[1.0, np.inf]], dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        sp.svd(np.ones(4))
    with pytest.raises(TypeError, match="floating"):
        sp.svd(np.ones((3, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="floating"):
        sp.svd(np.ones((3, 3), dtype=np.complex64))


# ---- svd at sizes that take the blocked paths ------------------------------
# Above 128 columns the Gram matrix is tridiagonalized in panels of 32
# (blocked Householder with a GEMM trailing update), and the eigenvectors of
# the tridiagonal matrix are grouped in clusters of relative gap 1e-5: these
# sizes and spectra exercise several panels, the unblocked tail, dense
# spectra (Gaussian: Marchenko–Pastur), exact repeats and tight clusters.

@pytest.mark.parametrize("shape", [(360, 260), (260, 360), (333, 333)])
def test_svd_blocked_sizes_gaussian(shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    w = rng.standard_normal(shape).astype(np.float32)
    assert_valid_svd(w, *sp.svd(w))


@pytest.mark.parametrize("kind", ["repeated", "clusters", "graded"])
def test_svd_blocked_sizes_hard_spectra(kind):
    rng = np.random.default_rng(21)
    r = 200
    spectrum = {
        # 10 values each repeated 20 times: eigenvalues equal to rounding.
        "repeated": np.repeat(np.linspace(2.0, 0.5, 10), 20),
        # Pairs 1e-9 apart (closer than any gap inverse iteration resolves).
        "clusters": np.repeat(np.linspace(1.0, 0.1, 100), 2) + np.tile([0.0, 1e-9], 100),
        # Condition 1e5: the left vectors need the Cholesky QR pass.
        "graded": np.logspace(0, -5, r),
    }[kind]
    w = matrix_with_spectrum(rng, 240, r, spectrum)
    assert_valid_svd(w, *sp.svd(w))


@pytest.mark.parametrize("kind", ["identity", "block-diagonal", "rank-one"])
def test_svd_blocked_sizes_structured(kind):
    # Zero Householder tails (reflector = identity) inside the 32-column panels.
    rng = np.random.default_rng(23)
    w = {
        "identity": np.eye(300),
        "block-diagonal": np.kron(np.eye(50), rng.standard_normal((4, 4))),
        "rank-one": np.outer(rng.standard_normal(300), rng.standard_normal(260)),
    }[kind]
    assert_valid_svd(w, *sp.svd(w))


def test_svd_same_result_at_any_thread_count():
    rng = np.random.default_rng(22)
    w = rng.standard_normal((260, 200)).astype(np.float32)
    before = sp.get_num_threads()
    try:
        sp.set_num_threads(1)
        one = sp.svd(w)
        sp.set_num_threads(2)
        two = sp.svd(w)
    finally:
        sp.set_num_threads(before)
    for x, y in zip(one, two):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)


# ---- randomized_svd -------------------------------------------------------

SPECTRA = {
    "flat": lambda r: np.ones(r) + 0.01 * np.arange(r)[::-1] / r,
    "decaying": lambda r: np.exp(-np.arange(r) / 8.0),
    "power-law": lambda r: 1.0 / (1.0 + np.arange(r)),
}


@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
@pytest.mark.parametrize("shape,rank", [((240, 160), 10), ((160, 240), 40), ((300, 120), 60)])
def test_randomized_svd_within_one_percent_of_optimal(spectrum, shape, rank):
    rng = np.random.default_rng(7)
    r = min(shape)
    w = matrix_with_spectrum(rng, *shape, SPECTRA[spectrum](r)) + 1e-3 * rng.standard_normal(shape)
    u, s, vt = sp.randomized_svd(w, rank)
    assert u.shape == (shape[0], rank) and s.shape == (rank,) and vt.shape == (rank, shape[1])
    error = np.linalg.norm(w - (u.astype(np.float64) * s) @ vt)
    assert error <= 1.01 * optimal_error(w, rank)
    assert np.all(np.diff(s) <= 0)
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(rank), atol=1e-4)
    np.testing.assert_allclose(vt.astype(np.float64) @ vt.T, np.eye(rank), atol=1e-4)


def test_randomized_svd_gaussian_matrix_and_exact_low_rank():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((200, 150)).astype(np.float32)
    u, s, vt = sp.randomized_svd(w, 15)
    assert np.linalg.norm(w - (u * s) @ vt) <= 1.01 * optimal_error(w, 15)
    # An exactly rank-8 matrix is recovered to float32 precision.
    w = rng.standard_normal((120, 8)) @ rng.standard_normal((8, 90))
    u, s, vt = sp.randomized_svd(w, 8, oversample=0, power_iters=0)
    np.testing.assert_allclose((u.astype(np.float64) * s) @ vt, w, atol=1e-4 * np.abs(w).max())
    np.testing.assert_allclose(s, np.linalg.svd(w, compute_uv=False)[:8], rtol=1e-5)


def test_randomized_svd_is_deterministic_per_seed():
    rng = np.random.default_rng(9)
    w = rng.standard_normal((80, 60))
    first, again, other = (sp.randomized_svd(w, 5, power_iters=0, oversample=0, seed=s) for s in (1, 1, 2))
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0], other[0])


def test_randomized_svd_edges_and_dtypes():
    rng = np.random.default_rng(10)
    for dtype in DTYPES:
        w = rng.standard_normal((30, 20)).astype(dtype)
        u, s, vt = sp.randomized_svd(w, 20)   # full rank: exact
        np.testing.assert_allclose(s, np.linalg.svd(w.astype(np.float64), compute_uv=False),
                                   rtol=0, atol=1e-5 * np.abs(s).max())
    u, s, vt = sp.randomized_svd(np.ones((4, 3)), 0)
    assert u.shape == (4, 0) and s.shape == (0,) and vt.shape == (0, 3)
    u, s, vt = sp.randomized_svd(np.zeros((5, 0)), 0)
    assert u.shape == (5, 0) and vt.shape == (0, 0)
    u, s, vt = sp.randomized_svd(np.zeros((10, 6)), 3)
    np.testing.assert_array_equal(s, 0)


def test_randomized_svd_bad_input():
    w = np.ones((10, 8))
    with pytest.raises(ValueError, match="rank"):
        sp.randomized_svd(w, 9)
    with pytest.raises(ValueError, match="rank"):
        sp.randomized_svd(w, -1)
    with pytest.raises(TypeError, match="rank"):
        sp.randomized_svd(w, 2.5)
    with pytest.raises(ValueError, match="oversample"):
        sp.randomized_svd(w, 2, oversample=-1)
    with pytest.raises(ValueError, match="power_iters"):
        sp.randomized_svd(w, 2, power_iters=-3)
    with pytest.raises(ValueError, match="seed"):
        sp.randomized_svd(w, 2, seed=-1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.randomized_svd(np.full((4, 4), np.nan), 2)
    with pytest.raises(TypeError):
        sp.randomized_svd(np.ones((4, 4), dtype=np.int64), 2)


# ---- low_rank -------------------------------------------------------------

@pytest.mark.parametrize("method", ["auto", "svd", "randomized"])
def test_low_rank_by_rank_matches_truncated_svd(method):
    rng = np.random.default_rng(11)
    w = matrix_with_spectrum(rng, 300, 200, np.exp(-np.arange(200) / 10.0))
    factors = sp.low_rank(w, rank=20, method=method)
    assert isinstance(factors, sp.LowRankFactors)
    assert factors.a.shape == (300, 20) and factors.b.shape == (20, 200) and factors.rank == 20
    assert factors.a.dtype == factors.b.dtype == np.float32
    assert factors.nbytes == 4 * (300 * 20 + 20 * 200)
    error = np.linalg.norm(w - factors.reconstruct())
    assert error <= 1.01 * optimal_error(w, 20) + 1e-5 * np.linalg.norm(w)
    np.testing.assert_allclose(factors.reconstruct(), factors.a.astype(np.float64) @ factors.b, atol=1e-5)


def test_low_rank_exact_factors_are_u_s_and_vt():
    rng = np.random.default_rng(12)
    w = rng.standard_normal((40, 30))
    factors = sp.low_rank(w, rank=7, method="svd")
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    best = (u[:, :7] * s[:7]) @ vt[:7]
    np.testing.assert_allclose(factors.a.astype(np.float64) @ factors.b, best, atol=1e-5 * s[0])
    np.testing.assert_allclose(factors.b.astype(np.float64) @ factors.b.T, np.eye(7), atol=1e-5)


@pytest.mark.parametrize("energy", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_low_rank_energy(energy):
    rng = np.random.default_rng(13)
    w = rng.standard_normal((50, 35)) * np.linspace(3, 0.1, 35)
    factors = sp.low_rank(w, energy=energy)
    s = np.linalg.svd(w, compute_uv=False)
    expected = reference_energy_rank(s, energy)
    assert abs(factors.rank - expected) <= (1 if 0 < energy < 1 else 0)  # float32 s at the boundary
    kept = (s[: factors.rank] ** 2).sum() / (s ** 2).sum()
    assert kept >= energy - 1e-5


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.25, 0.5, 1.0, 5.0])
@pytest.mark.parametrize("shape", [(64, 48), (10, 300)])
def test_low_rank_ratio(ratio, shape):
    rng = np.random.default_rng(14)
    w = rng.standard_normal(shape)
    factors = sp.low_rank(w, ratio=ratio, method="svd")
    assert factors.rank == reference_ratio_rank(*shape, ratio)
    assert factors.a.size + factors.b.size <= max(ratio * w.size, factors.rank * sum(shape))


def test_low_rank_conv_layouts():
    rng = np.random.default_rng(15)
    keras = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="rank"):
        sp.low_rank(keras, rank=17)  # the (72, 16) matrix has rank at most 16
    factors = sp.low_rank(keras, rank=16, method="svd")
    np.testing.assert_allclose(factors.a.astype(np.float64) @ factors.b, keras_conv_to_2d(keras), atol=1e-4)
    assert factors.reconstruct().shape == keras.shape
    np.testing.assert_allclose(factors.reconstruct(), keras, atol=1e-4)
    torch = rng.standard_normal((16, 8, 3, 3))
    factors = sp.low_rank(torch, rank=4, layout="torch", method="svd")
    assert factors.a.shape == (16, 4) and factors.b.shape == (4, 72)
    w2d = torch_conv_to_2d(torch)
    np.testing.assert_allclose(np.linalg.norm(w2d - factors.a.astype(np.float64) @ factors.b),
                               optimal_error(w2d, 4), rtol=1e-5)
    assert factors.reconstruct().shape == torch.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_low_rank_dtypes_layouts_untouched(dtype):
    rng = np.random.default_rng(16)
    w = np.asfortranarray(rng.standard_normal((30, 20)).astype(dtype))
    before = w.copy()
    factors = sp.low_rank(w, rank=20)
    np.testing.assert_allclose(factors.reconstruct(), w.astype(np.float32), atol=2e-5 * np.abs(w).max() * 10)
    np.testing.assert_array_equal(w, before)


def test_low_rank_empty_and_zero():
    factors = sp.low_rank(np.zeros((0, 5)), rank=0)
    assert factors.a.shape == (0, 0) and factors.b.shape == (0, 5) and factors.reconstruct().shape == (0, 5)
    factors = sp.low_rank(np.zeros((6, 4)), energy=0.9)
    assert factors.rank == 0 and factors.reconstruct().shape == (6, 4)
    np.testing.assert_array_equal(factors.reconstruct(), 0)


def test_low_rank_bad_input():
    w = np.ones((10, 8))
    with pytest.raises(ValueError, match="exactly one"):
        sp.low_rank(w)
    with pytest.raises(ValueError, match="exactly one"):
        sp.low_rank(w, rank=2, energy=0.5)
    with pytest.raises(ValueError, match="rank"):
        sp.low_rank(w, rank=9)
    with pytest.raises(TypeError, match="rank"):
        sp.low_rank(w, rank=2.0)
    with pytest.raises(ValueError, match="energy"):
        sp.low_rank(w, energy=1.5)
    with pytest.raises(ValueError, match="ratio"):
        sp.low_rank(w, ratio=0)
    with pytest.raises(ValueError, match="ratio"):
        sp.low_rank(w, ratio=float("nan"))
    with pytest.raises(TypeError, match="energy"):
        sp.low_rank(w, energy="high")
    with pytest.raises(ValueError, match="method"):
        sp.low_rank(w, rank=2, method="qr")
    with pytest.raises(ValueError, match="layout"):
        sp.low_rank(w, rank=2, layout="jax")
    with pytest.raises(ValueError, match="dimensions"):
        sp.low_rank(np.ones(5), rank=1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.low_rank(np.array([[1.0, np.inf], [0, 1]]), rank=1)
    with pytest.raises(TypeError, match="floating"):
        sp.low_rank(np.ones((3, 3), dtype=bool), rank=1)


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(17)
    w = rng.standard_normal((120, 90))
    expected = sp.svd(w)[1]
    for s in run_in_python_threads(lambda _: sp.svd(w)[1]):
        np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("kind", ["clustered", "graded", "wilkinson-like pairs"])
def test_svd_squares_are_the_eigenvalues_of_the_gram_matrix(kind):
    # svd's eigensolver (blocked tridiagonalization above 128 columns, root-free QL
    # eigenvalues, inverse iteration) against numpy.linalg.eigh of Wᵀ W in float64.
    rng = np.random.default_rng(24)
    n = 300
    spectrum = {
        "clustered": np.repeat([3.0, 2.0, 1.0, 0.5], n // 4) * (1 + 1e-9 * rng.standard_normal(n)),
        "graded": np.logspace(0, -3, n),
        "wilkinson-like pairs": np.sort(np.abs(n / 2 - np.arange(n)) + 1.0)[::-1],
    }[kind]
    w = matrix_with_spectrum(rng, 340, n, spectrum)
    u, s, vt = sp.svd(w)
    values = np.linalg.eigh(w.T @ w)[0][::-1]
    np.testing.assert_allclose(s.astype(np.float64) ** 2, values, rtol=0, atol=2e-5 * values[0])
    assert_valid_svd(w, u, s, vt)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_magnitudes(scale):
    rng = np.random.default_rng(18)
    w = rng.standard_normal((40, 25)) * scale
    u, s, vt = sp.svd(w)
    np.testing.assert_allclose(s, np.linalg.svd(w, compute_uv=False), rtol=1e-5)
    u, s, vt = sp.randomized_svd(w, 25)
    np.testing.assert_allclose(s, np.linalg.svd(w, compute_uv=False), rtol=1e-4)


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(19)
    w = rng.standard_normal((400, 300)).astype(np.float32)
    results = per_thread_count(lambda: (sp.svd(w), sp.randomized_svd(w, 10), sp.low_rank(w, rank=5).a), (1, 2, 3))
    for other in results[1:]:
        for x, y in zip(results[0][0] + results[0][1] + (results[0][2],), other[0] + other[1] + (other[2],)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shape,rank", [((300, 260), 7), ((260, 300), 1), ((400, 120), 60)])
def test_svd_large_null_space(shape, rank):
    # Most singular values are zero: their vectors are an orthonormal completion.
    rng = np.random.default_rng(20)
    w = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
    u, s, vt = sp.svd(w)
    assert_valid_svd(w, u, s, vt)
    assert np.all(s[rank:] <= 1e-5 * s[0])


def test_randomized_svd_large_panels_do_not_depend_on_the_thread_count():
    # Big enough that the GEMMs, the CholeskyQR Gram products and the
    # conversions are split over workers.
    rng = np.random.default_rng(23)
    w = (rng.standard_normal((900, 700)) / (1.0 + np.arange(700)) ** 0.5).astype(np.float32)
    results = per_thread_count(lambda: sp.randomized_svd(w, 60), (1, 2, 3))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            np.testing.assert_array_equal(x, y)
    u, s, vt = results[0]
    assert np.linalg.norm(w - (u.astype(np.float64) * s) @ vt) <= 1.01 * optimal_error(w, 60)
