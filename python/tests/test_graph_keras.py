"""Channel pruning of Keras 3 models (.keras files and live models).

Equivalence: the pruned model's output equals the original model's output
with the removed channels zeroed, BatchNorm in inference mode. For the
classic CNN the zeroed reference is computed here from first principles
(the removed filters' Dense rows after a channels_last Flatten are
``p * C + c``); for the other models, every kernel input slice the result
lists as removed is set to 0 in the original, and the comparison checks
that what the surgery cut everywhere else (biases, BatchNorms, residual
adds, concatenations) is exactly what those zeros make irrelevant.
"""
from __future__ import annotations

import os
import sys
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason='needs Keras 3: pip install "swiftprune[keras]"')
if keras.backend.backend() != "jax":  # pragma: no cover - CI sets KERAS_BACKEND=jax
    pytest.skip("these tests run Keras with the JAX backend (KERAS_BACKEND=jax)", allow_module_level=True)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import graph_coverage as coverage  # noqa: E402

from _keras_numpy_init import numpy_initializers  # noqa: E402
from swiftprune.graph import analyze, load_graph, prune_model  # noqa: E402
from swiftprune.graph.keras_file import KerasFileError  # noqa: E402

L = keras.layers


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    with numpy_initializers():      # random weights without an XLA compile per weight shape (build and reload)
        yield


def outputs(model, x):
    return np.asarray(model(x, training=False))


def test_classic_cnn_through_flatten(tmp_path):
    model = coverage.classic_cnn()
    coverage.randomize_norms(model)
    model.save(tmp_path / "cnn.keras")
    result = prune_model(tmp_path / "cnn.keras", 0.5, tmp_path / "small.keras")
    small = keras.saving.load_model(tmp_path / "small.keras")
    # the file really is smaller (a fresh HDF5 file, not datasets deleted in place), and as big as reported
    assert result.file_size == (tmp_path / "small.keras").stat().st_size < 0.4 * (tmp_path / "cnn.keras").stat().st_size
    convs = [l for l in model.layers if isinstance(l, L.Conv2D)]
    dense = [l for l in model.layers if isinstance(l, L.Dense)]
    assert [l.filters for l in small.layers if isinstance(l, L.Conv2D)] == [16, 32]
    assert [l.units for l in small.layers if isinstance(l, L.Dense)] == [64, 10]
    # Independent reference: zero the removed filters' consumers by hand.
    w1, b1 = convs[1].get_weights()
    kept0 = result.kept[convs[0].name]
    removed0 = np.setdiff1d(np.arange(32), kept0)
    w1 = w1.copy()
    w1[:, :, removed0, :] = 0
    convs[1].set_weights([w1, b1])
    kept1 = result.kept[convs[1].name]
    removed1 = np.setdiff1d(np.arange(64), kept1)
    kernel, bias = dense[0].get_weights()
    rows = np.arange(kernel.shape[0])
    kernel = kernel.copy()
    kernel[np.isin(rows % 64, removed1)] = 0                  # Flatten of (5, 5, 64): row = p * 64 + c
    dense[0].set_weights([kernel, bias])
    kept2 = result.kept[dense[0].name]
    k2, b2 = dense[1].get_weights()
    k2 = k2.copy()
    k2[np.setdiff1d(np.arange(128), kept2)] = 0
    dense[1].set_weights([k2, b2])
    x = np.random.default_rng(1).normal(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(outputs(small, x), outputs(model, x), rtol=1e-4, atol=1e-6)
    # the kept channels are those of largest summed L2 norm (conv out slice + next layer's in slice)
    w0 = keras.saving.load_model(tmp_path / "cnn.keras").layers[0].get_weights()[0]
    w1_orig = keras.saving.load_model(tmp_path / "cnn.keras").layers[2].get_weights()[0]
    score = np.sqrt((w0 ** 2).sum(axis=(0, 1, 2)) + (w1_orig ** 2).sum(axis=(0, 1, 3)))
    np.testing.assert_array_equal(np.sort(kept0), np.sort(np.argsort(-score, kind="stable")[:16]))


def mixed_model():
    """A Functional model with every op the dependency rules cover, plus a nested Sequential."""
    inp = keras.Input((16, 16, 3), name="image")
    stem = keras.Sequential([L.Conv2D(16, 3, padding="same", name="stem_conv"), L.BatchNormalization(name="stem_bn"),
                             L.ReLU(name="stem_relu")], name="stem")
    x = stem(inp)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)   # 32 = 16 x 2
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.Conv2D(16, 1, name="pw")(y)
    se = L.GlobalAveragePooling2D(name="se_pool")(y)
    se = L.Reshape((1, 1, 16), name="se_reshape")(se)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(se)
    y = L.Multiply(name="se_mul")([y, se])                                      # squeeze-excite broadcast
    x = L.Add(name="residual")([x, y])
    z = L.SeparableConv2D(12, 3, padding="same", activation="relu", name="sep")(x)
    w = L.Conv2D(12, 3, padding="same", dilation_rate=2, name="dilated")(x)
    c = L.Concatenate(name="concat")([z, w, x])                                 # 12 + 12 + 16
    c = L.Conv2D(24, 3, strides=2, padding="same", groups=4, name="grouped")(c)  # 10 in / 6 out per group
    c = L.ZeroPadding2D(1, name="pad")(c)
    c = L.Conv2DTranspose(8, 2, strides=2, name="deconv")(c)
    c = L.MaxPooling2D(name="maxpool")(c)
    c = L.UpSampling2D(name="upsample")(c)
    c = L.AveragePooling2D(4, name="avgpool")(c)
    f = L.Flatten(name="flatten")(c)
    f = L.Dense(32, activation="gelu", name="fc")(f)
    f = L.Dropout(0.3, name="dropout")(f)
    t = L.Dense(16, name="proj")(f)
    t = L.LayerNormalization(name="ln")(t)                                      # frozen by default
    out = L.Dense(5, name="head")(t)
    return keras.Model(inp, out, name="mixed")


