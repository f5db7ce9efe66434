"""Calibration capture from ONNX (onnxruntime) and Keras 3 models: captured
Hessians against NumPy recomputations of the layer inputs, the im2col view
against the framework's own convolution, and sequential mode against a
hand-run sequential GPTQ (each layer's inputs recomputed through the already
quantized layers)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration.im2col import patches_nchw, patches_nhwc

RNG = np.random.default_rng(21)


def gram(x):
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    return x.T @ x


def assert_gram(actual, x):
    expected = gram(x)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


# --------------------------------------------------------------------------- #
# ONNX
# --------------------------------------------------------------------------- #

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'swiftprune[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'swiftprune[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def onnx_model():
    """x(16) -MatMul W1-> +b1 -> Relu -Gemm(transB) W2-> y;  img -Conv K (pad 1, stride 2)-> Flatten -> c."""
    w1 = RNG.standard_normal((16, 32)).astype(np.float32)
    b1 = RNG.standard_normal(32).astype(np.float32)
    w2 = RNG.standard_normal((8, 32)).astype(np.float32)
    k = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["img", "K"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["conv"], ["c"]),
             helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["ha"]),
             helper.make_node("Relu", ["ha"], ["r"]), helper.make_node("Gemm", ["r", "W2"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "W1"), (b1, "b1"), (w2, "W2"), (k, "K")]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    inputs = {"x": RNG.standard_normal((300, 16)).astype(np.float32),
              "img": RNG.standard_normal((12, 3, 8, 8)).astype(np.float32)}
    return model, inputs, {"W1": w1, "b1": b1, "W2": w2, "K": k}


def test_onnx_capture_matches_numpy_and_conv_im2col():
    model, inputs, w = onnx_model()
    cal = sp.calibration.from_onnx(model, [inputs], mode="independent")
    assert {n: (l.layout, l.features) for n, l in cal.layers.items()} == {
        "K": ("torch", 27), "W1": ("keras", 16), "W2": ("torch", 32)}
    x = inputs["x"]
    assert_gram(cal.statistics("W1").hessian_, x)
    assert_gram(cal.statistics("W2").hessian_, np.maximum(x @ w["W1"] + w["b1"], 0))
    patches = np.concatenate(list(patches_nchw(inputs["img"], (3, 3), (2, 2), (1, 1, 1, 1))))
    conv = ort.InferenceSession(model.SerializeToString()).run(["c"], inputs)[0]
    np.testing.assert_allclose(conv.reshape(12, 4, 4, 4).transpose(0, 2, 3, 1).reshape(-1, 4),
                               patches @ w["K"].reshape(4, -1).T, rtol=1e-5, atol=1e-5)
    assert_gram(cal.statistics("K").hessian_, patches)


@pytest.mark.parametrize("mode", ["sequential", "independent"])
def test_onnx_compress_equals_hand_run_gptq(mode):
    model, inputs, w = onnx_model()
    cal = sp.calibration.from_onnx(model, inputs, mode=mode)
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": 8}, "include": ["W1", "W2"]}]
    result = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    x = inputs["x"]
    q1 = sp.gptq(w["W1"].T, x, 3, 8).dequantize().T
    np.testing.assert_allclose(result.weights["W1"], q1, atol=1e-6)
    source = q1 if mode == "sequential" else w["W1"]
    h2 = np.maximum(x @ source + w["b1"], 0)
    expected = sp.gptq(w["W2"], h2, 3, 8)
    differ = np.mean(result.tensors["W2"].values != expected.values)
    assert differ < 0.02  # float32 Hessian sums in another order: rare +-1 flips
    assert cal.weights()["W1"] is not result.weights["W1"] and np.array_equal(cal.weights()["W1"], w["W1"])


def test_onnx_sequential_beats_independent_at_low_bits():
    model, inputs, w = onnx_model()
    x = inputs["x"]
    reference = np.maximum(x @ w["W1"] + w["b1"], 0) @ w["W2"].T
    errors = {}
    for mode in ("sequential", "independent"):
        cal = sp.calibration.from_onnx(model, inputs, mode=mode)
        out = sp.compress(cal.weights(), [{"quantize": {"method": "gptq", "bits": 2, "group_size": None},
                                           "include": ["W1", "W2"]}], progress=False, calibration=cal).weights
        errors[mode] = np.linalg.norm(np.maximum(x @ out["W1"] + w["b1"], 0) @ out["W2"].T - reference)
    assert errors["sequential"] < errors["independent"]


def residual_chain(blocks=3, width=12, hidden=24):
    """x -> [MatMul A_i -> Add bias (a second model input) -> Relu -> MatMul B_i -> Add residual ->
    LayerNormalization] x blocks: the shape of a transformer's FFN stack."""
    nodes, inits, weights = [], [], {}
    current = "x"
    for i in range(blocks):
        a = (RNG.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
        b = (RNG.standard_normal((hidden, width)) / np.sqrt(hidden)).astype(np.float32)
        weights.update({f"A{i}": a, f"B{i}": b})
        inits += [numpy_helper.from_array(a, f"A{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [helper.make_node("MatMul", [current, f"A{i}"], [f"h{i}"]),
                  helper.make_node("Add", [f"h{i}", "shift"], [f"s{i}"]),
                  helper.make_node("Relu", [f"s{i}"], [f"r{i}"]),
                  helper.make_node("MatMul", [f"r{i}", f"B{i}"], [f"o{i}"]),
                  helper.make_node("Add", [f"o{i}", current], [f"res{i}"]),
                  helper.make_node("LayerNormalization", [f"res{i}", "gamma", "beta"], [f"n{i}"], axis=-1)]
        current = f"n{i}"
    inits += [numpy_helper.from_array(np.ones(width, np.float32), "gamma"),
              numpy_helper.from_array(np.zeros(width, np.float32), "beta")]
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width]),
                               helper.make_tensor_value_info("shift", TensorProto.FLOAT, [hidden])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    batches = [{"x": RNG.standard_normal((40, width)).astype(np.float32),
                "shift": (0.1 * RNG.standard_normal(hidden)).astype(np.float32)} for _ in range(3)]
    return model, batches, weights


