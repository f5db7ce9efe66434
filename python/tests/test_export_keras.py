"""swiftprune.export.to_keras: a .keras file with Keras 3's own quantized
Dense layers, loaded by keras.saving.load_model and evaluated."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import swiftprune as sp  # noqa: E402

keras = pytest.importorskip("keras", reason="Keras export tests need Keras 3 (pip install 'swiftprune[keras]')")
if not keras.__version__.startswith("3"):  # pragma: no cover
    pytest.skip("Keras export tests need Keras 3", allow_module_level=True)

import _digits_models as digits  # noqa: E402
from swiftprune.export.keras import float_weights, to_keras  # noqa: E402


def build_cnn():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
                              keras.layers.Flatten(name="flatten"),
                              keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="fc2")], name="digits_cnn")
    trained = digits.weights()["cnn"]
    for variable in model.weights:
        variable.assign(trained["/".join(variable.path.split("/")[-2:])])
    return model


@pytest.fixture(scope="module")
def cnn_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "cnn.keras"
    build_cnn().save(path)
    return path


def accuracy(model) -> float:
    x, y = digits.test_split()
    return float((np.asarray(model.predict(x.reshape(-1, 8, 8, 1), verbose=0)).argmax(axis=1) == y).mean())


def test_digits_cnn_int8_loads_and_evaluates_within_half_a_point(cnn_file, tmp_path):
    weights = dict(digits.weights()["cnn"])  # named by variable path, as float_weights(cnn_file) names them
    result = sp.compress(weights, [{"quantize": {"bits": 8, "axis": -1}, "include": "*/kernel"}], progress=False)
    out = to_keras(cnn_file, tmp_path / "int8.keras", result)
    assert out.nbytes == os.path.getsize(tmp_path / "int8.keras")
    assert out.weights["fc1/kernel"].startswith("Dense int8") and out.weights["fc2/kernel"].startswith("Dense int8")
    assert out.weights["conv/kernel"].startswith("dense float32")  # Keras 3 has no quantized Conv2D
    loaded = keras.saving.load_model(tmp_path / "int8.keras")
    fc1 = loaded.get_layer("fc1")
    assert fc1.quantization_mode == "int8" and fc1._kernel.dtype == "int8"
    q = result.tensors["fc1/kernel"]
    np.testing.assert_array_equal(np.asarray(fc1._kernel), q.values)
    np.testing.assert_allclose(np.asarray(fc1.kernel_scale), 1 / q.scale.reshape(-1), rtol=1e-7)
    x, y = digits.test_split()
    float_accuracy = float((digits.cnn_forward(digits.weights()["cnn"], x).argmax(axis=1) == y).mean())
    assert accuracy(loaded) >= float_accuracy - 0.005
    # The conv kernel holds swiftprune's dequantized int8 weights.
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("conv").kernel), result.weights["conv/kernel"])


def test_int4_dense_and_sequence_results(cnn_file, tmp_path):
    model = keras.saving.load_model(cnn_file)
    assert sorted(float_weights(model)) == sorted(digits.weights()["cnn"])
    # compress(get_weights()) names tensors by position in model.weights
    result = sp.compress(model.get_weights(), [{"quantize": {"bits": 4, "axis": -1}, "include": ["2", "4"]}],
                         progress=False)
    out = to_keras(model, tmp_path / "int4.keras", result)
    assert out.weights["fc1/kernel"].startswith("Dense int4") and out.weights["fc2/kernel"].startswith("Dense int4")
    loaded = keras.saving.load_model(tmp_path / "int4.keras")
    assert loaded.get_layer("fc1").quantization_mode == "int4"
    x = digits.test_split()[0][:50].reshape(-1, 8, 8, 1)
    expected = digits.cnn_forward({"conv/kernel": model.weights[0].numpy(), "conv/bias": model.weights[1].numpy(),
                                   "fc1/kernel": result.weights[2], "fc1/bias": model.weights[3].numpy(),
                                   "fc2/kernel": result.weights[4], "fc2/bias": model.weights[5].numpy()}, x)
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), expected, rtol=1e-3, atol=1e-3)
    assert model.get_layer("fc1").quantization_mode is None  # the live model was not changed


def test_errors(cnn_file, tmp_path):
    result = sp.compress(dict(digits.weights()["cnn"]), [{"quantize": {"bits": 8, "axis": -1}, "include": "fc1/kernel"}],
                         progress=False)
    with pytest.raises(ValueError, match="must be a .keras file"):
        to_keras(cnn_file, tmp_path / "x.h5", result)
    with pytest.raises(ValueError, match="names no variable"):
        to_keras(cnn_file, tmp_path / "x.keras", {"nope/kernel": result.tensors["fc1/kernel"]})
    with pytest.raises(FileNotFoundError):
        to_keras(tmp_path / "missing.keras", tmp_path / "x.keras", result)