def test_mixed_model_live(tmp_path):
    """A live Functional model in, a smaller live Keras model out, equal to the zeroed original."""
    model = mixed_model()
    coverage.randomize_norms(model)
    x = np.random.default_rng(2).normal(size=(3, 16, 16, 3)).astype(np.float32)
    result = prune_model(model, 0.5, tmp_path / "small.keras")
    expected = coverage.zeroed_outputs(model, result, x)
    np.testing.assert_allclose(outputs(result.model, x), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.abs(outputs(model, x) - expected).max() > 1e-3          # channels really were removed
    assert result.model.count_params() == result.params_after < 0.4 * model.count_params()
    assert result.file_size == os.path.getsize(tmp_path / "small.keras")
    assert "LayerNorm" in result.frozen_reasons["ln"]


def test_groups_of_the_mixed_model():
    deps = analyze(load_graph(mixed_model()))
    groups = {g.producers: (g.classes.size, int(g.frozen.sum())) for g in deps.groups}
    assert groups == {
        # The residual stream (stem conv; depthwise x2 folded in; SE-scaled 1x1 conv; SE expand conv) feeds a
        # concatenation [separable 12, dilated conv 12, stream 16] read by a conv with 4 groups of 10 inputs:
        # lockstep ties concat channels l, l+10, l+20, l+30, so all of them form one group of 10 classes.
        ("stem/stem_conv", "dw", "pw", "se_expand", "sep", "dilated"): (10, 0),
        ("se_reduce",): (4, 0),                # SE squeeze
        ("grouped",): (6, 0),                  # 24 grouped-conv outputs, 4 groups in lockstep
        ("deconv",): (8, 0),
        ("fc",): (32, 0),                      # after Flatten
        ("proj",): (16, 16),                   # normalized by LayerNormalization: frozen
        ("head",): (5, 5),                     # model output
        ("image",): (3, 3),                    # model input
    }


@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])  # DenseNet121 and the rest: benchmarks/graph_coverage.py
def test_keras_applications_equivalence(name, tmp_path):
    model, shape = coverage.build(name)
    coverage.randomize_norms(model)
    x = np.random.default_rng(3).normal(size=(1,) + shape).astype(np.float32)
    result, diff, scale, _ = coverage.check(model, 0.3, x, str(tmp_path))
    assert diff <= 1e-4 * max(scale, 1.0), (diff, scale)
    assert result.params_after < 0.8 * result.params_before
    assert result.macs_after < 0.8 * result.macs_before