def numpy_chain_input(batches, weights, blocks, last):
    """The input of ``B{last}`` (float64 NumPy), through the given weights."""
    rows = []
    for feed in batches:
        x = feed["x"].astype(np.float64)
        for i in range(blocks):
            r = np.maximum(x @ weights[f"A{i}"] + feed["shift"], 0)
            if i == last:
                break
            y = r @ weights[f"B{i}"] + x
            x = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
        rows.append(r)
    return np.concatenate(rows)


def test_onnx_sequential_runs_sub_models_with_the_same_numbers(monkeypatch):
    from swiftprune.calibration.onnx_capture import OnnxCalibration

    model, batches, w = residual_chain()
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}, "include": ["A*", "B*"]}]
    ran: list[int] = []
    session = OnnxCalibration._session
    monkeypatch.setattr(OnnxCalibration, "_session", lambda self, outputs, cut=None: (
        ran.append(len(cut[0]) if cut is not None else len(self.model.graph.node)), session(self, outputs, cut))[1])
    captured: list[int] = []
    capture = OnnxCalibration._capture
    monkeypatch.setattr(OnnxCalibration, "_capture", lambda self, layers: (
        captured.append(len(layers)), capture(self, layers))[1])
    cal = sp.calibration.from_onnx(model, batches, mode="sequential")
    result = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    cut_runs = list(ran)
    # after the first capture (all six layers), each capture accumulates only the layer asked for: the next
    # commit would make any other downstream statistics stale (it was 6 + 5 + 4 + 3 + 2 + 1 Hessians)
    assert captured == [6, 1, 1, 1, 1, 1]
    # the whole model per capture instead (the previous behaviour), and with nothing kept between captures
    ran.clear()
    whole = sp.calibration.from_onnx(model, batches, mode="sequential")
    monkeypatch.setattr(whole, "_cut", lambda targets: None)
    expected = sp.compress(whole.weights(), recipe, progress=False, calibration=whole)
    whole_runs = list(ran)
    nothing_kept = sp.calibration.from_onnx(model, batches, mode="sequential")
    nothing_kept.kept_bytes_limit = 0
    starved = sp.compress(nothing_kept.weights(), recipe, progress=False, calibration=nothing_kept)
    for name in w:
        np.testing.assert_array_equal(result.weights[name], expected.weights[name], err_msg=name)
        np.testing.assert_array_equal(starved.weights[name], expected.weights[name], err_msg=name)
    # the first capture runs the whole model (18 ops); each later one only the 3 ops from the tensors kept by
    # the capture before it (B_i's input r_i from the kept n_(i-1): MatMul, Add, Relu; A_(i+1)'s input n_i
    # from the kept r_i and n_(i-1): MatMul, Add, LayerNormalization)
    assert whole_runs == [18] * 6
    assert cut_runs == [18, 3, 3, 3, 3, 3]
    # an independent reference: B2's statistics are the Gram matrix of its input through the compressed
    # A0, B0, A1, B1, A2 (float64 NumPy forward)
    x = numpy_chain_input(batches, result.weights, 3, last=2)
    assert_gram(cal.statistics("B2").hessian_, x)
    # a second run starts from the original model again and gives the same result
    again = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    for name in w:
        np.testing.assert_array_equal(again.weights[name], result.weights[name], err_msg=name)


