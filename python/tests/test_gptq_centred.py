"""gptq(center=True): GPTQ on the centred Hessian, against gptq on a float64 NumPy centred Hessian, the constant
input case, and the recipe option (needs bias_correction)."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator


def layer(seed=0, out=48, inn=128, samples=1024):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((out, inn)) / 12).astype(np.float32)
    x = (rng.standard_normal((samples, inn)) + 3 * rng.standard_normal(inn)).astype(np.float32)  # large means
    return w, x


def test_centred_equals_gptq_on_a_float64_centred_hessian():
    w, x = layer()
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(0)
    reference = HessianAccumulator(x.shape[1])
    reference._hessian[...] = centred.T @ centred
    reference.count_ = len(x)
    for options in ({}, {"symmetric": False, "act_order": True, "mse": True}):
        got = sp.gptq(w, x, 4, 32, center=True, **options)
        want = sp.gptq(w, reference, 4, 32, **options)
        assert np.mean(got.values == want.values) > 0.999  # (Hessians equal to ~1e-16: a rare rounding tie)
        np.testing.assert_allclose(got.dequantize(), want.dequantize(), atol=1e-6)
        # the accumulator path and the array path agree
        acc = HessianAccumulator(x.shape[1]).update(x)
        np.testing.assert_array_equal(sp.gptq(w, acc, 4, 32, center=True, **options).values, got.values)


def test_centred_then_bias_correction_does_not_lose_to_plain_on_held_out_inputs():
    w, x = layer(seed=1)
    rng = np.random.default_rng(9)  # held-out inputs: the calibration inputs' means, other samples
    held_out = (rng.standard_normal((4096, x.shape[1])) + x.mean(0)).astype(np.float32)
    acc = HessianAccumulator(x.shape[1]).update(x)
    errors = []
    for center in (False, True):
        q = sp.gptq(w, acc, 4, 32, symmetric=False, center=center).dequantize()
        bias = sp.bias_correction(w, q, acc)
        errors.append(np.linalg.norm(held_out @ (w - q).T - bias))
    assert errors[1] <= 1.01 * errors[0], errors  # (measured: 0.99x; 0.985-0.996x over 4 seeds of a 64x256 layer)
    # without the bias correction the centred quantizer leaves the mean shift: clearly worse than plain
    q = sp.gptq(w, acc, 4, 32, symmetric=False, center=True).dequantize()
    plain = sp.gptq(w, acc, 4, 32, symmetric=False).dequantize()
    assert np.linalg.norm(held_out @ (w - q).T) > np.linalg.norm(held_out @ (w - plain).T)


def test_a_constant_input_is_left_to_the_bias():
    w, x = layer(seed=2)
    x[:, 5] = 2.5  # constant: zero centred variance
    acc = HessianAccumulator(x.shape[1]).update(x)
    q = sp.gptq(w, acc, 4, 32, center=True).dequantize()
    assert not q[:, 5].any()
    bias = sp.bias_correction(w, q, acc)
    # the column's whole contribution is in the corrected bias: w[:, 5] * 2.5 is part of (W - Ŵ) E[x]
    residual = (x @ (w - q).T - bias)
    only_others = (x[:, np.arange(128) != 5] - x[:, np.arange(128) != 5].mean(0)) @ (w - q)[:, np.arange(128) != 5].T
    np.testing.assert_allclose(residual, only_others, atol=2e-4)


def test_recipe_option_needs_bias_correction():
    w, x = layer(seed=3)
    weights = {"fc.weight": w, "fc.bias": np.zeros(w.shape[0], np.float32)}
    calibration = sp.calibration.from_arrays({"fc.weight": x})
    stage = {"quantize": {"method": "gptq", "bits": 4, "group_size": 32, "center": True}, "include": "fc.weight"}
    with pytest.raises(ValueError, match="option 'center'.*bias_correction: true"):
        sp.compress(weights, [stage], calibration=calibration, progress=False)
    out = sp.compress(weights, [{**stage, "bias_correction": True}], calibration=calibration, progress=False).weights
    acc = HessianAccumulator(x.shape[1]).update(x)
    q = sp.gptq(w, acc, 4, 32, center=True).dequantize()
    np.testing.assert_allclose(out["fc.weight"], q, atol=1e-6)
    np.testing.assert_allclose(out["fc.bias"], sp.bias_correction(w, q, acc), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="center"):
        sp.gptq(w, x, 4, 32, center="yes")
