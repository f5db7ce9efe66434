"""``bias_correction: true`` on a quantize stage: each quantized layer's bias
absorbs its mean output shift. Checked against the definition: over the
calibration data the corrected layer's mean output equals the original's
(onnxruntime runs the conv, whose mean runs over its zero-padded patches),
and against a float64 NumPy formula for weights given as arrays."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import CalibrationWarning

RNG = np.random.default_rng(11)


def test_arrays_bias_matches_the_numpy_formula_and_the_mean_output():
    w = RNG.standard_normal((16, 64)).astype(np.float32)
    b = RNG.standard_normal(16).astype(np.float32)
    x = (RNG.standard_normal((400, 64)) + 1.5).astype(np.float32)  # nonzero mean inputs
    weights = {"fc.weight": w, "fc.bias": b, "head.weight": RNG.standard_normal((4, 64)).astype(np.float32)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sp.compress(weights, [{"quantize": {"bits": 3, "axis": 0}, "bias_correction": True}],
                             progress=False, calibration={"fc": x, "head": x})
    assert any("head.weight" in str(c.message) and "no bias" in str(c.message) for c in caught)
    w_hat = result.weights["fc.weight"]
    expected = b.astype(np.float64) + (w.astype(np.float64) - w_hat) @ x.astype(np.float64).mean(0)
    np.testing.assert_allclose(result.weights["fc.bias"], expected, rtol=1e-5, atol=1e-5)
    mean_out = lambda weight, bias: (x.astype(np.float64) @ weight.T + bias).mean(0)  # noqa: E731
    np.testing.assert_allclose(mean_out(w_hat, result.weights["fc.bias"]), mean_out(w, b), atol=1e-4)
    assert np.abs(mean_out(w_hat, b) - mean_out(w, b)).max() > 1e-2  # there was a shift to correct
    rows = {r["name"]: r["stages"] for r in result.report}
    assert rows["fc.bias"] == "bias-corrected" and rows["fc.weight"] == "quantize.minmax"
    assert rows["head.weight"] == "quantize.minmax"  # quantized, uncorrected (it has no bias)


def test_bias_correction_needs_calibration_and_a_quantize_stage():
    weights = {"fc.weight": np.ones((4, 4), np.float32), "fc.bias": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match="bias_correction needs calibration"):
        sp.compress(weights, [{"quantize": {"bits": 4}, "bias_correction": True}], progress=False)
    with pytest.raises(ValueError, match="only quantize stages"):
        sp.compress(weights, [{"prune": {"sparsity": 0.5}, "bias_correction": True}], progress=False)
    with pytest.raises(TypeError, match="true or false"):
        sp.compress(weights, [{"quantize": {"bits": 4}, "bias_correction": "yes"}], progress=False)


def test_onnx_conv_and_matmul_add_mean_outputs_are_restored():
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
    from onnx import TensorProto, helper, numpy_helper

    init = {"K": RNG.standard_normal((6, 3, 3, 3)).astype(np.float32), "cb": RNG.standard_normal(6).astype(np.float32),
            "W": RNG.standard_normal((12, 5)).astype(np.float32), "b": RNG.standard_normal(5).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["img", "K", "cb"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [None, 3, 7, 7]),
                     helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 12])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inputs = {"img": (RNG.standard_normal((20, 3, 7, 7)) + 1.0).astype(np.float32),
              "x": (RNG.standard_normal((300, 12)) + 2.0).astype(np.float32)}

    def run(replace):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        for i, t in enumerate(m.graph.initializer):
            if t.name in replace:
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(replace[t.name], np.float32), t.name))
        conv, y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)
        return conv.astype(np.float64).mean((0, 2, 3)), y.astype(np.float64).mean(0)

    calibration = sp.calibration.from_onnx(model, inputs, mode="sequential")
    recipe = [{"quantize": {"bits": 3, "axis": 0}, "include": "K", "bias_correction": True},
              {"quantize": {"bits": 3, "axis": -1}, "include": "W", "bias_correction": True}]
    result = sp.compress(calibration.weights(), recipe, progress=False, calibration=calibration)
    original = run({})
    corrected = run(result.weights)
    uncorrected = run({"K": result.weights["K"], "W": result.weights["W"]})
    for want, got, bad in zip(original, corrected, uncorrected):
        np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())
        assert np.abs(bad - want).max() > 20 * np.abs(got - want).max()
    assert not np.array_equal(result.weights["cb"], init["cb"]) and not np.array_equal(result.weights["b"], init["b"])


def test_gptq_with_too_few_samples_rounds_to_nearest_and_says_so():
    w = RNG.standard_normal((8, 32)).astype(np.float32)
    few = RNG.standard_normal((40, 32)).astype(np.float32)  # < 2 x 32 inputs (a squeeze-excite layer)
    recipe = [{"quantize": {"method": "gptq", "bits": 4, "group_size": None}}]
    with pytest.warns(CalibrationWarning, match="40 calibration samples for 32 inputs.*minmax instead") as caught:
        result = sp.compress({"se.weight": w}, recipe, progress=False, calibration={"se": few})
    # The warning says how many samples GPTQ needs and how to get GPTQ anyway.
    message = str(caught[0].message)
    assert "at least 64" in message and "min_samples" in message and "rounded to nearest" in message
    rtn = sp.quantize(w, 4, axis=0)
    np.testing.assert_array_equal(result.tensors["se.weight"].dequantize(), rtn.dequantize())
    assert [r["stages"] for r in result.report] == ["quantize.gptq(fallback minmax)"]
    # min_samples: 0 keeps GPTQ whatever the count (its result differs from rounding).
    kept = sp.compress({"se.weight": w}, [{"quantize": dict(recipe[0]["quantize"], min_samples=0)}],
                       progress=False, calibration={"se": few})
    assert [r["stages"] for r in kept.report] == ["quantize.gptq"]
    assert not np.array_equal(kept.tensors["se.weight"].dequantize(), rtn.dequantize())