def test_onnx_errors_and_cli(tmp_path, capsys):
    from swiftprune.cli import main

    model, inputs, w = onnx_model()
    with pytest.raises(ValueError, match="lacks model input"):
        sp.calibration.from_onnx(model, {"x": inputs["x"]})
    bad = dict(inputs, x=inputs["x"].copy())
    bad["x"][0, 0] = np.inf
    with pytest.raises(ValueError, match="'x'.*NaN or Inf"):
        sp.calibration.from_onnx(model, bad)
    with pytest.raises(FileNotFoundError):
        sp.calibration.from_onnx(tmp_path / "missing.onnx", inputs)
    onnx.save(model, tmp_path / "m.onnx")
    sp.save_weights(tmp_path / "inputs.npz", inputs)
    code = main(["compress", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.safetensors"), "--prune",
                 "sparsegpt:0.5", "--include", "W1", "--include", "W2", "--calibration", str(tmp_path / "inputs.npz"),
                 "--no-progress", "-q"])
    assert code == 0, capsys.readouterr().err
    loaded = sp.load_compressed(tmp_path / "out.safetensors").weights
    assert abs(np.mean(loaded["W1"] == 0) - 0.5) < 0.01 and np.array_equal(loaded["K"], w["K"])


# --------------------------------------------------------------------------- #
# Keras 3
# --------------------------------------------------------------------------- #


def keras_model():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'swiftprune[keras]')")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    c = keras.layers.Conv2D(4, 3, padding="same", strides=2, activation="relu", name="conv")(inp)
    d = keras.layers.Dense(16, activation="relu", name="fc")(keras.layers.Flatten()(c))
    out = keras.layers.Dense(5, name="out")(d)
    return keras, keras.Model(inp, out)


def test_keras_capture_matches_sub_models_and_conv():
    keras, model = keras_model()
    x = RNG.standard_normal((40, 8, 8, 3)).astype(np.float32)
    cal = sp.calibration.from_keras(model, [x[:20], x[20:]], mode="independent")
    assert {n: l.features for n, l in cal.layers.items()} == {"conv/kernel": 27, "fc/kernel": 64, "out/kernel": 16}
    fc_in = np.asarray(keras.Model(model.inputs, model.get_layer("fc").input)([x]))
    assert_gram(cal.statistics("fc/kernel").hessian_, fc_in)
    kernel = model.get_layer("conv").kernel.numpy()
    patches = np.concatenate(list(patches_nhwc(x, (3, 3), (2, 2), "same")))
    conv = np.asarray(keras.ops.conv(x, kernel, strides=2, padding="same"))
    np.testing.assert_allclose(conv.reshape(-1, 4), patches @ kernel.reshape(-1, 4), rtol=1e-4, atol=1e-4)
    assert_gram(cal.statistics("conv/kernel").hessian_, patches)


