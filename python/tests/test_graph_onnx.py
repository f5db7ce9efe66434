"""Channel pruning of .onnx models: equivalence through onnxruntime.

The pruned model's output must equal the original model's output with the
removed channels zeroed: every Conv/Gemm/MatMul weight slice that reads a
removed channel set to 0 in the original (the weight is found here from the
node's own inputs), run by onnxruntime.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason='needs onnx: pip install "swiftprune[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='needs onnxruntime: pip install "swiftprune[onnx]"')
from onnx import numpy_helper  # noqa: E402

import _graph_onnx_models as models  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import graph_coverage as coverage  # noqa: E402
from swiftprune.graph import load_graph, prune_model  # noqa: E402
from swiftprune.graph.onnx_file import OnnxFileError  # noqa: E402


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


# A copy of the model whose weights reading removed channels are 0 (every removed input slice found).
zeroed = coverage.zeroed_onnx


@pytest.mark.parametrize("build", [models.residual, models.concat_depthwise_se, models.conv_transpose],
                         ids=["residual", "concat_depthwise_se_grouped_flatten", "conv_transpose"])
@pytest.mark.parametrize("amount", [0.3, 0.5])
def test_pruned_onnx_equals_zeroed_original(build, amount, tmp_path):
    model = build()
    source, target = tmp_path / "m.onnx", tmp_path / "small.onnx"
    onnx.save(model, source)
    result = prune_model(source, amount, target)
    small = onnx.load(target)
    onnx.checker.check_model(small)
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    expected, actual, original = run(zeroed(model, result), x), run(small, x), run(model, x)
    assert actual.shape == original.shape
    np.testing.assert_allclose(actual, expected, atol=2e-5 * np.abs(expected).max(), rtol=1e-4)
    assert np.abs(original - expected).max() > 1e-3      # channels really were removed
    assert result.params_after < 0.8 * result.params_before
    assert target.stat().st_size == result.file_size < source.stat().st_size


def test_onnx_groups_follow_the_graph():
    """The groups DepGraph finds in the hand-built graphs (node names from the builder)."""
    from swiftprune.graph import analyze

    def groups(model):
        return {g.producers: (g.classes.size, int(g.frozen.sum())) for g in analyze(load_graph(model)).groups}

    # stem + two residual block outputs share one 16-channel residual stream; inputs/outputs frozen
    assert groups(models.residual()) == {
        ("x",): (3, 3), ("conv3_node", "conv21_node", "conv35_node"): (16, 0), ("conv12_node",): (24, 0),
        ("conv31_node",): (32, 0), ("gemm42_node",): (10, 10)}
    # depthwise (multiplier 2) ties its 32 outputs to the stem's 16 channels; the grouped conv's
    # 4 groups of 9 inputs tie concat channels l, l+9, l+18, l+27 (the SE-scaled pointwise conv's
    # 24 and the dilated conv's 12) into 9 classes; its 20 outputs shrink in lockstep (5 classes)
    assert groups(models.concat_depthwise_se()) == {
        ("x",): (3, 3), ("conv3_node", "conv12_node"): (16, 0), ("conv25_node",): (8, 0),
        ("conv21_node", "conv29_node", "conv34_node"): (9, 0), ("conv38_node",): (5, 0),
        ("matmul43_node",): (32, 0), ("gemm49_node",): (5, 5)}


def test_onnx_depthwise_multiplier_and_grouped_conv_counts(tmp_path):
    model = models.concat_depthwise_se()
    onnx.save(model, tmp_path / "m.onnx")
    prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx")
    small = onnx.load(tmp_path / "s.onnx")
    inits = {i.name: numpy_helper.to_array(i) for i in small.graph.initializer}
    for node in small.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        w = inits[node.input[1]]
        assert w.shape[0] % group == 0, node.name           # outputs split evenly over groups
        if group == 4:                                      # the grouped conv keeps its 4 groups
            assert w.shape[0] < 20 and w.shape[1] < 9


def test_onnx_unknown_op_freezes_channels(tmp_path):
    """LRN (mixes neighbouring channels) between two convs: the channels through it are frozen."""
    b = models.Builder(5)
    x = b.op("Relu", [b.conv("x", 3, 8)])
    t = b.op("LRN", [x], size=3)
    y = b.conv(t, 8, 8)
    model = b.model([1, 3, 8, 8], y, [1, 8, 8, 8])
    onnx.save(model, tmp_path / "m.onnx")
    result = prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx")
    assert any("LRN" in reason for reason in result.frozen_reasons.values())
    assert result.params_after == result.params_before
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(tmp_path / "s.onnx"), x), run(model, x), rtol=1e-5, atol=1e-5)


def test_corrupt_onnx_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(ValueError, match="bad.onnx"):
        prune_model(path, 0.5, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    with pytest.raises(FileNotFoundError):
        prune_model(tmp_path / "missing.onnx", 0.5, tmp_path / "out.onnx")


def test_prune_channels_cli(tmp_path, capsys):
    from swiftprune.cli import main
    source, target = tmp_path / "m.onnx", tmp_path / "small.onnx"
    onnx.save(models.residual(), source)
    assert main(["prune-channels", str(source), "-o", str(target), "--amount", "0.5", "--round-to", "4",
                 "--report"]) == 0
    out = capsys.readouterr().out
    assert "total: params" in out and "frozen: x: model input" in out and f"wrote {target}" in out
    small = onnx.load(target)
    inits = {i.name: numpy_helper.to_array(i) for i in small.graph.initializer}
    convs = [inits[n.input[1]].shape[0] for n in small.graph.node if n.op_type == "Conv"]
    assert all(c % 4 == 0 for c in convs) and sum(convs) < 16 + 24 + 16 + 32 + 16
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nonsense")
    assert main(["prune-channels", str(bad), "-o", str(tmp_path / "x.onnx"), "--amount", "0.5"]) == 1
    assert "bad.onnx" in capsys.readouterr().err
    assert main(["prune-channels", str(source), "-o", str(tmp_path / "x.onnx"), "--amount", "2"]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_converted_from_keras(tmp_path):
    """An ONNX file converted from a Keras .keras file (benchmarks/keras_to_onnx.py: NCHW, a Transpose back to
    NHWC before Flatten) prunes like the Keras model itself, and equals the zeroed original in onnxruntime."""
    keras = pytest.importorskip("keras", reason='needs Keras 3: pip install "swiftprune[keras]"')
    from _keras_numpy_init import numpy_initializers
    from keras_to_onnx import convert
    keras.utils.set_random_seed(0)
    with numpy_initializers():      # random weights without compiling JAX's generator
        model = coverage.classic_cnn()
    model.save(tmp_path / "cnn.keras")
    converted = convert(str(tmp_path / "cnn.keras"))
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    session = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0],
                               np.asarray(model(x)), rtol=1e-4, atol=1e-6)
    onnx.save(converted, tmp_path / "cnn.onnx")
    from_onnx = prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "small.onnx")
    from_keras = prune_model(tmp_path / "cnn.keras", 0.5, tmp_path / "small.keras")
    assert from_onnx.params_after == from_keras.params_after < 0.3 * from_onnx.params_before
    # the same channels go, in the same order of layers (the weights are the same, transposed)
    assert [k.tolist() for k in from_onnx.kept.values()] == [k.tolist() for k in from_keras.kept.values()]
    small = onnx.load(tmp_path / "small.onnx")
    feed = x.transpose(0, 3, 1, 2)
    run_ = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {m.graph.input[0].name: feed})[0]
    np.testing.assert_allclose(run_(small), run_(zeroed(converted, from_onnx)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("axes,prunable", [([2, 3], True), ([1], False)], ids=["spatial crop", "channel slice"])
def test_onnx_slice(axes, prunable, tmp_path):
    """A Slice over spatial axes (Keras Cropping2D) passes channels through; one over channels freezes them."""
    b = models.Builder(6)
    x = b.op("Relu", [b.conv("x", 3, 8)])
    for name, value in (("starts", [1] * len(axes)), ("ends", [7] * len(axes)), ("axes", axes)):
        b.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
    t = b.op("Slice", [x, "starts", "ends", "axes"])
    channels = 8 if prunable else 6
    y = b.conv(t, channels, 4)
    model = b.model([1, 3, 8, 8], y, [1, 4, 6, 6] if prunable else [1, 4, 8, 8])
    onnx.save(model, tmp_path / "m.onnx")
    result = prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx", progress=False)
    assert (result.params_after < result.params_before) == prunable
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(tmp_path / "s.onnx"), x), run(zeroed(model, result), x),
                               rtol=1e-5, atol=1e-5)


def _sequence_model(x_shape, first):
    """``x`` → [first op] → MatMul (features 6 → 8) → +bias → Relu → MatMul (8 → 4): a per-token MLP."""
    b = models.Builder(7)
    x = "x"
    if first == "scale":                                   # a layout-neutral op before the MatMul
        b.inits.append(numpy_helper.from_array(np.asarray(0.5, dtype=np.float32), "half"))
        x = b.op("Mul", [x, "half"])
    h = b.op("Relu", [b.op("Add", [b.op("MatMul", [x, b.w((6, 8))]), b.w((8,), .1)])])
    y = b.op("MatMul", [h, b.w((8, 4))])
    return b.model(x_shape, y, list(x_shape[:-1]) + [4])


@pytest.mark.parametrize("x_shape,first", [([None, None, 6], None), (["batch", "tokens", 6], "scale"),
                                           ([2, 5, 6], None), ([None, 3, 5, 6], None)],
                         ids=["dynamic", "named dims, scaled", "static", "rank 4"])
def test_onnx_token_sequence_input_keeps_features_last(x_shape, first, tmp_path):
    """A ``(batch, tokens, features)`` input read by MatMul has its channels on the last axis (it was taken
    for channels-first, which made every MatMul reading it "unknown" and froze the hidden units)."""
    model = _sequence_model(x_shape, first)
    onnx.save(model, tmp_path / "m.onnx")
    result = prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx", progress=False)
    assert not any("MatMul" in reason for reason in result.frozen_reasons.values()), result.frozen_reasons
    assert result.params_after == result.params_before - 4 * (6 + 1 + 4)     # 4 of the 8 hidden units go
    shape = [d if isinstance(d, int) else k + 2 for k, d in enumerate(x_shape)]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    small, original = onnx.load(tmp_path / "s.onnx"), run(model, x)
    expected = run(zeroed(model, result), x)
    np.testing.assert_allclose(run(small, x), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(original - expected).max() > 1e-3


def test_onnx_conv1d_input_stays_channels_first(tmp_path):
    """A rank-3 ``(batch, channels, length)`` input read by a 1-D Conv keeps its channels on axis 1."""
    b = models.Builder(8)
    h = b.op("Relu", [b.op("Conv", ["x", b.w((8, 3, 3)), b.w((8,), .1)], pads=[1, 1])])
    y = b.op("Conv", [h, b.w((4, 8, 1))])
    model = b.model([None, 3, None], y, [None, 4, None])
    graph = load_graph(model)
    assert graph.tensors[graph.inputs[0]].channel_axis == 1
    onnx.save(model, tmp_path / "m.onnx")
    result = prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx", progress=False)
    assert result.params_after == result.params_before - 4 * (3 * 3 + 1 + 4)
    x = np.random.default_rng(0).normal(size=(2, 3, 7)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(tmp_path / "s.onnx"), x), run(zeroed(model, result), x),
                               rtol=1e-5, atol=1e-5)