def test_round_to_min_channels_and_exclude(tmp_path):
    model = coverage.classic_cnn()
    model.save(tmp_path / "cnn.keras")
    result = prune_model(tmp_path / "cnn.keras", 0.7, tmp_path / "a.keras", round_to=8)
    assert {k: len(v) for k, v in result.kept.items()} == {"conv1": 16, "conv2": 24, "fc1": 40}  # ceil(0.3n/8)*8
    result = prune_model(tmp_path / "cnn.keras", 0.99, tmp_path / "b.keras", min_channels=5)
    assert [len(k) for k in result.kept.values()] == [5, 5, 5]
    result = prune_model(tmp_path / "cnn.keras", 0.5, tmp_path / "c.keras", exclude=["conv2*", "fc1"])
    assert list(result.kept) == ["conv1"]
    result = prune_model(tmp_path / "cnn.keras", {"fc*": 0.25}, tmp_path / "d.keras")
    assert {k: len(v) for k, v in result.kept.items()} == {"fc1": 96}
    result = prune_model(tmp_path / "cnn.keras", 0.5, tmp_path / "e.keras", global_pruning=True)
    removed = sum(r.channels_before - r.channels_after for r in result.rows if r.kind in ("Conv2D", "Dense"))
    assert removed == round(0.5 * (32 + 64 + 128))


def test_bn_and_user_importance(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(8, 3, name="conv2d"), L.BatchNormalization(), L.ReLU(),
                              L.GlobalAveragePooling2D(), L.Dense(3)])
    gamma = np.array([5, 0.1, 4, 0.2, 3, 0.3, 2, 0.4], dtype=np.float32)
    bn = model.layers[1]
    bn.set_weights([gamma] + bn.get_weights()[1:])
    model.save(tmp_path / "m.keras")
    result = prune_model(tmp_path / "m.keras", 0.5, tmp_path / "s.keras", importance="bn")
    np.testing.assert_array_equal(result.kept["conv2d"], [0, 2, 4, 6])
    user = {"conv2d": np.arange(8)[::-1].astype(float)}
    result = prune_model(tmp_path / "m.keras", 0.5, tmp_path / "s.keras", importance="user", scores=user)
    np.testing.assert_array_equal(result.kept["conv2d"], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="8 output channels"):
        prune_model(tmp_path / "m.keras", 0.5, tmp_path / "s.keras", importance="user", scores={"conv2d": [1, 2]})
    with pytest.raises(ValueError, match="no layer named"):
        prune_model(tmp_path / "m.keras", 0.5, tmp_path / "s.keras", importance="user", scores={"nope": [1]})


def test_activation_scores(tmp_path):
    from swiftprune.graph import activation_scores
    model = keras.Sequential([keras.Input((4,)), L.Dense(6, activation="relu", name="hidden"), L.Dense(2)])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    scores = activation_scores(model, x)
    hidden = np.maximum(x @ model.layers[0].get_weights()[0] + model.layers[0].get_weights()[1], 0)
    np.testing.assert_allclose(scores["hidden"], np.abs(hidden).mean(axis=0), rtol=1e-5, atol=1e-6)
    result = prune_model(model, 0.5, importance="activation", scores=scores)
    np.testing.assert_array_equal(result.kept["hidden"], np.sort(np.argsort(-scores["hidden"], kind="stable")[:3]))


def test_shared_and_unknown_layers_freeze(tmp_path):
    inp = keras.Input((8, 8, 3))
    shared = L.Conv2D(3, 1, name="shared")
    a = shared(inp)
    b = shared(a)                                              # one layer, two calls
    c = L.Conv2D(8, 3, name="c1")(b)
    d = L.Permute((2, 1, 3), name="permute")(c)                # not understood: freezes c1's channels
    e = L.Conv2D(8, 3, name="c2")(d)
    out = L.Dense(2)(L.Flatten()(e))
    model = keras.Model(inp, out)
    model.save(tmp_path / "m.keras")
    result = prune_model(tmp_path / "m.keras", 0.5, tmp_path / "s.keras")
    assert "shared layer" in result.frozen_reasons["shared"]
    assert "Permute" in result.frozen_reasons["permute"]
    assert list(result.kept) == ["c2"]
    small = keras.saving.load_model(tmp_path / "s.keras")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(outputs(small, x), coverage.zeroed_outputs(model, result, x), rtol=1e-5, atol=1e-6)