def test_keras_sequential_compress_leaves_the_model_alone_and_keeps_outputs():
    keras, model = keras_model()
    before = [v.numpy().copy() for v in model.weights]
    x = RNG.standard_normal((64, 8, 8, 3)).astype(np.float32)
    cal = sp.calibration.from_keras(model, x)
    result = sp.compress(cal.weights(), [{"quantize": {"method": "gptq", "bits": 4, "group_size": None}}],
                         progress=False, calibration=cal)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    # The captured inputs of the last layer went through the compressed earlier layers.
    clone = keras.models.clone_model(model)
    clone.set_weights([result.weights[v.path] for v in model.weights])
    last_in = np.asarray(keras.Model(clone.inputs, clone.get_layer("out").input)([x]))
    assert_gram(cal.statistics("out/kernel").hessian_, last_in)
    ref, out = np.asarray(model([x])).ravel(), np.asarray(clone([x])).ravel()
    assert ref @ out / np.linalg.norm(ref) / np.linalg.norm(out) > 0.99


def keras_residual_chain(blocks=3, width=16):
    """n_0 = x; per block i: r = relu(A_i n), n_(i+1) = LayerNorm(n + B_i r); then a conv on a side input.
    B_i's input needs A_i's output, A_(i+1)'s input the skip n_i as well: a cut must feed both."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'swiftprune[keras]')")
    keras.utils.set_random_seed(1)
    x = keras.Input((width,), name="x")
    img = keras.Input((6, 6, 2), name="img")
    n = x
    for i in range(blocks):
        r = keras.layers.Dense(width, activation="relu", name=f"A{i}")(n)
        b = keras.layers.Dense(width, name=f"B{i}")(r)
        n = keras.layers.LayerNormalization(name=f"ln{i}")(keras.layers.Add(name=f"add{i}")([n, b]))
    c = keras.layers.Conv2D(3, 3, padding="same", name="conv")(img)
    model = keras.Model([x, img], [n, c])
    batches = [{"x": RNG.standard_normal((40, width)).astype(np.float32),
                "img": RNG.standard_normal((5, 6, 6, 2)).astype(np.float32)} for _ in range(3)]
    return keras, model, batches


def test_keras_sequential_cuts_sub_models_with_the_same_numbers(monkeypatch):
    from swiftprune.calibration.keras_capture import KerasCalibration

    keras, model, batches = keras_residual_chain()
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}}]
    ran: list[list[str]] = []  # the layers each capture's (sub-)model runs
    sub_model = KerasCalibration._sub_model
    monkeypatch.setattr(KerasCalibration, "_sub_model", lambda self, keras, targets: (
        lambda made: (ran.append(sorted(l.name for l in made[0].layers if not isinstance(l, keras.layers.InputLayer))),
                      made)[1])(sub_model(self, keras, targets)))
    cal = sp.calibration.from_keras(model, batches)
    result = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    cuts = list(ran)
    # the whole model for every capture instead (the previous behaviour), and with nothing kept between captures
    whole = sp.calibration.from_keras(model, batches)
    monkeypatch.setattr(whole, "_cut", lambda targets: None)
    expected = sp.compress(whole.weights(), recipe, progress=False, calibration=whole)
    nothing_kept = sp.calibration.from_keras(model, batches)
    nothing_kept.kept_bytes_limit = 0
    starved = sp.compress(nothing_kept.weights(), recipe, progress=False, calibration=nothing_kept)
    assert sorted(result.weights) == sorted(v.path for v in model.weights)
    for name in result.weights:
        np.testing.assert_array_equal(result.weights[name], expected.weights[name], err_msg=name)
        np.testing.assert_array_equal(starved.weights[name], expected.weights[name], err_msg=name)
    # the captures after the first commit: from the model inputs while nothing is kept, then from the kept
    # inputs of the layers captured before (B_i from A_i's kept input n_i: A_i alone; A_(i+1) from the kept
    # n_i and r_i: B_i, the skip add and the norm), never the layers before the last commit
    assert cuts[0] == ["A0"]  # B0's input, from the model input x (nothing kept yet)
    assert cuts[1:5] == [["B0", "add0", "ln0"], ["A1"], ["B1", "add1", "ln1"], ["A2"]]
    assert len(cuts) == 5  # B2 last; conv's input is a model input: captured with the first capture
    # an independent reference: B2's statistics are the Gram matrix of its input through the compressed
    # layers before it, computed by Keras on a clone holding the result's weights
    clone = keras.models.clone_model(model)
    clone.set_weights([result.weights[v.path] for v in model.weights])
    probe = keras.Model(clone.inputs, clone.get_layer("B2").input)
    b2_in = np.concatenate([np.asarray(probe([b["x"], b["img"]])) for b in batches])
    assert_gram(cal.statistics("B2/kernel").hessian_, b2_in)
    # a second run starts from the original model again and gives the same result
    again = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    for name in result.weights:
        np.testing.assert_array_equal(again.weights[name], result.weights[name], err_msg=name)


def test_keras_commit_of_a_bias_recaptures_the_layers_after_it():
    keras, model, batches = keras_residual_chain(blocks=2)
    cal = sp.calibration.from_keras(model, batches)
    assert "A0/bias" in cal.layers["B0/kernel"].upstream and "A0/bias" not in cal.layers["A0/kernel"].upstream
    assert "conv/kernel" not in cal.layers["B1/kernel"].upstream  # another branch: no recapture for it
    before = cal.statistics("B0/kernel").hessian_.copy()
    bias = cal.weights()["A0/bias"] + 1.0
    cal.commit("A0/bias", bias)
    clone = keras.models.clone_model(model)
    clone.set_weights([bias if v.path == "A0/bias" else v.numpy() for v in model.weights])
    probe = keras.Model(clone.inputs, clone.get_layer("B0").input)
    b0_in = np.concatenate([np.asarray(probe([b["x"], b["img"]])) for b in batches])
    after = cal.statistics("B0/kernel").hessian_
    assert not np.allclose(after, before)
    assert_gram(after, b0_in)


# --------------------------------------------------------------------------- #
# PyTorch (optional: skipped without torch)
# --------------------------------------------------------------------------- #


def test_torch_hooks_capture_and_sequential_gptq():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.head = torch.nn.Linear(64, 8)
            self.fc = torch.nn.Linear(16, 64)  # registered last, called first

        def forward(self, img, x):
            return self.head(torch.relu(self.fc(x))), self.conv(img)

    net = Net()
    x = RNG.standard_normal((200, 16)).astype(np.float32)
    img = RNG.standard_normal((6, 3, 8, 8)).astype(np.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cal = sp.calibration.from_torch(net, [(img, x)], mode="sequential")
    assert list(cal.layers)[:2] == ["fc.weight", "head.weight"]  # forward order, not registration order
    assert_gram(cal.statistics("fc.weight").hessian_, x)
    patches = np.concatenate(list(patches_nchw(img, (3, 3), (2, 2), (1, 1, 1, 1))))
    assert_gram(cal.statistics("conv.weight").hessian_, patches)
    result = sp.compress(cal.weights(), [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}}],
                         progress=False, calibration=cal)
    fc = result.weights["fc.weight"]
    hidden = np.maximum(x @ fc.T + before["fc.bias"].numpy(), 0)
    expected = sp.gptq(before["head.weight"].numpy(), hidden, 3, None)
    assert np.mean(result.tensors["head.weight"].values != expected.values) < 0.02
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's module untouched
