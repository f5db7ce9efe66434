"""AWQ and SmoothQuant as recipe methods: scales folded into the op before
each layer (LayerNorm, BatchNorm, a linear layer or its bias Add), checked by
running the models (onnxruntime, Keras): the folded float model computes what
the original does, the written file holds the adjusted producers, and layers
with no op to fold into are left alone with the reason. The shared-scale AWQ
search is checked against a float64 NumPy transcription."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.activation_folding import fold
from swiftprune.calibration import HessianAccumulator

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(5)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def onnx_model():
    """x -LN-> h -> {MatMul Wq + bq, MatMul Wk, MatMul Wv + bv}; v -MatMul Wo-> o (bias Add before it);
    q + k -Relu-> MatMul Wr (activation: refused); o -LN2-> z -> {MatMul Wz, residual Add} (refused);
    img -Conv K1-> BatchNorm -> Conv K2 (+bias) -> Conv K4 -> Relu -> pool (K2 folds into BN, K4 into K2)."""
    gain = np.ones(16, np.float32)
    gain[[2, 7]] = 25.0  # outlier channels after the LayerNorm, as in LLMs
    w = {"g1": gain, "b1": f32(16, scale=0.1), "Wq": f32(16, 8), "bq": f32(8), "Wk": f32(16, 8), "Wv": f32(16, 8),
         "bv": f32(8), "Wo": f32(8, 16), "Wr": f32(8, 4), "g2": np.abs(f32(16)) + 0.5, "b2": f32(16), "Wz": f32(16, 16),
         "K1": f32(4, 3, 3, 3), "bn_s": np.abs(f32(4)) + 0.5, "bn_b": f32(4), "bn_m": f32(4, scale=0.1),
         "bn_v": np.abs(f32(4)) + 0.5, "K2": f32(6, 4, 3, 3), "c2": f32(6), "K4": f32(5, 6, 1, 1)}
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g1", "b1"], ["h"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["h", "Wq"], ["q0"]), helper.make_node("Add", ["q0", "bq"], ["q"]),
        helper.make_node("MatMul", ["h", "Wk"], ["k"]),
        helper.make_node("MatMul", ["h", "Wv"], ["v0"]), helper.make_node("Add", ["v0", "bv"], ["v"]),
        helper.make_node("MatMul", ["v", "Wo"], ["o"]),
        helper.make_node("Add", ["q", "k"], ["qk"]), helper.make_node("Relu", ["qk"], ["r"]),
        helper.make_node("MatMul", ["r", "Wr"], ["y_r"]),
        helper.make_node("LayerNormalization", ["o", "g2", "b2"], ["z"], axis=-1),
        helper.make_node("MatMul", ["z", "Wz"], ["zz"]), helper.make_node("Add", ["zz", "z"], ["y_z"]),
        helper.make_node("Conv", ["img", "K1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"]),
        helper.make_node("Conv", ["bn", "K2", "c2"], ["c2o"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2o", "K4"], ["c4"]), helper.make_node("Relu", ["c4"], ["c4r"]),
        helper.make_node("GlobalAveragePool", ["c4r"], ["y_img"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [None, 3, 6, 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y_r", "y_z", "y_img")],
        [numpy_helper.from_array(a, n) for n, a in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inputs = {"x": f32(256, 16), "img": f32(24, 3, 6, 6)}
    return model, inputs


def run_onnx(model, feed, replace=None):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, init in enumerate(m.graph.initializer):
        if replace and init.name in replace:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(replace[init.name], np.float32),
                                                                    init.name))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


AWQ = [{"quantize": {"method": "awq", "bits": 4, "group_size": None}}]


@pytest.mark.parametrize("mode", ["independent", "sequential"])
def test_onnx_fold_keeps_the_function_and_reports_why_not(mode):
    model, inputs = onnx_model()
    calibration = sp.calibration.from_onnx(model, inputs, mode=mode)
    weights = calibration.weights()
    outcome = fold(weights, AWQ, calibration)
    notes = outcome.notes
    for name in ("Wq", "Wk", "Wv"):
        assert "LayerNormalization" in notes[name], notes[name]
    assert "Add" in notes["Wo"] and set(outcome.scales) >= {"Wq", "Wk", "Wv", "Wo", "K2", "K4"}
    assert "BatchNormalization" in notes["K2"] and "Conv" in notes["K4"]
    assert "Relu" in notes["Wr"] and notes["Wr"].startswith("not scaled")
    assert "also feeds Add" in notes["Wz"]
    assert "model input" in notes["K1"]
    # q/k/v share one scale; the LayerNorm, the bias Add, the BatchNorm and conv K2 absorbed 1/s.
    np.testing.assert_allclose(outcome.scales["Wq"], outcome.scales["Wk"])
    assert {"g1", "b1", "bv", "Wv", "bn_s", "bn_b", "K2", "c2"} <= set(outcome.arrays)
    assert not {"g2", "b2", "Wz", "Wr", "K1"} & set(outcome.arrays)
    before = run_onnx(model, inputs)
    after = run_onnx(model, inputs, outcome.arrays)
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-4 * np.abs(a).max())
    assert not np.allclose(outcome.arrays["g1"], weights["g1"])  # it did fold something


def test_onnx_awq_recipe_writes_a_model_that_is_the_folded_quantized_one(tmp_path):
    model, inputs = onnx_model()
    calibration = sp.calibration.from_onnx(model, inputs, mode="independent")
    weights = calibration.weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sp.compress(weights, [{"quantize": {"method": "awq", "bits": 3, "group_size": None}, "include": "W*"},
                                       {"quantize": {"bits": 3, "axis": -1}, "include": ["Wr", "Wz"]}],
                             progress=False, calibration=calibration)
    assert any("Wz" in str(w.message) and "residual" in str(w.message) for w in caught)
    stages = {row["name"]: row["stages"] for row in result.report}
    assert stages["Wq"] == "scaled+quantize.awq" and stages["g1"] == "absorbs-scale"
    assert stages["Wz"] == "skipped:quantize.awq+quantize.minmax"
    assert "LayerNormalization" in result.scaling["Wq"]
    from swiftprune.export.onnx import to_onnx

    path = str(tmp_path / "awq.onnx")
    to_onnx(model, path, result, matmul_nbits=False)
    options = ort.SessionOptions()  # no fusion of DequantizeLinear + MatMul into a dynamic int8 MatMul
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    written = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]).run(None, inputs)
    expected = run_onnx(model, inputs, {k: v for k, v in result.weights.items()})
    for a, b in zip(expected, written):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
    # AWQ beats round-to-nearest at 3 bits on the LayerNorm outlier channels (q/k/v and o feed y_r, y_z).
    rtn = sp.compress(weights, [{"quantize": {"bits": 3, "axis": -1}, "include": "W*"}], progress=False)
    original = run_onnx(model, inputs)
    rtn_out = run_onnx(model, inputs, rtn.weights)
    err = lambda out: sum(np.linalg.norm(o - r) / np.linalg.norm(r) for o, r in zip(out[:2], original[:2]))  # noqa
    assert err(written) < 0.8 * err(rtn_out)


def test_smoothquant_recipe_folds_and_flattens_the_activation_outliers():
    model, inputs = onnx_model()
    calibration = sp.calibration.from_onnx(model, inputs, mode="independent")
    weights = calibration.weights()
    recipe = [{"quantize": {"method": "smoothquant", "alpha": 0.5}, "include": ["Wq", "Wk", "Wv"]}]
    outcome = fold(weights, recipe, calibration)
    s = outcome.scales["Wq"]
    h = _layer_norm(inputs["x"], weights["g1"], weights["b1"])
    act, wmax = np.abs(h).max(0), np.abs(np.concatenate([weights[n] for n in ("Wq", "Wk", "Wv")], 1)).max(1)
    np.testing.assert_allclose(s, act ** 0.5 / wmax ** 0.5, rtol=1e-4)  # SmoothQuant over the shared weights
    smoothed = _layer_norm(inputs["x"], outcome.arrays["g1"], outcome.arrays["b1"])
    np.testing.assert_allclose(smoothed * s, h, rtol=1e-3, atol=1e-4)
    assert np.abs(smoothed).max() / np.abs(smoothed).mean() < 0.7 * np.abs(h).max() / np.abs(h).mean()
    result = sp.compress(weights, recipe, progress=False, calibration=calibration)
    assert result.tensors["Wq"].bits == 8 and result.tensors["Wq"].group_size is None


def _layer_norm(x, g, b, eps=1e-5):
    x = x.astype(np.float64)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def reference_shared_awq(ws, x, bits, group, n_grid=20):
    """Float64 transcription of AWQ's scale search for layers sharing one input (llm-awq
    ``auto_scale`` over q/k/v): the loss is the summed squared output error of all of them."""
    x = x.astype(np.float64)
    mean = np.abs(x).mean(0)
    best = None
    for k in range(n_grid):
        s = np.maximum(mean ** (k / n_grid), 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        loss = 0.0
        for w in ws:
            scaled = (w * s).reshape(w.shape[0], -1, group)
            lo, hi = scaled.min(-1, keepdims=True), scaled.max(-1, keepdims=True)
            scale = np.maximum(hi - lo, 1e-5) / (2 ** bits - 1)
            zero = np.round(-lo / scale)
            q = (np.clip(np.round(scaled / scale) + zero, 0, 2 ** bits - 1) - zero) * scale
            loss += np.sum(((q.reshape(w.shape) / s - w) @ x.T) ** 2)
        if best is None or loss < best[0]:
            best = (loss, s)
    return best[1]


def test_shared_awq_search_matches_a_float64_transcription():
    from swiftprune.activation_folding import ScaledLayer, awq_input_scales
    from swiftprune.calibration.arrays import LayerView

    x = f32(600, 32)
    x[:, [3, 17]] *= 20
    ws = [f32(12, 32), f32(20, 32)]
    acc = HessianAccumulator(32).update(x)
    layers = [ScaledLayer(f"w{i}", LayerView(f"w{i}", acc, "torch", w.shape), w, np.arange(32), 32)
              for i, w in enumerate(ws)]
    s, note = awq_input_scales(layers, {"n_grid": 20, "bits": 3, "group_size": 8, "symmetric": False})
    np.testing.assert_allclose(s, reference_shared_awq(ws, x, 3, 8), rtol=1e-6)


def test_awq_without_a_model_graph_is_refused_with_what_to_pass():
    w = {"fc.weight": f32(8, 16)}
    with pytest.raises(ValueError, match="needs the model graph.*from_onnx.*swiftprune.awq"):
        sp.compress(w, [{"quantize": {"method": "awq"}}], progress=False,
                    calibration={"fc": f32(64, 16)})


# --------------------------------------------------------------------------- #
# Keras
# --------------------------------------------------------------------------- #


def keras_model():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    z = "zeros"
    x = keras.Input((10,), name="x")
    h = keras.layers.LayerNormalization(name="ln")(x)
    q = keras.layers.Dense(6, name="q", kernel_initializer=z)(h)
    k = keras.layers.Dense(6, name="k", kernel_initializer=z, use_bias=False)(h)
    qk = keras.layers.Add(name="qk")([q, k])
    mid = keras.layers.Dense(8, name="mid", kernel_initializer=z)(qk)  # producer Add: refused
    act = keras.layers.Dense(8, name="act", activation="relu", kernel_initializer=z)(mid)  # folds into mid
    out = keras.layers.Dense(3, name="out", kernel_initializer=z)(act)  # after a relu: refused
    img = keras.Input((6, 6, 3), name="img")
    c1 = keras.layers.Conv2D(4, 3, padding="same", name="c1", kernel_initializer=z)(img)
    bn = keras.layers.BatchNormalization(name="bn")(c1)
    c2 = keras.layers.Conv2D(5, 3, name="c2", kernel_initializer=z)(bn)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(c2)
    model = keras.Model([x, img], [out, pooled])
    model.set_weights([(RNG.standard_normal(w.shape) * (0.5 if w.ndim > 1 else 0.2) + (1.0 if "variance" in v.path
                        or "gamma" in v.path else 0.0)).astype(np.float32) for v, w in
                       zip(model.weights, model.get_weights())])
    model.get_layer("ln").gamma.assign(np.where(np.arange(10) % 4 == 0, 12.0, 1.0).astype(np.float32))
    return keras, model, {"x": f32(200, 10), "img": f32(16, 6, 6, 3)}


def test_keras_fold_keeps_the_function(tmp_path):
    keras, model, inputs = keras_model()
    calibration = sp.calibration.from_keras(model, inputs, mode="independent")
    weights = calibration.weights()
    outcome = fold(weights, AWQ, calibration)
    notes = outcome.notes
    assert "LayerNormalization" in notes["q/kernel"] and "LayerNormalization" in notes["k/kernel"]
    assert "Dense 'mid'" in notes["act/kernel"] and "BatchNormalization" in notes["c2/kernel"]
    assert "Add" in notes["mid/kernel"] and "'relu'" in notes["out/kernel"]
    assert {"ln/gamma", "ln/beta", "mid/kernel", "mid/bias", "bn/gamma", "bn/beta"} <= set(outcome.arrays)
    feed = [inputs["x"], inputs["img"]]   # the calibration batch: JAX compiled the model for these shapes already
    before = [np.asarray(o) for o in model(feed)]
    folded = keras.models.clone_model(model)
    folded.set_weights([outcome.arrays.get(v.path, w) for v, w in zip(model.weights, model.get_weights())])
    after = [np.asarray(o) for o in folded(feed)]
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-4 * np.abs(a).max())
    # compress() + to_keras write the folded, quantized model.
    result = sp.compress(weights, [{"quantize": {"method": "awq", "bits": 4, "group_size": None}}], progress=False,
                         calibration=calibration)
    from swiftprune.export.keras import to_keras

    path = str(tmp_path / "awq.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = to_keras(model, path, result)
    assert "absorbed" in export.weights["ln/gamma"]
    written = keras.saving.load_model(path, compile=False)
    expected = keras.models.clone_model(model)
    expected.set_weights([result.weights[v.path] for v in model.weights])
    for a, b in zip(expected(feed), written(feed)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4 * np.abs(np.asarray(a)).max())


def test_cli_writes_the_awq_model_and_refuses_weights_without_a_graph(tmp_path, capsys):
    from swiftprune.cli import main

    model, inputs = onnx_model()
    path, batches, out = str(tmp_path / "m.onnx"), str(tmp_path / "in.npz"), str(tmp_path / "awq.onnx")
    onnx.save(model, path)
    np.savez(batches, **inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["compress", path, "-o", out, "--quantize", "int4:method=awq:group_size=null",
                     "--calibration", batches, "--calibration-mode", "independent", "--no-progress", "--quiet"])
    assert code == 0
    written = onnx.load(out)
    inits = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    assert not np.allclose(inits["g1"], numpy_helper.to_array(model.graph.initializer[0]))  # the folded LayerNorm
    assert "Wq" not in inits  # quantized (DequantizeLinear / MatMulNBits inputs instead)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(out, options, providers=["CPUExecutionProvider"]).run(None, inputs)
    want = run_onnx(model, inputs)
    assert all(np.linalg.norm(g - w) < 0.2 * np.linalg.norm(w) for g, w in zip(got, want))
    weights = str(tmp_path / "w.npz")
    np.savez(weights, **{"fc.weight": f32(8, 16)})
    np.savez(str(tmp_path / "x.npz"), fc=f32(64, 16))
    code = main(["compress", weights, "-o", str(tmp_path / "o.safetensors"), "--quantize", "int4:method=awq",
                 "--calibration", str(tmp_path / "x.npz"), "--no-progress"])
    assert code != 0 and "needs the model graph" in capsys.readouterr().err
