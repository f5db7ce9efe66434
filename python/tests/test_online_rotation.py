"""Online Hadamard input rotation (``sp.OnlineHadamard``, recipe field ``rotate_input: hadamard``).

Checked against independent references: the Kronecker form against the dense block-diagonal
``scipy.linalg.hadamard`` matrix (float64); a float model with the rotation inserted and ``W R`` weights
against the original (NumPy float64, and onnxruntime on a written ONNX graph); GPTQ of ``W R`` on ``Rᵀ H R``
against the float64 GPTQ transcription; the recipe end to end (ONNX export run by onnxruntime against a
float64 NumPy transcription of the quantized rotated model); bad inputs against their messages."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.linalg

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator

from _reference_calibration import reference_gptq_hessian

RNG = np.random.default_rng(8)


def dense_rotation(features: int, block: int) -> np.ndarray:
    """The block-diagonal normalized Sylvester Hadamard matrix, from scipy."""
    return scipy.linalg.block_diag(*[scipy.linalg.hadamard(block) / np.sqrt(block)] * (features // block))


# --------------------------------------------------------------------------- #
# The rotation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("features,block,factors", [(64, 64, (8, 8)), (2048, 1024, (32, 32)), (96, 32, (4, 8)),
                                                    (256, 2, (1, 2)), (16, 1, (1, 1))])
def test_kronecker_form_equals_dense_block_hadamard(features, block, factors):
    rotation = sp.OnlineHadamard(features, block)
    assert rotation.factors == factors and rotation.macs_per_element == sum(factors)
    r = dense_rotation(features, block)
    ha, hb = rotation.factor_matrices()
    np.testing.assert_allclose(np.kron(ha, hb), scipy.linalg.hadamard(block) / np.sqrt(block), atol=1e-15)
    np.testing.assert_allclose(rotation.matrix(), r, atol=1e-15)
    x = RNG.standard_normal((3, 5, features))  # any leading axes
    np.testing.assert_allclose(rotation.apply(x), x @ r, atol=1e-12)
    np.testing.assert_allclose(rotation.apply(x, transpose=True), x @ r.T, atol=1e-12)
    x32 = x.astype(np.float32)
    y32 = rotation.apply(x32)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, x @ r, atol=2e-5)


@pytest.mark.parametrize("features,block,factors", [(1536, 768, (24, 32)), (24, 12, (12, 1)),
                                                    (1536, 1536, (48, 32))])
def test_twelve_times_power_of_two_blocks_are_orthogonal_hadamard(features, block, factors):
    """12 · 2^k: no scipy reference; the Kronecker pair equals the library's dense matrix, which is a
    normalized Hadamard matrix (entries ±1/√n, orthogonal)."""
    rotation = sp.OnlineHadamard(features, block)
    assert rotation.factors == factors
    ha, hb = rotation.factor_matrices()
    h = rotation.block()
    np.testing.assert_allclose(np.kron(ha, hb), h, atol=1e-15)
    np.testing.assert_allclose(np.abs(h), 1 / np.sqrt(block), atol=1e-15)
    np.testing.assert_allclose(h @ h.T, np.eye(block), atol=1e-12)
    x = RNG.standard_normal((4, features))
    np.testing.assert_allclose(rotation.apply(x), x @ rotation.matrix(), atol=1e-12)


def test_default_block_is_the_largest_power_of_two_dividing_the_width():
    assert sp.OnlineHadamard(3072).block_size == 1024
    assert sp.OnlineHadamard(768).block_size == 256
    assert sp.OnlineHadamard(10).block_size == 2
    with pytest.raises(ValueError, match="15 input features are odd"):
        sp.OnlineHadamard(15)
    assert sp.OnlineHadamard(15, 1).matrix().tolist() == np.eye(15).tolist()  # asked for: the identity


@pytest.mark.parametrize("layout", ["torch", "keras"])
def test_rotated_weight_on_rotated_inputs_is_the_original_layer(layout):
    rotation = sp.OnlineHadamard(64, 16)
    r = dense_rotation(64, 16)
    w = RNG.standard_normal((24, 64)) if layout == "torch" else RNG.standard_normal((64, 24))
    x = RNG.standard_normal((10, 64))
    want = x @ w.T if layout == "torch" else x @ w
    rotated = rotation.rotate_weight(w, layout)
    np.testing.assert_allclose(rotated, w @ r if layout == "torch" else r.T @ w, atol=1e-12)
    got = rotation.apply(x) @ (rotated.T if layout == "torch" else rotated)
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(rotation.unrotate_weight(rotated, layout), w, atol=1e-12)


def test_rotated_statistics_equal_a_capture_of_rotated_inputs():
    rotation = sp.OnlineHadamard(48, 12)
    x = RNG.standard_normal((200, 48)) + 3 * (np.arange(48) == 5)
    acc = HessianAccumulator(48).update(x)
    rotated = rotation.rotate_statistics(acc)
    fresh = HessianAccumulator(48).update(x @ rotation.matrix())
    np.testing.assert_allclose(rotated.hessian_, fresh.hessian_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rotated.sum_, fresh.sum_, atol=1e-9)
    assert rotated.count_ == fresh.count_ and np.isnan(rotated.abs_max_).all()


@pytest.mark.parametrize("act_order,mse,symmetric", [(False, False, True), (True, True, False)])
def test_gptq_of_rotated_weight_matches_float64_transcription(act_order, mse, symmetric):
    w = RNG.standard_normal((16, 128)).astype(np.float32)
    x = RNG.standard_normal((600, 128)).astype(np.float32)
    x[:, [7, 70]] *= 15  # outlier input channels
    rotation = sp.OnlineHadamard(128, 64)
    r = dense_rotation(128, 64)
    acc = rotation.rotate_statistics(HessianAccumulator(128).update(x))
    q = sp.gptq(rotation.rotate_weight(w), acc, 4, 32, symmetric=symmetric, act_order=act_order, mse=mse)
    x64 = x.astype(np.float64)
    values, scales, _ = reference_gptq_hessian((w.astype(np.float64) @ r).astype(np.float32), r.T @ (x64.T @ x64) @ r,
                                               4, 32, 0.01, symmetric, act_order, False, 100 if mse else 0)
    diff = np.abs(q.values.astype(np.int64) - values)
    assert diff.max() <= 1 and np.mean(diff != 0) < 0.01  # float32 sums in another order: rare ±1 flips
    assert np.mean(np.abs(q.scale - scales) > 1e-5 * np.abs(scales)) < 0.02
    # the rotation spreads the outlier channels: a lower output error than GPTQ of W itself
    plain = sp.gptq(w, HessianAccumulator(128).update(x), 4, 32, symmetric=symmetric, act_order=act_order, mse=mse)
    err_rotated = np.linalg.norm(x64 @ r @ (q.dequantize().astype(np.float64) - w.astype(np.float64) @ r).T)
    err_plain = np.linalg.norm(x64 @ (plain.dequantize().astype(np.float64) - w).T)
    assert err_rotated < err_plain


def test_bad_rotations_are_refused():
    with pytest.raises(ValueError, match="block_size 48 does not divide the 64 input features"):
        sp.OnlineHadamard(64, 48)
    with pytest.raises(ValueError, match="power of two or 12 times one.*got 20"):
        sp.OnlineHadamard(40, 20)
    with pytest.raises(ValueError, match="last axis must have 64 entries"):
        sp.OnlineHadamard(64).apply(np.ones((2, 32)))
    with pytest.raises(ValueError, match="2-D"):
        sp.OnlineHadamard(8).rotate_weight(np.ones((2, 8, 3)))
    with pytest.raises(ValueError, match="layout"):
        sp.OnlineHadamard(8).rotate_weight(np.ones((2, 8)), "tf")


# --------------------------------------------------------------------------- #
# ONNX: the inserted ops, and the recipe end to end
# --------------------------------------------------------------------------- #

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from swiftprune.export.onnx import to_onnx  # noqa: E402


def mlp(rank=2):
    """x (.., 16) -> MatMul W1 (16, 64) + b1 -> Relu -> MatMul W2 (64, 32) + b2 -> Relu -> Gemm W3 (16, 32),
    transB=1, + b3. W2's inputs have two outlier channels (large W1 columns)."""
    w1 = (RNG.standard_normal((16, 64)) * 0.5).astype(np.float32)
    w1[:, [3, 40]] *= 12
    w = {"W1": w1, "b1": RNG.standard_normal(64).astype(np.float32),
         "W2": (RNG.standard_normal((64, 32)) * 0.2).astype(np.float32), "b2": RNG.standard_normal(32).astype(np.float32),
         "W3": (RNG.standard_normal((16, 32)) * 0.2).astype(np.float32), "b3": RNG.standard_normal(16).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]),
             helper.make_node("MatMul", ["h", "W2"], ["g0"]), helper.make_node("Add", ["g0", "b2"], ["g1"]),
             helper.make_node("Relu", ["g1"], ["g"])]
    if rank == 2:
        nodes.append(helper.make_node("Gemm", ["g", "W3", "b3"], ["y"], transB=1))
    else:  # Gemm takes 2-D inputs only
        nodes += [helper.make_node("Transpose", ["W3"], ["W3t"], perm=[1, 0]),
                  helper.make_node("MatMul", ["g", "W3t"], ["y0"]), helper.make_node("Add", ["y0", "b3"], ["y"])]
    shape = [None, 16] if rank == 2 else [None, None, 16]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = RNG.standard_normal((512, 16) if rank == 2 else (8, 64, 16)).astype(np.float32)
    return model, w, {"x": x}


