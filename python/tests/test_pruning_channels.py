"""prune_channels: physical removal keeps the function of already-dead channels."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp


def relu(x):
    return np.maximum(x, 0)


def mlp_keras(layers, x):
    h = x
    for i, layer in enumerate(layers):
        h = h @ layer["kernel"] + layer["bias"]
        if "batchnorm" in layer:
            gamma, beta, mean, var = layer["batchnorm"]
            h = gamma * (h - mean) / np.sqrt(var + 1e-3) + beta
        if i < len(layers) - 1:
            h = relu(h)
    return h


def conv2d_torch(x, kernel, bias):
    """x (N, C, H, W), kernel (O, C, kh, kw), valid convolution."""
    n, c, height, width = x.shape
    o, _, kh, kw = kernel.shape
    out = np.zeros((n, o, height - kh + 1, width - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + height - kh + 1, j:j + width - kw + 1]
            out += np.einsum("nchw,oc->nohw", patch, kernel[:, :, i, j])
    return out + bias[None, :, None, None]


def cnn_torch(layers, x):
    h = relu(conv2d_torch(x, layers[0]["kernel"], layers[0]["bias"]))
    bn = layers[0]["batchnorm"]
    h = bn["weight"][None, :, None, None] * (h - bn["running_mean"][None, :, None, None]) / np.sqrt(
        bn["running_var"][None, :, None, None] + 1e-5) + bn["bias"][None, :, None, None]
    h = relu(conv2d_torch(h, layers[1]["kernel"], layers[1]["bias"]))
    h = h.mean(axis=(2, 3))  # global average pooling
    return h @ layers[2]["kernel"].T + layers[2]["bias"]


def test_keras_mlp_same_output_after_removing_dead_units():
    rng = np.random.default_rng(0)
    sizes = [12, 16, 10, 3]
    layers = []
    for i in range(3):
        kernel = rng.standard_normal((sizes[i], sizes[i + 1]))
        bias = rng.standard_normal(sizes[i + 1])
        layers.append({"kernel": kernel, "bias": bias})
    # Dead units: 6 of 16 in layer 0, 4 of 10 in layer 1 (zero kernel column and bias).
    dead0, dead1 = [1, 3, 4, 8, 11, 15], [0, 2, 5, 9]
    layers[0]["kernel"][:, dead0] = 0
    layers[0]["bias"][dead0] = 0
    layers[1]["kernel"][:, dead1] = 0
    layers[1]["bias"][dead1] = 0
    layers[1]["batchnorm"] = [rng.uniform(0.5, 2, 10), rng.standard_normal(10), rng.standard_normal(10),
                              rng.uniform(0.5, 2, 10)]
    # A BatchNorm turns a dead unit into a constant; make the constant 0.
    gamma, beta, mean, var = layers[1]["batchnorm"]
    beta[dead1] = 0
    mean[dead1] = 0
    x = rng.standard_normal((20, 12))
    before = mlp_keras(layers, x)
    small = sp.prune_channels(layers, [6 / 16, 4 / 10], layout="keras")
    np.testing.assert_array_equal(small[0]["kept"], np.setdiff1d(np.arange(16), dead0))
    np.testing.assert_array_equal(small[1]["kept"], np.setdiff1d(np.arange(10), dead1))
    assert small[0]["kernel"].shape == (12, 10) and small[0]["bias"].shape == (10,)
    assert small[1]["kernel"].shape == (10, 6) and all(v.shape == (6,) for v in small[1]["batchnorm"])
    assert small[2]["kernel"].shape == (6, 3) and small[2]["bias"].shape == (3,)
    np.testing.assert_allclose(mlp_keras(small, x), before, rtol=1e-12, atol=1e-12)
    # Inputs untouched.
    assert layers[0]["kernel"].shape == (12, 16)


def test_torch_cnn_same_output_after_removing_dead_filters():
    rng = np.random.default_rng(1)
    conv1 = {"kernel": rng.standard_normal((8, 3, 3, 3)), "bias": rng.standard_normal(8),
             "batchnorm": {"weight": rng.uniform(0.5, 2, 8), "bias": rng.standard_normal(8),
                           "running_mean": rng.standard_normal(8), "running_var": rng.uniform(0.5, 2, 8)}}
    conv2 = {"kernel": rng.standard_normal((6, 8, 3, 3)), "bias": rng.standard_normal(6)}
    fc = {"kernel": rng.standard_normal((4, 6)), "bias": rng.standard_normal(4), "name": "fc"}
    dead1, dead2 = [2, 5], [0, 3, 4]
    conv1["kernel"][dead1] = 0
    conv1["bias"][dead1] = 0
    conv1["batchnorm"]["bias"][dead1] = 0
    conv1["batchnorm"]["running_mean"][dead1] = 0
    conv2["kernel"][dead2] = 0
    conv2["bias"][dead2] = 0
    layers = [conv1, conv2, fc]
    x = rng.standard_normal((2, 3, 9, 9))
    before = cnn_torch(layers, x)
    small = sp.prune_channels(layers, [0.25, 0.5], layout="torch", norm=1)
    assert small[0]["kernel"].shape == (6, 3, 3, 3)
    assert small[1]["kernel"].shape == (3, 6, 3, 3)
    assert small[2]["kernel"].shape == (4, 3) and small[2]["name"] == "fc"
    assert set(small[0]["batchnorm"]) == {"weight", "bias", "running_mean", "running_var"}
    np.testing.assert_allclose(cnn_torch(small, x), before, rtol=1e-10, atol=1e-10)


def test_channels_chosen_by_norm_with_index_ties():
    k1 = np.array([[1.0, 3.0, 1.0, 2.0]])  # keras (in=1, out=4); norms 1, 3, 1, 2
    k2 = np.arange(8.0).reshape(4, 2)
    small = sp.prune_channels([{"kernel": k1}, {"kernel": k2}], 0.5)
    np.testing.assert_array_equal(small[0]["kept"], [1, 3])
    np.testing.assert_array_equal(small[1]["kernel"], k2[[1, 3]])
    assert small[0]["kernel"].dtype == k1.dtype


def test_float32_dtypes_are_kept_and_single_layer_is_untouched():
    k = np.ones((3, 4), np.float32)
    out = sp.prune_channels([{"kernel": k}], 0.5)
    assert out[0]["kernel"].shape == (3, 4) and out[0]["kernel"].dtype == np.float32


@pytest.mark.parametrize("call, error", [
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((5, 2))}], 0.5), ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((4, 2))}], 0.5, layout="jax"),
     ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((4, 2))}], 1.5), ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((4, 2))}], [0.5, 0.5]), ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((4, 2))}], 0.5, norm=3),
     ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones(4)}, {"kernel": np.ones((4, 2))}], 0.5), ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4)), "bias": np.ones(3)}, {"kernel": np.ones((4, 2))}], 0.5),
     ValueError),
    (lambda: sp.prune_channels([{"kernel": np.full((3, 4), np.nan)}, {"kernel": np.ones((4, 2))}], 0.5),
     ValueError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.full((4, 2), np.inf)}], 0.5),
     ValueError),
    (lambda: sp.prune_channels([{"bias": np.ones(3)}], 0.5), TypeError),
    (lambda: sp.prune_channels({"kernel": np.ones((3, 4))}, 0.5), TypeError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4), np.int64)}], 0.5), TypeError),
    (lambda: sp.prune_channels([{"kernel": np.ones((3, 4))}, {"kernel": np.ones((4, 2))}], "half"), TypeError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