def test_bad_keras_files(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(KerasFileError, match="not a zip"):
        prune_model(bad, 0.5, tmp_path / "o.keras")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="model.weights.h5"):
        prune_model(bad, 0.5, tmp_path / "o.keras")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("config.json", "{broken")
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match="config.json"):
        prune_model(bad, 0.5, tmp_path / "o.keras")
    with pytest.raises(FileNotFoundError):
        prune_model(tmp_path / "missing.keras", 0.5, tmp_path / "o.keras")
    with pytest.raises(ValueError, match=r"\.keras file"):
        prune_model(bad, 0.5, tmp_path / "o.onnx")
    with pytest.raises(ValueError, match="amount"):
        prune_model(coverage.classic_cnn(), 1.5)
    assert not (tmp_path / "o.keras").exists()


def test_nested_model_in_the_middle(tmp_path):
    """A nested Sequential whose input channels shrink: its recorded build shapes are updated."""
    inner = keras.Sequential([keras.Input((8, 8, 8)), L.Conv2D(8, 3, padding="same", name="inner_conv"),
                              L.BatchNormalization(name="inner_bn"), L.ReLU()], name="block")
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="outer_conv")(inp)
    x = inner(x)
    out = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    coverage.randomize_norms(model)
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype(np.float32)
    result, diff, scale, _ = coverage.check(model, 0.5, x, str(tmp_path))
    assert set(result.kept) == {"outer_conv", "block/inner_conv"}
    assert diff <= 1e-5 * max(scale, 1.0)


def test_mobilenet_v3_and_convnext_pieces(tmp_path):
    """The paths of MobileNetV3 and ConvNeXt without building them (benchmarks/graph_coverage.py runs those):
    Rescaling, hard-swish, a squeeze-excite whose hard sigmoid is keras.ops on KerasTensors (x + 3, * 1/6),
    ConvNeXt's LayerScale (its projection_dim rewritten when channels go), a LayerNorm + Dense MLP block."""
    from keras.src.applications.convnext import LayerScale   # what keras.applications.ConvNeXt* build
    # Zero initializers, random weights set below: JAX compiles a random initializer once per weight shape,
    # seconds each, when the model is built and again when the pruned file is loaded.
    zero = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
    inp = keras.Input((8, 8, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
    x = L.Conv2D(16, 3, padding="same", name="stem", **zero)(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("hard_swish", name="hswish")(x)
    s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    s = L.ReLU(name="se_relu")(L.Conv2D(4, 1, name="se_reduce", **zero)(s))
    s = L.ReLU(6.0, name="se_relu6")(L.Conv2D(16, 1, name="se_expand", **zero)(s) + 3.0) * (1.0 / 6.0)
    x = L.Multiply(name="se_mul")([x, s])
    x = LayerScale(0.5, 16, name="scale")(x)
    y = L.Conv2D(16, 3, padding="same", groups=16, name="dw", **zero)(x)    # a ConvNeXt block: "depthwise" Conv2D
    y = L.LayerNormalization(epsilon=1e-6, name="ln")(y)
    y = L.Dense(32, name="mlp_up", **zero)(y)
    y = L.Activation("gelu", name="gelu")(y)
    y = L.Dense(16, name="mlp_down", **zero)(y)
    y = LayerScale(0.3, 16, name="block_scale")(y)
    x = L.Add(name="residual")([x, y])
    out = L.Dense(5, name="head", **zero)(L.GlobalAveragePooling2D(name="pool")(x))
    model = keras.Model(inp, out, name="v3_convnext")
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.2, 2.0, w.shape) if isinstance(layer, LayerScale)
                               else rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    coverage.randomize_norms(model)
    x = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype(np.float32) * 100
    result, diff, scale, _ = coverage.check(model, 0.5, x, str(tmp_path))
    assert diff <= 1e-5 * max(scale, 1.0), (diff, scale)
    # the stem's stream runs into the LayerNorm: frozen; the MLP's hidden channels and the SE's go
    assert set(result.kept) == {"se_reduce", "mlp_up"} and len(result.kept["mlp_up"]) == 16
    assert "LayerNorm" in result.frozen_reasons["ln"]
    # with the LayerNorm allowed, the stream shrinks and both LayerScales are rewritten to the kept count
    result = prune_model(tmp_path / "v3_convnext.keras", 0.5, tmp_path / "ln.keras", allow_layernorm=True)
    small = keras.saving.load_model(tmp_path / "ln.keras")
    assert small.get_layer("scale").projection_dim == small.get_layer("block_scale").projection_dim == 8
    assert small.get_layer("scale").get_weights()[0].shape == (8,)
    assert small.get_layer("dw").groups == small.get_layer("dw").filters == 8
    assert outputs(small, x).shape == (2, 5)
