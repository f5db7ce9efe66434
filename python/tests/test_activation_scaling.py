"""AWQ, SmoothQuant and bias correction against float64 NumPy transcriptions
of the papers' algorithms, and the function-preserving folding."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator
from _reference_calibration import reference_awq, reference_smoothquant


def outlier_layer(rows=32, cols=128, samples=800, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    x = rng.standard_normal((samples, cols)).astype(np.float32)
    x[:, rng.choice(cols, 6, replace=False)] *= 30  # activation outlier channels, as in LLMs
    return w, x


def test_awq_matches_reference_search_and_beats_round_to_nearest():
    w, x = outlier_layer()
    acc = HessianAccumulator(128).update(x)
    q, inverse, alpha = sp.awq(w, acc, 4, 32)
    ref_alpha, ref_s = reference_awq(w, x, 4, 32)
    assert alpha == ref_alpha
    np.testing.assert_allclose(1 / inverse, ref_s, rtol=1e-5)
    effective = q.dequantize() * inverse[None, :]
    rtn = sp.quantize(w, 4, symmetric=False, axis=0, group_size=32).dequantize()
    error = np.linalg.norm((w - effective) @ x.T)
    assert error < 0.9 * np.linalg.norm((w - rtn) @ x.T)
    # Folding: Q(W s) applied to x / s is the effective weight applied to x.
    np.testing.assert_allclose(q.dequantize() @ (x * inverse).T, effective @ x.T, rtol=1e-4, atol=1e-3)


def test_smoothquant_matches_reference_and_preserves_the_function():
    w, x = outlier_layer(seed=1)
    smoothed, inverse = sp.smoothquant(w, x, alpha=0.5)
    np.testing.assert_allclose(1 / inverse, reference_smoothquant(w, x, 0.5), rtol=1e-5)
    np.testing.assert_allclose(smoothed @ (x * inverse).T, w @ x.T, rtol=1e-4, atol=1e-2)
    # The smoothed activations have a smaller outlier ratio (easier to quantize per tensor).
    before = np.abs(x).max() / np.abs(x).mean()
    after = np.abs(x * inverse).max() / np.abs(x * inverse).mean()
    assert after < 0.5 * before
    with pytest.raises(ValueError, match="alpha"):
        sp.smoothquant(w, x, alpha=1.5)


def test_bias_correction_restores_the_mean_output():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    x = (rng.standard_normal((500, 64)) + 2.0).astype(np.float32)  # nonzero mean inputs (post-ReLU-like)
    b = rng.standard_normal(16).astype(np.float32)
    w_hat = sp.quantize(w, 3, axis=0).dequantize()
    corrected = sp.bias_correction(w, w_hat, x, b)
    np.testing.assert_allclose(corrected, b + (w - w_hat).astype(np.float64) @ x.astype(np.float64).mean(0),
                               rtol=1e-5, atol=1e-5)
    shift = lambda bias: np.abs((x @ w_hat.T + bias).mean(0) - (x @ w.T + b).mean(0)).max()  # noqa: E731
    assert shift(corrected) < 1e-3 < shift(b)
    with pytest.raises(ValueError, match="shape"):
        sp.bias_correction(w, w_hat[:, :10], x, b)


def test_only_awq_warns_about_few_samples():
    """The few-samples warning is about a rank-deficient xᵀx: AWQ's error uses it; SmoothQuant
    (max |x|) and bias correction (mean x) do not, and must not warn."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    x = rng.standard_normal((16, 64)).astype(np.float32)  # 16 samples for 64 features
    with warnings.catch_warnings():
        warnings.simplefilter("error", sp.calibration.CalibrationWarning)
        sp.smoothquant(w, x)
        sp.bias_correction(w, sp.quantize(w, 4, axis=0).dequantize(), x)
    with pytest.warns(sp.calibration.CalibrationWarning, match="rank-deficient"):
        sp.awq(w, x, bits=4, group_size=None)