def numpy_mlp(w, x, rotations=None):
    """The MLP in float64; ``rotations``: per weight, the OnlineHadamard applied to that layer's input."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    rotations = rotations or {}

    def into(name, t):
        return t @ rotations[name].matrix() if name in rotations else t

    h = np.maximum(into("W1", np.asarray(x, np.float64)) @ w["W1"] + w["b1"], 0)
    g = np.maximum(into("W2", h) @ w["W2"] + w["b2"], 0)
    return into("W3", g) @ w["W3"].T + w["b3"]


def run(path_or_model, inputs):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, inputs)[0]


@pytest.mark.parametrize("rank", [2, 3])
def test_float_model_with_inserted_rotation_computes_the_original(tmp_path, rank):
    model, w, inputs = mlp(rank)
    rotations = {"W2": sp.OnlineHadamard(64, 64), "W3": sp.OnlineHadamard(32, 8)}
    if rank == 3:  # W3 reaches its MatMul through a Transpose: not a layer weight the export can rotate
        with pytest.raises(ValueError, match="input rotation of 'W3': no MatMul or Gemm reads it"):
            to_onnx(model, str(tmp_path / "x.onnx"), {}, input_rotations=rotations)
        del rotations["W3"]
    layouts = {"W2": "keras", "W3": "torch"}
    rotated = {n: r.rotate_weight(w[n], layouts[n]) for n, r in rotations.items()}
    path = str(tmp_path / "rotated.onnx")
    export = to_onnx(model, path, rotated, input_rotations=rotations)
    notes = [how for how in export.weights.values() if how.startswith("Hadamard rotation")]
    assert len(notes) == len(rotations) and "blocks of 64 = 8 x 8; 16 multiply-adds" in " ".join(notes)
    written = onnx.load(path)
    ops = [n.op_type for n in written.graph.node]
    assert ops.count("Shape") == len(rotations) and ops.count("Reshape") == 2 * len(rotations)
    original = run(model, inputs)
    np.testing.assert_allclose(run(path, inputs), original, rtol=1e-4, atol=1e-4)
    # (the rotated weights are rounded to float32)
    np.testing.assert_allclose(numpy_mlp({**w, **rotated}, inputs["x"], rotations), numpy_mlp(w, inputs["x"]),
                               atol=2e-5)


def recipe(mode_block=None, **extra):
    stage = {"quantize": {"method": "gptq", "bits": 4, "group_size": 16, "symmetric": False, "act_order": True},
             "include": ["W2", "W3"], "rotate_input": "hadamard", **extra}
    if mode_block is not None:
        stage["rotate_block_size"] = mode_block
    return [stage, {"quantize": {"method": "gptq", "bits": 4, "group_size": 16}, "include": ["W1"]}]


@pytest.mark.parametrize("mode", ["independent", "sequential"])
def test_recipe_rotation_end_to_end_through_onnxruntime(tmp_path, mode):
    model, w, inputs = mlp()
    calibration = sp.calibration.from_onnx(model, inputs, mode=mode)
    result = sp.compress(calibration.weights(), recipe(16), progress=False, calibration=calibration)
    assert set(result.input_rotations) == {"W2", "W3"}
    assert {n: (e.layout, e.rotation.block_size) for n, e in result.input_rotations.items()} == {
        "W2": ("keras", 16), "W3": ("torch", 16)}
    rotations = {n: e.rotation for n, e in result.input_rotations.items()}
    quantized = {n: result.tensors[n].dequantize() for n in ("W1", "W2", "W3")}
    want = numpy_mlp({**w, **quantized}, inputs["x"], rotations)  # float64, the rotated quantized model
    path = str(tmp_path / "q.onnx")
    export = to_onnx(model, path, result)
    assert sum(how.startswith("Hadamard rotation") for how in export.weights.values()) == 2
    np.testing.assert_allclose(run(path, inputs), want, rtol=2e-4, atol=2e-4)
    # .weights: the same function for unrotated inputs (W2: R Q(Rᵀ K), W3: Q(W R) Rᵀ)
    np.testing.assert_allclose(numpy_mlp({**w, **result.weights}, inputs["x"]), want, atol=1e-4)
    r2 = rotations["W2"].matrix()
    np.testing.assert_allclose(result.weights["W2"], r2 @ quantized["W2"], atol=1e-6)
    # GPTQ of Rᵀ K2 / W3 R on Rᵀ H R against the float64 reference, H from the layer's inputs in the float model
    # (independent) or in the model quantized so far (sequential: W1 and W2 as result.weights hold them)
    before = w if mode == "independent" else {**w, **result.weights}
    h = np.maximum(inputs["x"].astype(np.float64) @ before["W1"] + w["b1"], 0)
    g = np.maximum(h @ before["W2"].astype(np.float64) + w["b2"], 0)
    r3 = rotations["W3"].matrix()
    for name, matrix, rotation, x in (("W2", (r2.T @ w["W2"].astype(np.float64)).T, r2, h),
                                      ("W3", w["W3"].astype(np.float64) @ r3, r3, g)):
        values, _, _ = reference_gptq_hessian(matrix.astype(np.float32), rotation.T @ (x.T @ x) @ rotation, 4, 16,
                                              0.01, False, True)
        got = result.tensors[name].values
        diff = np.abs((got.T if name == "W2" else got).astype(np.int64) - values)
        assert diff.max() <= 1 and np.mean(diff != 0) < 0.02, name
    # the rotation lowers the output error of the layer reading the outlier channels
    plain = sp.compress(calibration.weights(), [{**recipe()[0], "rotate_input": None}, recipe()[1]], progress=False,
                        calibration=calibration)
    original = run(model, inputs)
    assert not plain.input_rotations
    assert np.linalg.norm(want - original) < np.linalg.norm(numpy_mlp({**w, **plain.weights}, inputs["x"]) - original)


def test_recipe_default_block_and_cli(tmp_path):
    from swiftprune.cli import main

    model, w, inputs = mlp()
    calibration = sp.calibration.from_onnx(model, inputs, mode="independent")
    result = sp.compress(calibration.weights(), recipe(), progress=False, calibration=calibration)
    assert {n: e.rotation.block_size for n, e in result.input_rotations.items()} == {"W2": 64, "W3": 32}
    stages = {row["name"]: row["stages"] for row in result.report}
    assert stages["W2"] == "input-rotated+quantize.gptq" and stages["W1"] == "quantize.gptq"
    path, batches, out, recipe_file = (str(tmp_path / n) for n in ("m.onnx", "in.npz", "out.onnx", "r.json"))
    onnx.save(model, path)
    np.savez(batches, **inputs)
    import json

    with open(recipe_file, "w") as f:
        json.dump(recipe(), f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["compress", path, "-o", out, "--recipe", recipe_file, "--calibration", batches,
                     "--calibration-mode", "independent", "--no-progress", "--quiet"])
    assert code == 0
    rotations = {n: e.rotation for n, e in result.input_rotations.items()}
    want = numpy_mlp({**w, **{n: result.tensors[n].dequantize() for n in ("W1", "W2", "W3")}}, inputs["x"], rotations)
    np.testing.assert_allclose(run(out, inputs), want, rtol=2e-4, atol=2e-4)


def test_bad_recipes_and_exports_are_refused(tmp_path):
    model, w, inputs = mlp()
    calibration = sp.calibration.from_onnx(model, inputs)
    weights = calibration.weights()

    def compress(stages):
        return sp.compress(weights, stages, progress=False, calibration=calibration)

    with pytest.raises(ValueError, match=r"stage 0 \(quantize\), field 'rotate_block_size'.*power of two.*got 20"):
        compress(recipe(20))
    with pytest.raises(ValueError, match=r"field 'rotate_block_size' on tensor 'W3' \(32 inputs\): block_size 64 does "
                                         "not divide"):
        compress(recipe(64))
    with pytest.raises(ValueError, match="field 'rotate_input': must be one of 'hadamard', got 'random'"):
        compress(recipe(rotate_input="random"))
    with pytest.raises(ValueError, match="field 'rotate_input': only quantize stages with method gptq"):
        compress([{"quantize": {"bits": 4, "axis": -1, "group_size": 16}, "rotate_input": "hadamard"}])
    with pytest.raises(ValueError, match="field 'rotate_block_size': only with rotate_input"):
        compress([{"quantize": {"method": "gptq"}, "rotate_block_size": 16}])
    with pytest.raises(ValueError, match="tensor 'W2' is also pruned"):
        compress([{"prune": {"sparsity": 0.5}, "include": ["W2"]}, recipe()[0]])
    result = compress(recipe())
    with pytest.raises(ValueError, match=r"Hadamard rotations \(rotate_input: on 'W2', 'W3'\).*compressed "
                                         r"\.safetensors cannot hold.*to_onnx"):
        result.save(str(tmp_path / "r.safetensors"))
    from swiftprune.export.compressed_tensors import to_compressed_tensors

    with pytest.raises(ValueError, match="compressed-tensors checkpoint cannot hold"):
        to_compressed_tensors(result, str(tmp_path / "ct"))
    sp.save_weights(str(tmp_path / "w.safetensors"), weights)
    with pytest.raises(ValueError, match="rotate_input adds a Hadamard rotation op.*weight file cannot hold"):
        sp.compress_file(str(tmp_path / "w.safetensors"), str(tmp_path / "o.safetensors"), recipe(),
                         calibration=calibration, progress=False)
    # the export: a rotation naming a weight no MatMul/Gemm reads, or of another width
    with pytest.raises(ValueError, match="input rotation of 'b2': no MatMul or Gemm reads it"):
        to_onnx(model, str(tmp_path / "x.onnx"), {}, input_rotations={"b2": sp.OnlineHadamard(32)})
    with pytest.raises(ValueError, match="input rotation of 'W2' has 32 features, but MatMul 'g0' reads 64"):
        to_onnx(model, str(tmp_path / "x.onnx"), {}, input_rotations={"W2": sp.OnlineHadamard(32)})
    from swiftprune.online_rotation import RotatedLayer

    with pytest.raises(ValueError, match="holds a torch-layout weight, but MatMul 'g0' reads it in keras layout"):
        to_onnx(model, str(tmp_path / "x.onnx"), {},
                input_rotations={"W2": RotatedLayer(sp.OnlineHadamard(64), "torch")})


def test_keras_export_refuses_a_rotated_result():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="needs Keras 3 (pip install 'swiftprune[keras]')")
    from swiftprune.export.keras import to_keras
    from swiftprune.online_rotation import RotatedLayer

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    kernel = model.weights[0].path
    result = sp.compress({kernel: np.asarray(model.weights[0].numpy())}, [{"quantize": {"bits": 8}}], progress=False)
    result.input_rotations = {kernel: RotatedLayer(sp.OnlineHadamard(8), "keras")}
    with pytest.raises(ValueError, match="Hadamard rotations.*Keras model written by to_keras cannot hold.*to_onnx"):
        to_keras(model, "unused.keras", result)
