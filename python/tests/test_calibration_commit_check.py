"""One commit check for every sequential calibration source (``ModelCalibration.commit``): an unknown or
wrongly sized committed tensor is refused with each source's own words, the messages word for word as each
source wrote them when it checked in its own ``_apply_weight`` (transcribed here); a subclass that only
implements ``weights()`` gets the check from it (read once), and one without ``weights()`` keeps working."""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator
from swiftprune.calibration.model_source import CapturedLayer, ModelCalibration

RNG = np.random.default_rng(1012)


def refused(cal, name, value, message):
    """``cal.commit(name, value)`` raises exactly ``message`` and commits nothing."""
    before = dict(cal.committed)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        cal.commit(name, value)
    assert cal.committed == before


def test_torch_messages():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    cal = sp.calibration.from_torch(net, RNG.standard_normal((20, 6)).astype(np.float32))
    refused(cal, "2.bias_typo", np.zeros(3, np.float32),
            "PyTorch calibration: cannot apply the committed tensor '2.bias_typo': the module has no floating-point "
            "parameter or buffer of that name (its state_dict keys, as calibration.weights() gives them, are the "
            "names compress() must use)")
    refused(cal, "0.weight", np.zeros((4, 5), np.float32),
            "PyTorch calibration: the committed tensor '0.weight' has 20 values, but the module's has shape (4, 6)")
    cal.commit("0.weight", np.ones(24, np.float32))  # the right size in another shape: taken, as before
    np.testing.assert_array_equal(cal.model[0].weight.detach().numpy(), np.ones((4, 6), np.float32))


def test_keras_messages():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'swiftprune[keras]')")
    x = keras.Input((6,), name="x")
    model = keras.Model(x, keras.layers.Dense(3, name="fc")(keras.layers.Dense(4, name="hidden")(x)))
    cal = sp.calibration.from_keras(model, RNG.standard_normal((20, 6)))
    refused(cal, "fc/bias_typo", np.zeros(3, np.float32),
            "Keras calibration: cannot apply the committed tensor 'fc/bias_typo': the model has no variable of that "
            "path (calibration.weights() gives the names compress() must use)")
    refused(cal, "fc/kernel", np.zeros(5, np.float32),
            "Keras calibration: the committed tensor 'fc/kernel' has 5 values, but the model's has shape (4, 3)")
    cal.commit("fc/bias", np.full(3, 0.5, np.float32))
    np.testing.assert_array_equal(np.asarray(cal.model.get_layer("fc").bias.numpy()), np.full(3, 0.5, np.float32))


def test_onnx_messages_and_a_non_float_initializer():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
    from onnx import TensorProto, helper, numpy_helper

    w1 = RNG.standard_normal((6, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    cal = sp.calibration.from_onnx(model, RNG.standard_normal((20, 6)).astype(np.float32))
    assert "shape" not in cal.weights()  # (only float initializers are weights)
    refused(cal, "W3", np.zeros((6, 4), np.float32),
            "ONNX calibration: cannot apply the committed tensor 'W3': the model has no initializer of that name "
            "(calibration.weights() gives the names compress() must use)")
    refused(cal, "W1", np.zeros(8, np.float32),
            "ONNX calibration: the committed tensor 'W1' has 8 values, but the model's has shape (6, 4)")
    cal.commit("shape", np.array([-1, 4], np.int64))  # any initializer of the model is taken, as before
    assert "shape" in cal.committed


class Doubling(ModelCalibration):
    """A user's source in the shape of benchmarks/calibration_mpnet.py's: one layer y = x Wᵀ, captured by hand;
    ``reads`` counts the calls of ``weights()``."""

    def __init__(self, with_weights=True):
        self.w = RNG.standard_normal((3, 4)).astype(np.float32)
        self.x = RNG.standard_normal((10, 4))
        self.reads = 0
        self.with_weights = with_weights
        super().__init__([CapturedLayer("w", "w", "x", "torch", 4)], "sequential")

    def _capture(self, layers):
        return {layer.name: HessianAccumulator(4, name=layer.name).update(self.x) for layer in layers}

    def _apply_weight(self, name, weights):
        self.w = np.asarray(weights, np.float32).reshape(self.w.shape)

    def weights(self):
        if not self.with_weights:
            raise NotImplementedError
        self.reads += 1
        return {"w": self.w}


def test_a_subclass_gets_the_check_from_weights_read_once():
    cal = Doubling()
    refused(cal, "v", np.zeros((3, 4), np.float32),
            "Calibration: cannot apply the committed tensor 'v': the model has no tensor of that name "
            "(calibration.weights() gives the names compress() must use)")
    refused(cal, "w", np.zeros(5, np.float32),
            "Calibration: the committed tensor 'w' has 5 values, but the model's has shape (3, 4)")
    for _ in range(5):
        cal.commit("w", np.ones((3, 4), np.float32))
    assert cal.reads == 1
    result = sp.compress({"w": cal.w}, [{"quantize": {"method": "gptq", "bits": 4, "group_size": None}}],
                         progress=False, calibration=cal)
    assert set(result.weights) == {"w"}


def test_a_subclass_without_weights_commits_unchecked():
    cal = Doubling(with_weights=False)
    cal.commit("w", np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(cal.w, np.ones((3, 4), np.float32))


def test_the_mpnet_benchmark_source_refuses_an_unknown_tensor():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import calibration_mpnet as mp
    from test_mpnet_encoder import tiny_weights

    rng = np.random.default_rng(3)
    w = tiny_weights(rng)
    source = mp.MPNetCalibration(w, [rng.integers(2, 20, size=n) for n in (4, 6)], "sequential")
    name = "encoder.layer.0.attention.attn.q.weight"
    refused(source, name + "_typo", w[name], f"Calibration: cannot apply the committed tensor '{name}_typo': the "
            "model has no tensor of that name (calibration.weights() gives the names compress() must use)")
    source.commit(name, 2 * w[name])
    np.testing.assert_array_equal(source.current[name], 2 * w[name])
