"""swiftprune.export.to_onnx: onnxruntime runs the exported model, and with
graph optimizations that keep its operators (BASIC) its output equals the
float model's output with the dequantized weights put in; files are smaller."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import swiftprune as sp

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (pip install 'swiftprune[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from swiftprune.export.onnx import float_weights, to_onnx  # noqa: E402

import _digits_models as digits  # noqa: E402

RNG = np.random.default_rng(21)


def session(path, level=None):
    options = ort.SessionOptions()
    if level is not None:
        options.graph_optimization_level = level
    options.intra_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def run(path, x, level=None):
    s = session(path, level)
    return s.run(None, {s.get_inputs()[0].name: x})[0]


BASIC = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # no fusion into int8 kernels: the graph's own arithmetic


def reference_model(model, weights, path):
    """The float model with `weights` (the dequantized ones) as its initializers."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    for init in ref.graph.initializer:
        if init.name in weights:
            init.CopyFrom(numpy_helper.from_array(np.asarray(weights[init.name], np.float32), init.name))
    onnx.save(ref, path)
    return path


def mlp_model(w, opset=17, constants=False):
    """x (N, in) -> MatMul/Add/Relu -> MatMul/Add; weights as initializers or Constant nodes."""
    arrays = {"fc1.weight": w["fc1/kernel"], "fc1.bias": w["fc1/bias"], "fc2.weight": w["fc2/kernel"],
              "fc2.bias": w["fc2/bias"]}
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"]), helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "fc2.weight"], ["h3"]),
             helper.make_node("Add", ["h3", "fc2.bias"], ["y"])]
    inits = [numpy_helper.from_array(a, n) for n, a in arrays.items()]
    if constants:
        nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in inits] + nodes
        inits = []
    k, n = arrays["fc1.weight"].shape[0], arrays["fc2.weight"].shape[1]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def cnn_model(w, opset=17):
    """The digits CNN in NCHW: Conv/Relu, NHWC flatten (as Keras), Dense/Relu, Dense."""
    arrays = {"conv.weight": w["conv/kernel"].transpose(3, 2, 0, 1).copy(), "conv.bias": w["conv/bias"],
              "fc1.weight": w["fc1/kernel"], "fc1.bias": w["fc1/bias"], "fc2.weight": w["fc2/kernel"],
              "fc2.bias": w["fc2/bias"], "shape": np.array([-1, 576], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c0"]), helper.make_node("Relu", ["c0"], ["c1"]),
             helper.make_node("Transpose", ["c1"], ["c2"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["c2", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "fc1.weight"], ["h0"]), helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "fc2.weight"], ["h3"]),
             helper.make_node("Add", ["h3", "fc2.bias"], ["y"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx")
    w = digits.weights()
    out = {}
    for name, model in (("mlp", mlp_model(w["mlp"])), ("cnn", cnn_model(w["cnn"]))):
        path = directory / f"{name}.onnx"
        onnx.save(model, path)
        out[name] = (model, path)
    return out


def inputs(kind):
    x = digits.test_split()[0]
    return x if kind == "mlp" else x.reshape(-1, 1, 8, 8).astype(np.float32)


def accuracy(path, kind, level=None):
    return float((run(path, inputs(kind), level).argmax(axis=1) == digits.test_split()[1]).mean())


# Keras-layout MatMul weights (in, out): per output channel is axis -1, groups run along the inputs.
RECIPES = {
    "int8": [{"quantize": {"bits": 8, "axis": -1}, "include": "fc*.weight"},
             {"quantize": {"bits": 8, "axis": 0}, "include": "conv.weight"}],
    "int4": [{"quantize": {"bits": 4, "axis": -1, "group_size": 32}, "include": "fc*.weight"},
             {"quantize": {"bits": 4, "axis": 0}, "include": "conv.weight"}],
}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_digits_models_match_their_dequantized_weights(models, tmp_path, kind, scheme):
    model, path = models[kind]
    weights = float_weights(path)
    recipe = [stage for stage in RECIPES[scheme] if kind == "cnn" or stage["include"] != "conv.weight"]
    result = sp.compress(weights, recipe, progress=False)
    out = to_onnx(path, tmp_path / "q.onnx", result)
    assert out.nbytes == os.path.getsize(tmp_path / "q.onnx")
    kinds = set(out.weights.values())
    if scheme == "int8":
        assert kinds <= {"DequantizeLinear int8 axis 1", "DequantizeLinear int8 axis 0"} and out.opset == 17
    else:
        assert "MatMulNBits int4 block 32" in kinds
        assert ("DequantizeLinear int4 axis 0" in kinds) is (kind == "cnn")
        assert out.opset == (21 if kind == "cnn" else 17)  # int4 DequantizeLinear needs opset 21
    onnx.checker.check_model(onnx.load(tmp_path / "q.onnx"))
    reference = reference_model(model, result.weights, tmp_path / "ref.onnx")
    x = inputs(kind)
    np.testing.assert_allclose(run(tmp_path / "q.onnx", x, BASIC), run(reference, x, BASIC), rtol=1e-5, atol=1e-5)
    # With every onnxruntime optimization (int8 kernels that also quantize activations) accuracy holds.
    assert accuracy(tmp_path / "q.onnx", kind) >= accuracy(path, kind) - (0.01 if scheme == "int8" else 0.03)


def test_blocked_dequantize_linear_and_affine_matmul_nbits(models, tmp_path):
    model, path = models["mlp"]
    weights = float_weights(path)
    x = inputs("mlp")
    for options, expect in (({"symmetric": True}, "DequantizeLinear int4 axis 0 block 32"),
                            ({"symmetric": False}, "MatMulNBits uint4 block 32")):
        result = sp.compress(weights, [{"quantize": {"bits": 4, "axis": -1, "group_size": 32, **options},
                                        "include": "fc1.weight"}], progress=False)
        out = to_onnx(path, tmp_path / "q.onnx", result, matmul_nbits=not options["symmetric"])
        assert out.weights == {"fc1.weight": expect}
        reference = reference_model(model, result.weights, tmp_path / "ref.onnx")
        np.testing.assert_allclose(run(tmp_path / "q.onnx", x, BASIC), run(reference, x, BASIC), rtol=1e-5, atol=1e-5)


def test_matmul_nbits_zero_points_with_an_odd_number_of_blocks(tmp_path):
    # K = 96 in blocks of 32: three 4-bit zero points per column, packed into two bytes.
    w = {"fc1/kernel": RNG.standard_normal((96, 24)).astype(np.float32), "fc1/bias": np.zeros(24, np.float32),
         "fc2/kernel": RNG.standard_normal((24, 5)).astype(np.float32), "fc2/bias": np.zeros(5, np.float32)}
    model = mlp_model(w)
    onnx.save(model, tmp_path / "m.onnx")
    result = sp.compress(float_weights(tmp_path / "m.onnx"), [
        {"quantize": {"bits": 4, "axis": -1, "group_size": 32, "symmetric": False}, "include": "fc1.weight"},
        {"quantize": {"bits": 3, "axis": -1, "symmetric": True}, "include": "fc2.weight"}], progress=False)
    out = to_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", result)
    assert out.weights == {"fc1.weight": "MatMulNBits uint4 block 32",
                           "fc2.weight": "DequantizeLinear int4 axis 1 (3-bit values)"}
    x = RNG.standard_normal((7, 96)).astype(np.float32)
    reference = reference_model(model, result.weights, tmp_path / "ref.onnx")
    np.testing.assert_allclose(run(tmp_path / "q.onnx", x, BASIC), run(reference, x, BASIC), rtol=1e-5, atol=1e-5)


def test_pruned_weights_become_sparse_initializers_and_constants_are_weights(tmp_path):
    w = digits.weights()["mlp"]
    model = mlp_model(w, constants=True)
    onnx.save(model, tmp_path / "m.onnx")
    weights = float_weights(tmp_path / "m.onnx")
    assert sorted(weights) == ["fc1.weight", "fc2.weight"]  # rank >= 2 Constants; the biases stay Constants
    result = sp.compress(weights, [{"prune": {"sparsity": 0.9}}], progress=False)
    out = to_onnx(tmp_path / "m.onnx", tmp_path / "p.onnx", result)
    assert set(out.weights.values()) == {"sparse float32 (values + int64 indices)"}
    stored = onnx.load(tmp_path / "p.onnx")
    assert len(stored.graph.sparse_initializer) == 2
    x = inputs("mlp")
    expected = digits.mlp_forward({"fc1/kernel": result.weights["fc1.weight"], "fc1/bias": w["fc1/bias"],
                                   "fc2/kernel": result.weights["fc2.weight"], "fc2/bias": w["fc2/bias"]}, x)
    np.testing.assert_allclose(run(tmp_path / "p.onnx", x), expected, rtol=1e-4, atol=1e-4)


def test_file_sizes_int8_and_int4_g128(tmp_path):
    w = {"fc1/kernel": RNG.standard_normal((512, 512)).astype(np.float32), "fc1/bias": np.zeros(512, np.float32),
         "fc2/kernel": RNG.standard_normal((512, 256)).astype(np.float32), "fc2/bias": np.zeros(256, np.float32)}
    onnx.save(mlp_model(w), tmp_path / "m.onnx")
    base = os.path.getsize(tmp_path / "m.onnx")
    int8 = to_onnx(tmp_path / "m.onnx", tmp_path / "8.onnx", recipe=[{"quantize": {"bits": 8, "axis": -1}}])
    int4 = to_onnx(tmp_path / "m.onnx", tmp_path / "4.onnx",
                   recipe=[{"quantize": {"bits": 4, "axis": -1, "group_size": 128}}])
    assert base / int8.nbytes >= 3.5 and base / int4.nbytes >= 6.0
    x = RNG.standard_normal((3, 512)).astype(np.float32)
    assert run(tmp_path / "4.onnx", x).shape == (3, 256)


def test_from_a_compressed_file_and_errors(models, tmp_path):
    model, path = models["mlp"]
    result = sp.compress(float_weights(path), [{"quantize": {"bits": 8, "axis": -1}}], progress=False)
    result.save(tmp_path / "c.safetensors")
    out = to_onnx(path, tmp_path / "q.onnx", tmp_path / "c.safetensors")
    assert set(out.weights) == {"fc1.weight", "fc2.weight"}
    with pytest.raises(ValueError, match="'nope' is not a float weight of the model"):
        to_onnx(path, tmp_path / "x.onnx", {"nope": result.tensors["fc1.weight"]})
    with pytest.raises(ValueError, match="has shape"):
        to_onnx(path, tmp_path / "x.onnx", {"fc2.weight": result.tensors["fc1.weight"]})
    with pytest.raises(ValueError, match="not both"):
        to_onnx(path, tmp_path / "x.onnx", result, recipe=[{"quantize": {}}])
    with pytest.raises(FileNotFoundError):
        to_onnx(tmp_path / "missing.onnx", tmp_path / "x.onnx", result)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        to_onnx(tmp_path / "bad.onnx", tmp_path / "x.onnx", result)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export(models, tmp_path, capsys):
    from swiftprune import cli

    model, path = models["mlp"]
    result = sp.compress(float_weights(path), [{"quantize": {"bits": 4, "axis": -1, "group_size": 32}}], progress=False)
    result.save(tmp_path / "c.safetensors")
    assert cli.main(["export", str(tmp_path / "c.safetensors"), "--onnx", str(path), "-o", str(tmp_path / "q.onnx")]) == 0
    out = capsys.readouterr().out
    assert "fc1.weight  MatMulNBits int4 block 32" in out and f"({os.path.getsize(tmp_path / 'q.onnx'):,} bytes)" in out
    x = inputs("mlp")
    reference = reference_model(model, result.weights, tmp_path / "ref.onnx")
    np.testing.assert_allclose(run(tmp_path / "q.onnx", x, BASIC), run(reference, x, BASIC), rtol=1e-5, atol=1e-5)
    (tmp_path / "r.json").write_text('[{"quantize": {"bits": 8, "axis": -1}}]')
    assert cli.main(["export", "--recipe", str(tmp_path / "r.json"), "--onnx", str(path), "-o",
                     str(tmp_path / "r.onnx"), "-q"]) == 0
    assert cli.main(["export", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "exactly one of --onnx" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(path), "-o", "x.onnx"]) == 1
