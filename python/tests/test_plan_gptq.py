"""GPTQ candidates for the planner: grouped GPTQ on conv kernels against the
float64 reference GPTQ on the im2col matrix, calibrated sensitivity (output
damage against NumPy's ``tr(ΔW H ΔWᵀ)``; GPTQ below round-to-nearest), plans
that compress with their calibration source, and the sources themselves (a
sequential source gives the same result on every run; ONNX weights held in
``Constant`` nodes are calibrated like initializers)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _digits_cnn
from swiftprune.calibrated_methods import gptq_tensor
from swiftprune.calibration.arrays import LayerView
from swiftprune.calibration.hessian import HessianAccumulator

from _reference_calibration import reference_gptq_hessian
from test_plan import DATA

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("layout", ["torch", "keras"])
def test_grouped_gptq_on_a_conv_kernel_matches_the_reference_on_its_matrix(layout):
    out, cin, k, group = 6, 4, 3, 12
    patches = RNG.standard_normal((400, cin * k * k)) * np.linspace(0.2, 2.0, cin * k * k)
    matrix = RNG.standard_normal((out, cin * k * k)).astype(np.float32)  # (out, K), K in the weight's order
    if layout == "torch":
        w = matrix.reshape(out, cin, k, k)
    else:  # Keras (kh, kw, in, out): K in (kh, kw, in) order
        w = np.ascontiguousarray(matrix.T).reshape(k, k, cin, out)
    acc = HessianAccumulator(cin * k * k, layout=layout).update(patches.astype(np.float32))
    q = gptq_tensor(w, calibration=LayerView("conv", acc, layout, w.shape), bits=4, symmetric=True,
                    group_size=group, damp=0.01, act_order=False, static_groups=False, mse=False, block_size=128)
    values, scales, _ = reference_gptq_hessian(matrix, patches.T @ patches, 4, group)
    expected = (values * np.repeat(scales, group, axis=1)).astype(np.float32)  # (out, K)
    got = q.dequantize()
    got_matrix = got.reshape(out, -1) if layout == "torch" else got.reshape(-1, out).T
    assert q.shape == w.shape and q.group_size == group
    assert np.mean(np.abs(got_matrix - expected) > 1e-5) < 0.02  # float32 vs float64 Hessian: rare one-step flips
    np.testing.assert_allclose(np.sort(np.unique(q.scale)), np.sort(np.unique(scales)), rtol=1e-5)
    assert q.nbytes == (w.size * 4 + 7) // 8 + 4 * out * (cin * k * k // group)


@pytest.fixture(scope="module")
def cnn():
    data = np.load(DATA)
    weights = {name: data[f"cnn/{name}"] for name in _digits_cnn.NAMES}
    x_train, _, x_test, y_test = _digits_cnn.load_split()
    inputs = _digits_cnn.layer_inputs(list(weights.values()), x_train[:600])
    del inputs["depthwise.kernel"]  # per-channel inputs, not patches: no GPTQ for it
    calibration = sp.calibration.from_arrays(inputs, layout="keras")
    return weights, calibration, inputs, lambda w: _digits_cnn.accuracy([w[n] for n in _digits_cnn.NAMES], x_test,
                                                                        y_test)


def test_calibrated_sensitivity_output_damage_and_gptq_below_rounding(cnn):
    weights, calibration, inputs, _ = cnn
    s = sp.sensitivity(weights, ["int4", "gptq4", "gptq3", "int8"], calibration=calibration, measure="output",
                       progress=False)
    assert s.calibration is calibration
    assert "gptq4" not in [o.candidate for o in s.options["depthwise.kernel"]]  # no calibration data for it
    compensated = False
    for name, x in inputs.items():
        w = weights[name].astype(np.float64).reshape(-1, weights[name].shape[-1])  # (K, out)
        h = x.astype(np.float64).T @ x.astype(np.float64)
        found = {o.candidate: o for o in s.options[name]}
        for label in ("int4", "gptq4", "gptq3"):
            dense = sp.compress({name: weights[name]}, found[label].stages and
                                [dict(st, include=name) for st in found[label].stages],
                                calibration=calibration, progress=False).weights[name]
            delta = dense.astype(np.float64).reshape(w.shape) - w
            expected = np.trace(delta.T @ h @ delta) / np.trace(w.T @ h @ w)
            assert found[label].damage == pytest.approx(expected, rel=1e-3), (name, label)
        if x.shape[0] >= 2 * x.shape[1]:
            assert found["gptq4"].damage < found["int4"].damage, name  # error compensation pays off
            compensated = True
        else:  # fewer samples than 2 x inputs: GPTQ falls back to rounding (calibrated_methods.gptq_tensor)
            assert found["gptq4"].damage == pytest.approx(found["int4"].damage, rel=1e-6), name
        assert found["gptq4"].bytes <= found["int4"].bytes  # values + per-channel scales (dead inputs: zeros, stored sparse)
    assert compensated


def test_plan_with_gptq_candidates_compresses_with_its_calibration(cnn, tmp_path):
    weights, calibration, _, evaluate = cnn
    candidates = ["float16", "int8", "int4", "gptq4", "gptq3", "int3"]
    s = sp.sensitivity(weights, candidates, calibration=calibration, measure="output", progress=False)
    original = sum(a.nbytes for a in weights.values())
    p = sp.plan(weights, target_ratio=3, sensitivity=s, evaluate=evaluate, progress=False)
    assert p.calibration is calibration
    path = tmp_path / "plan.safetensors"
    written = sp.compress(weights, p.recipe, calibration=p.calibration, progress=False).save(path)
    assert written == os.path.getsize(path) <= original / 3
    assert evaluate(sp.load_compressed(path).weights) == p.score
    with pytest.raises(ValueError, match="needs calibration"):
        sp.sensitivity(weights, ["gptq4"], progress=False)


onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")


def onnx_chain(constants: bool):
    """x(16) -MatMul W1-> Relu -MatMul W2-> y, the weights as initializers or as Constant nodes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 24)).astype(np.float32)
    w2 = rng.standard_normal((24, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    initializers = []
    if constants:
        nodes = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(a, n))
                 for n, a in (("W1", w1), ("W2", w2))] + nodes
    else:
        initializers = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, rng.standard_normal((200, 16)).astype(np.float32), {"W1": w1, "W2": w2}


