"""Bad calibration input, every source (arrays, Keras, ONNX, PyTorch): a batch
that does not fit the model, NaN/Inf, too few samples: clear errors naming the
input or the layer, raised when the source is made (before any capture)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import CalibrationWarning

RNG = np.random.default_rng(5)
RECIPE = [{"quantize": {"method": "gptq", "bits": 4, "group_size": None}}]


def gram(x):
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    return x.T @ x


def test_arrays_source():
    w = {"fc.weight": RNG.standard_normal((8, 16)).astype(np.float32)}
    with pytest.raises(ValueError, match=r"'fc\.weight'.*layer 'fc': 15 input features"):
        sp.compress(w, RECIPE, progress=False, calibration=sp.calibration.from_arrays(
            {"fc": RNG.standard_normal((40, 15)).astype(np.float32)}))
    bad = RNG.standard_normal((40, 16)).astype(np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"layer 'fc'.*NaN"):
        sp.calibration.from_arrays({"fc": bad})
    with pytest.warns(CalibrationWarning, match=r"'fc\.weight'.*4 calibration samples for 16 inputs"):
        sp.compress(w, RECIPE, progress=False, calibration=sp.calibration.from_arrays(
            {"fc": RNG.standard_normal((4, 16)).astype(np.float32)}))


def keras_two_layers():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'swiftprune[keras]')")
    inp = keras.Input((16,), name="x")
    img = keras.Input((6, 6, 1), name="img")
    out = keras.layers.Dense(4, name="out")(keras.layers.Dense(8, name="fc")(inp))
    conv = keras.layers.Conv2D(2, 3, name="conv")(img)
    return keras, keras.Model([inp, img], [out, conv])


def test_keras_source():
    keras, model = keras_two_layers()
    img = RNG.standard_normal((3, 6, 6, 1)).astype(np.float32)
    with pytest.raises(ValueError, match=r"Keras calibration: calibration input 'x' of batch 1 has shape \(40, 15\); "
                                         r"the model expects \(\?, 16\)"):
        sp.calibration.from_keras(model, [{"x": RNG.standard_normal((40, 16)), "img": img},
                                          {"x": RNG.standard_normal((40, 15)), "img": img}])
    with pytest.raises(ValueError, match=r"input 'x' of batch 0 has shape \(40, 2, 16\)"):
        sp.calibration.from_keras(model, {"x": RNG.standard_normal((40, 2, 16)), "img": img})
    with pytest.raises(ValueError, match=r"input 'img' of batch 0 has shape \(3, 5, 6, 1\)"):
        sp.calibration.from_keras(model, {"x": RNG.standard_normal((40, 16)), "img": img[:, 1:]})
    bad = RNG.standard_normal((40, 16))
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"input 'x' of batch 0 contains NaN or Inf"):
        sp.calibration.from_keras(model, {"x": bad, "img": img})
    # Keras itself adds or drops a size-1 last axis: (3, 6, 6) images fit (?, 6, 6, 1)
    cal = sp.calibration.from_keras(model, {"x": RNG.standard_normal((40, 16)), "img": img[..., 0]}, mode="independent")
    patches = np.lib.stride_tricks.sliding_window_view(img, (3, 3), axis=(1, 2))  # N, 4, 4, 1, 3, 3
    rows = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 9)
    np.testing.assert_allclose(cal.statistics("conv/kernel").hessian_, gram(rows), rtol=1e-5, atol=1e-5)
    with pytest.warns(CalibrationWarning, match=r"'fc/kernel'.*4 calibration samples for 16 inputs"):
        cal = sp.calibration.from_keras(model, {"x": RNG.standard_normal((4, 16)), "img": img})
        sp.compress(cal.weights(), RECIPE, progress=False, calibration=cal)
    # A sequential source refuses a committed tensor it cannot apply (it was silently skipped before).
    with pytest.raises(ValueError, match=r"Keras calibration: cannot apply the committed tensor 'fc/bias_typo'"):
        cal.commit("fc/bias_typo", np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"'fc/bias' has 5 values, but the model's has shape \(8,\)"):
        cal.commit("fc/bias", np.zeros(5, np.float32))
    assert "fc/bias_typo" not in cal.committed and "fc/bias" not in cal.committed  # refused: not committed


def test_onnx_source():
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
    from onnx import TensorProto, helper, numpy_helper

    w1 = RNG.standard_normal((16, 8)).astype(np.float32)
    w2 = RNG.standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match=r"ONNX calibration: calibration input 'x' of batch 0 has shape \(40, 15\); "
                                         r"the model expects \(\?, 16\)"):
        sp.calibration.from_onnx(model, RNG.standard_normal((40, 15)).astype(np.float32))
    with pytest.raises(ValueError, match=r"input 'x' of batch 0 has shape \(16,\)"):
        sp.calibration.from_onnx(model, RNG.standard_normal(16).astype(np.float32))
    bad = RNG.standard_normal((40, 16)).astype(np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"input 'x' of batch 0 contains NaN or Inf"):
        sp.calibration.from_onnx(model, bad)
    with pytest.raises(ValueError, match=r"input 'x' of batch 0 is int32; the model expects float32"):
        sp.calibration.from_onnx(model, np.ones((40, 16), np.int32))
    # float64 NumPy batches run in the model's float32 (onnxruntime refused them before)
    x = RNG.standard_normal((40, 16))
    cal = sp.calibration.from_onnx(model, x, mode="independent")
    np.testing.assert_allclose(cal.statistics("W2").hessian_, gram(x.astype(np.float32) @ w1), rtol=1e-5, atol=1e-3)
    with pytest.warns(CalibrationWarning, match=r"'W1'.*4 calibration samples for 16 inputs"):
        cal = sp.calibration.from_onnx(model, RNG.standard_normal((4, 16)).astype(np.float32))
        sp.compress(cal.weights(), RECIPE, progress=False, calibration=cal)
    committed = {k: np.array(v) for k, v in cal.committed.items()}  # (by the compress above)
    with pytest.raises(ValueError, match=r"ONNX calibration: cannot apply the committed tensor 'W3'"):
        cal.commit("W3", np.zeros((8, 4), np.float32))
    with pytest.raises(ValueError, match=r"'W2' has 8 values, but the model's has shape \(8, 4\)"):
        cal.commit("W2", np.zeros(8, np.float32))
    assert sorted(cal.committed) == sorted(committed)  # the refused tensors changed nothing
    for name, value in committed.items():
        np.testing.assert_array_equal(cal.committed[name], value)


def test_torch_source():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"layer '0\.weight' \(Linear, 16 input features\) got inputs of shape "
                                         r"\(40, 15\)"):
        sp.calibration.from_torch(net, RNG.standard_normal((40, 15)).astype(np.float32))
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match=r"layer '0\.weight' \(Conv2d, 3 input channels\) got inputs of shape "
                                         r"\(2, 4, 8, 8\)"):
        sp.calibration.from_torch(conv, RNG.standard_normal((2, 4, 8, 8)).astype(np.float32))
    bad = RNG.standard_normal((40, 16)).astype(np.float32)
    bad[2, 2] = np.inf
    with pytest.raises(ValueError, match=r"layer '0\.weight'.*NaN or Inf"):
        sp.calibration.from_torch(net, bad, mode="independent").statistics("0.weight")
    # float64 NumPy batches run in the model's float32 (they failed inside torch before)
    x = RNG.standard_normal((40, 16))
    cal = sp.calibration.from_torch(net, x, mode="independent")
    np.testing.assert_allclose(cal.statistics("0.weight").hessian_, gram(x.astype(np.float32)), rtol=1e-5, atol=1e-4)
    with pytest.warns(CalibrationWarning, match=r"'0\.weight'.*4 calibration samples for 16 inputs"):
        cal = sp.calibration.from_torch(net, RNG.standard_normal((4, 16)).astype(np.float32))
        sp.compress(cal.weights(), RECIPE, progress=False, calibration=cal)
