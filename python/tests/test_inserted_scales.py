"""AWQ / SmoothQuant in post-LN models: ``insert_scale: true`` puts an explicit
``Mul`` by ``1/s`` before layers whose input no op can absorb the scale (the
LayerNorm output also feeds the residual ``Add``; an activation or an
elementwise sum before the layer). Checked by running the written models in
onnxruntime: the float model with the Muls computes what the original does,
the quantized model computes what a float64 NumPy transcription of the block
computes with ``Q(W·s)`` applied to ``x / s``, and the residual branches read
the unscaled tensors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.activation_folding import fold

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from swiftprune.export.onnx import to_onnx  # noqa: E402

RNG = np.random.default_rng(12)
LINEAR = ("Wq", "Wk", "Wv", "Wo", "Wi", "Wf")


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def post_ln_block():
    """A post-LN encoder block without the softmax: h = LN1(x); q, k, v read h (and so does the residual
    Add); o reads relu(q + k) + v; h2 = LN2(o + h); i = relu(h2 Wi + bi); f reads i; y = LN3(f + h2).
    No op can absorb a scale for any of the six layers."""
    gain = np.ones(16, np.float32)
    gain[[3, 11]] = 20.0  # outlier channels after the LayerNorm
    w = {"g1": gain, "b1": f32(16, scale=0.1), "Wq": f32(16, 16), "bq": f32(16), "Wk": f32(16, 16),
         "Wv": f32(16, 16), "bv": f32(16), "Wo": f32(16, 16, scale=0.3), "g2": np.abs(f32(16)) + 0.5,
         "b2": f32(16, scale=0.1), "Wi": f32(16, 32), "bi": f32(32), "Wf": f32(32, 16, scale=0.3), "bf": f32(16),
         "g3": np.abs(f32(16)) + 0.5, "b3": f32(16, scale=0.1)}
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g1", "b1"], ["h"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["h", "Wq"], ["q0"]), helper.make_node("Add", ["q0", "bq"], ["q"]),
        helper.make_node("MatMul", ["h", "Wk"], ["k"]),
        helper.make_node("MatMul", ["h", "Wv"], ["v0"]), helper.make_node("Add", ["v0", "bv"], ["v"]),
        helper.make_node("Add", ["q", "k"], ["qk"]), helper.make_node("Relu", ["qk"], ["r"]),
        helper.make_node("Add", ["r", "v"], ["a"]),
        helper.make_node("MatMul", ["a", "Wo"], ["o"]), helper.make_node("Add", ["o", "h"], ["res1"]),
        helper.make_node("LayerNormalization", ["res1", "g2", "b2"], ["h2"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["h2", "Wi"], ["i0"]), helper.make_node("Add", ["i0", "bi"], ["i1"]),
        helper.make_node("Relu", ["i1"], ["i"]),
        helper.make_node("MatMul", ["i", "Wf"], ["f0"]), helper.make_node("Add", ["f0", "bf"], ["f"]),
        helper.make_node("Add", ["f", "h2"], ["res2"]),
        helper.make_node("LayerNormalization", ["res2", "g3", "b3"], ["y"], axis=-1, epsilon=1e-5),
    ]
    graph = helper.make_graph(nodes, "post_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"x": f32(288, 16)}


def numpy_block(w, x, inverse=None):
    """The block in float64; ``inverse``: per input tensor of the scaled layers, the 1/s multiplying it on the
    way into them only (the residual Adds read the unscaled tensor)."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    inverse = inverse or {}

    def ln(t, g, b):
        mean = t.mean(-1, keepdims=True)
        return (t - mean) / np.sqrt(((t - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * g + b

    def into(name, t):
        return t * inverse[name] if name in inverse else t

    h = ln(np.asarray(x, np.float64), w["g1"], w["b1"])
    q, k, v = into("h", h) @ w["Wq"] + w["bq"], into("h", h) @ w["Wk"], into("h", h) @ w["Wv"] + w["bv"]
    a = np.maximum(q + k, 0) + v
    h2 = ln(into("a", a) @ w["Wo"] + h, w["g2"], w["b2"])
    i = np.maximum(into("h2", h2) @ w["Wi"] + w["bi"], 0)
    return ln(into("i", i) @ w["Wf"] + w["bf"] + h2, w["g3"], w["b3"])


def run(path_or_model, inputs):
    options = ort.SessionOptions()  # no fusion of DequantizeLinear + MatMul into a dynamic int8 MatMul
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, inputs)[0]


def awq(insert, bits=4, group_size=16):
    return [{"quantize": {"method": "awq", "bits": bits, "group_size": group_size, "insert_scale": insert}}]


@pytest.mark.parametrize("mode", ["independent", "sequential"])
def test_inserted_muls_keep_the_float_function_and_leave_the_residuals_unscaled(tmp_path, mode):
    model, inputs = post_ln_block()
    calibration = sp.calibration.from_onnx(model, inputs, mode=mode)
    weights = calibration.weights()
    refused = fold(weights, awq(False), calibration)
    assert not refused.scales and not refused.inserted
    assert "also feeds Add" in refused.notes["Wq"] and refused.notes["Wf"].startswith("not scaled")
    outcome = fold(weights, awq(True), calibration)
    assert set(outcome.scales) == set(LINEAR)
    assert {i.tensor: set(i.consumers) for i in outcome.inserted} == {
        "h": {"Wq", "Wk", "Wv"}, "a": {"Wo"}, "h2": {"Wi"}, "i": {"Wf"}}
    for name in LINEAR:
        assert "Mul inserted" in outcome.notes[name], outcome.notes[name]
    # Only the consumers' kernels changed (scaled along their input axis 0); no LayerNorm was touched.
    assert set(outcome.arrays) == set(LINEAR)
    inserted = {i.tensor: i.inverse for i in outcome.inserted}
    for i in outcome.inserted:
        for name in i.consumers:
            np.testing.assert_allclose(outcome.arrays[name] * i.inverse[:, None], weights[name], rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "folded.onnx")
    export = to_onnx(model, path, outcome.arrays, inserted_scales=outcome.inserted)
    assert sum("Mul inserted" in how for how in export.weights.values()) == 4
    written = onnx.load(path)
    readers = {node.op_type + ":" + node.output[0]: list(node.input) for node in written.graph.node}
    assert readers["Add:res1"] == ["o", "h"] and readers["Add:res2"] == ["f", "h2"]  # residuals unscaled
    assert readers["MatMul:q0"][0] == readers["MatMul:k"][0] == readers["MatMul:v0"][0] == "h::inverse_scale::out"
    original = run(model, inputs)
    np.testing.assert_allclose(run(path, inputs), original, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(numpy_block(outcome.arrays | {k: v for k, v in weights.items() if k not in outcome.arrays},
                                           inputs["x"], inserted), original, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["independent", "sequential"])
def test_quantized_model_with_inserted_muls_computes_the_numpy_block(tmp_path, mode):
    model, inputs = post_ln_block()
    calibration = sp.calibration.from_onnx(model, inputs, mode=mode)
    weights = calibration.weights()
    result = sp.compress(weights, awq(True, bits=3), progress=False, calibration=calibration)
    assert all("Mul inserted" in result.scaling[n] for n in LINEAR)
    inverse = {i.tensor: i.inverse for i in result.inserted_scales}
    behind = {n: i.tensor for i in result.inserted_scales for n in i.consumers}
    for name in LINEAR:  # tensors: Q(W·s); weights: the effective Q(W·s)·diag(1/s), a correct model alone
        q = result.tensors[name]
        assert isinstance(q, sp.QuantizedTensor) and q.bits == 3
        np.testing.assert_allclose(result.weights[name], q.dequantize() * inverse[behind[name]][:, None],
                                   rtol=1e-6, atol=1e-7)
    path = str(tmp_path / "awq.onnx")
    export = to_onnx(model, path, result)  # 3-bit groups of 16: blocked DequantizeLinear
    assert sum(how.startswith("Mul inserted") for how in export.weights.values()) == 4
    got = run(path, inputs)
    scaled = {n: result.tensors[n].dequantize() for n in LINEAR}
    want = numpy_block({**weights, **scaled}, inputs["x"], inverse)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    # The dense weights alone (no Mul) compute the same.
    np.testing.assert_allclose(numpy_block({**weights, **result.weights}, inputs["x"]), want, rtol=1e-4, atol=1e-4)
    # AWQ with the inserted Muls beats round-to-nearest at 3 bits on the outlier channels.
    original = run(model, inputs)
    rtn = sp.compress(weights, [{"quantize": {"bits": 3, "axis": -1, "group_size": 16}, "include": list(LINEAR)}],
                      progress=False)
    rtn_out = numpy_block({**weights, **rtn.weights}, inputs["x"])
    assert np.linalg.norm(got - original) < 0.9 * np.linalg.norm(rtn_out - original)
    with pytest.raises(ValueError, match="cannot hold.*to_onnx"):
        result.save(str(tmp_path / "x.safetensors"))


def test_cli_inserts_the_muls(tmp_path):
    from swiftprune.cli import main

    model, inputs = post_ln_block()
    path, batches, out = str(tmp_path / "m.onnx"), str(tmp_path / "in.npz"), str(tmp_path / "awq.onnx")
    onnx.save(model, path)
    np.savez(batches, **inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["compress", path, "-o", out, "--quantize", "int4:16:method=awq:insert_scale=true",
                     "--calibration", batches, "--calibration-mode", "independent", "--no-progress", "--quiet"])
    assert code == 0
    written = onnx.load(out)
    assert sum(node.op_type == "Mul" for node in written.graph.node) == 4
    got, want = run(out, inputs), run(model, inputs)
    # int4 groups of 16 on random weights: 10% of the output; without its Muls the model is far off (> 100%).
    assert np.linalg.norm(got - want) < 0.15 * np.linalg.norm(want)


def test_keras_models_are_refused_with_the_reason():
    """A Keras post-LN block as the importer describes it (x -> LayerNorm -> Dense 'q' and the residual Add):
    the graph is not rebuilt, so no Mul is inserted and the reason says so."""
    from swiftprune.graph.ir import Graph, Node, Param
    from swiftprune.graph.scale_folding import find_fold_sites

    graph = Graph("keras")
    x, h, q, y = (graph.add_tensor(n, (None, 8)) for n in ("x", "h", "q", "y"))
    graph.add_node(Node("x", "input", "InputLayer", [], [x]))
    graph.add_node(Node("ln", "layernorm", "LayerNormalization", [x], [h],
                        {"gamma": Param("gamma", np.ones(8, np.float32), "gamma"),
                         "beta": Param("beta", np.zeros(8, np.float32), "bias")},
                        {"bind": [("gamma", 0, "out"), ("beta", 0, "out")]}))
    graph.add_node(Node("q", "dense", "Dense", [h], [q], {"kernel": Param("kernel", np.ones((8, 8), np.float32))},
                        {"bind": [("kernel", 1, "out"), ("kernel", 0, "in")], "inputs": {"kernel": "q/kernel"}}))
    graph.add_node(Node("res", "elementwise", "Add", [q, h], [y]))
    graph.outputs = [y]
    names = ["ln/gamma", "ln/beta", "q/kernel"]
    sites, reasons = find_fold_sites(graph, ["q/kernel"], names, insert=True)
    assert not sites and "also feeds Add 'res'" in reasons["q/kernel"]
    assert "ONNX models only" in reasons["q/kernel"]
    graph.format = "onnx"  # the same graph from ONNX: a Mul before 'q'
    sites, reasons = find_fold_sites(graph, ["q/kernel"], names, insert=True)
    assert not reasons and sites[0].inserted and sites[0].consumers == {"q/kernel": 0} and not sites[0].adjustments


def attention_block(merge_perm=(1, 0, 2), residual=False):
    """x -LN-> q, k, v (+ biases) -> heads (T, 2, 8) -> softmax(q kᵀ) v -> back to (T, 16) -> MatMul Wo.
    ``merge_perm``: the transpose after ``probs @ v`` ((1, 0, 2) undoes the split; (1, 2, 0) does not,
    so channel c of v is no longer channel c of Wo's input)."""
    w = {"g": np.abs(f32(16)) + 0.5, "b": f32(16, scale=0.1), "Wq": f32(16, 16), "Wk": f32(16, 16),
         "Wv": f32(16, 16), "bv": f32(16), "Wo": f32(16, 16), "heads": np.array([-1, 2, 8], np.int64),
         "flat": np.array([-1, 16], np.int64)}
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["h"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["h", "Wq"], ["q"]), helper.make_node("MatMul", ["h", "Wk"], ["k"]),
        helper.make_node("MatMul", ["h", "Wv"], ["v0"]), helper.make_node("Add", ["v0", "bv"], ["v"]),
        helper.make_node("Reshape", ["q", "heads"], ["qh"]), helper.make_node("Reshape", ["k", "heads"], ["kh"]),
        helper.make_node("Reshape", ["v", "heads"], ["vh"]),
        helper.make_node("Transpose", ["qh"], ["qt"], perm=[1, 0, 2]),
        helper.make_node("Transpose", ["kh"], ["kt"], perm=[1, 2, 0]),
        helper.make_node("Transpose", ["vh"], ["vt"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["qt", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vt"], ["c"]),
        helper.make_node("Transpose", ["c"], ["ct"], perm=list(merge_perm)),
        helper.make_node("Reshape", ["ct", "flat"], ["m"]),
        helper.make_node("MatMul", ["m", "Wo"], ["y0" if residual else "y"]),
    ] + ([helper.make_node("Add", ["y0", "h"], ["y"])] if residual else [])
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"x": f32(8, 16)}


def test_attention_output_scale_folds_through_the_heads_into_the_value_projection(tmp_path):
    model, inputs = attention_block()
    calibration = sp.calibration.from_onnx(model, [{"x": f32(8, 16)} for _ in range(8)], mode="independent")
    weights = calibration.weights()
    outcome = fold(weights, awq(False, group_size=8), calibration)
    assert "Add" in outcome.notes["Wo"] and "'Wo'" not in outcome.notes["Wo"], outcome.notes["Wo"]
    assert {"Wv", "bv", "Wo"} <= set(outcome.arrays) and not outcome.inserted
    s = 1 / (outcome.arrays["bv"] / weights["bv"])
    np.testing.assert_allclose(outcome.arrays["Wo"], weights["Wo"] * s[:, None], rtol=1e-5)
    path = str(tmp_path / "folded.onnx")
    to_onnx(model, path, outcome.arrays)
    np.testing.assert_allclose(run(path, inputs), run(model, inputs), rtol=1e-4, atol=1e-4)
    # A transpose that moves the channels before the merge: refused with the reason.
    moved, _ = attention_block(merge_perm=(1, 2, 0))
    calibration = sp.calibration.from_onnx(moved, [{"x": f32(8, 16)} for _ in range(8)], mode="independent")
    notes = fold(calibration.weights(), awq(False, group_size=8), calibration).notes
    assert notes["Wo"].startswith("not scaled") and "moves the channels" in notes["Wo"], notes["Wo"]


def test_weight_files_cannot_hold_the_inserted_muls(tmp_path):
    model, inputs = post_ln_block()
    calibration = sp.calibration.from_onnx(model, inputs, mode="independent")
    source = str(tmp_path / "w.safetensors")
    sp.save_weights(source, calibration.weights())
    for out in ("c.safetensors", "d.npz"):
        with pytest.raises(ValueError, match=r"recipe stage 0 \(quantize\): insert_scale adds Mul ops.*to_onnx"):
            sp.compress_file(source, str(tmp_path / out), awq(True), calibration=calibration, progress=False)
    assert not (tmp_path / "c.safetensors").exists()


def test_sequential_capture_model_is_the_exported_one_when_a_value_projection_is_behind_a_mul(tmp_path):
    """Post-LN attention: q/k/v get an inserted Mul (h also feeds the residual), and Wv's output columns
    absorb Wo's 1/s. In sequential mode the capture model must compute what the written model computes."""
    model, inputs = attention_block(residual=True)
    calibration = sp.calibration.from_onnx(model, [{"x": f32(8, 16)} for _ in range(8)], mode="sequential")
    weights = calibration.weights()
    fold(weights, awq(True, group_size=8), calibration)  # right after the fold: still the original function
    folded = str(tmp_path / "folded.onnx")
    to_onnx(model, folded, {**weights, **calibration.committed})
    np.testing.assert_allclose(run(folded, inputs), run(model, inputs), rtol=1e-4, atol=1e-4)
    result = sp.compress(weights, awq(True, group_size=8), progress=False, calibration=calibration)
    assert "Mul inserted" in result.scaling["Wv"] and "Add" in result.scaling["Wo"]
    path, capture = str(tmp_path / "awq.onnx"), str(tmp_path / "capture.onnx")
    to_onnx(model, path, result)
    to_onnx(model, capture, {**weights, **calibration.committed})  # the weights the capture model ran with
    np.testing.assert_allclose(run(capture, inputs), run(path, inputs), rtol=2e-4, atol=2e-4)