def test_sequential_source_gives_the_same_result_on_every_run_and_reads_constant_weights():
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": 8}, "include": ["W1", "W2"]}]
    model, x, weights = onnx_chain(constants=False)
    source = sp.calibration.from_onnx(model, x, mode="sequential")
    first = sp.compress(weights, recipe, calibration=source, progress=False).weights
    second = sp.compress(weights, recipe, calibration=source, progress=False).weights
    for name in weights:
        np.testing.assert_array_equal(first[name], second[name])  # the second run did not start from the first's
    h = np.maximum(x @ first["W1"], 0)  # sequential: W2 sees the quantized W1
    np.testing.assert_allclose(source.statistics("W2").hessian_, h.T.astype(np.float64) @ h, rtol=1e-4, atol=1e-3)

    model_c, x_c, _ = onnx_chain(constants=True)
    lifted = sp.calibration.from_onnx(model_c, x_c, mode="sequential")
    assert set(lifted.layers) == {"W1", "W2"}
    from_constants = sp.compress(weights, recipe, calibration=lifted, progress=False).weights
    for name in weights:
        np.testing.assert_array_equal(from_constants[name], first[name])


def test_cli_plans_with_gptq_candidates_and_compresses_with_the_calibration(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    weights = {"fc.weight": (rng.standard_normal((96, 128)) * np.linspace(0.1, 3, 128)).astype(np.float32),
               "head.weight": rng.standard_normal((64, 96)).astype(np.float32)}
    sp.save_weights(tmp_path / "model.safetensors", weights)
    def correlated(features):  # inputs with a decaying spectrum, as real activations have
        mix = rng.standard_normal((features, features)) * np.geomspace(1, 0.01, features)[:, None]
        return (rng.standard_normal((512, features)) @ mix).astype(np.float32)

    np.savez(tmp_path / "inputs.npz", fc=correlated(128), head=correlated(96))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sp.__file__)))
    done = subprocess.run([sys.executable, "-m", "swiftprune", "compress", "model.safetensors", "-o",
                           "small.safetensors", "--target-ratio", "6", "--calibration", "inputs.npz", "--candidates",
                           "int8,int4,gptq4,gptq3", "--no-progress", "--save-recipe", "plan.json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    original = sum(a.nbytes for a in weights.values())
    assert os.path.getsize(tmp_path / "small.safetensors") <= original / 6
    assert "gptq" in (tmp_path / "plan.json").read_text()  # GPTQ beats rounding at equal bytes on these inputs
    assert {r["name"] for r in sp.load_compressed(tmp_path / "small.safetensors").report
            if "gptq" in r["stages"]} == {"fc.weight", "head.weight"}
