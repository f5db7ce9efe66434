"""compress(): containers, recipes, selection, composition, report, compressed files."""
from __future__ import annotations

import collections
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import model, report
from swiftprune import registry as registries
from swiftprune.io import SafetensorsFile

import _reference_models as ref

RNG = np.random.default_rng(11)
PRUNE80 = [{"prune": {"sparsity": 0.8}}]


def torch_like() -> dict[str, np.ndarray]:
    """A state_dict converted to NumPy: (out, in) weights, biases, an int buffer."""
    return {
        "fc1.weight": RNG.standard_normal((16, 12)).astype(np.float32),
        "fc1.bias": RNG.standard_normal(16).astype(np.float32),
        "bn.running_mean": RNG.standard_normal(16).astype(np.float32),
        "bn.num_batches_tracked": np.array(100, dtype=np.int64),
        "conv.weight": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "fc2.weight": RNG.standard_normal((5, 16)),  # float64
    }


def keras_like() -> list[np.ndarray]:
    return [RNG.standard_normal((12, 16)).astype(np.float32), np.zeros(16, np.float32),
            RNG.standard_normal((16, 5)).astype(np.float16), np.zeros(5, np.float32)]


@pytest.fixture
def registry():
    """Lets a test register methods/codecs; restores the registries afterwards."""
    methods = {stage: dict(m) for stage, m in registries._METHODS.items()}
    defaults = dict(registries._DEFAULT_METHOD)
    codecs = dict(registries._CODECS)
    yield model
    registries._METHODS.clear()
    registries._METHODS.update(methods)
    registries._DEFAULT_METHOD.clear()
    registries._DEFAULT_METHOD.update(defaults)
    registries._CODECS.clear()
    registries._CODECS.update(codecs)


# A toy value encoding for the tests only: sign(w) * mean|w| per tensor. It
# stands in for quantize/cluster/low_rank to test how the pipeline composes.
@dataclass(frozen=True)
class SignTensor:
    signs: np.ndarray  # int8
    scale: np.ndarray  # float32, shape (1,)

    def dense(self) -> np.ndarray:
        return (self.signs * self.scale[0]).astype(np.float32)


def sign_encode(w: np.ndarray, offset: float = 0.0) -> SignTensor:
    # `offset` makes zeros non-zero after decoding, to prove the mask is re-applied.
    signs = np.where(w >= 0, 1, -1).astype(np.int8)
    return SignTensor(signs, np.array([np.abs(w).mean() + offset], dtype=np.float32))


def register_sign(registry) -> None:
    registry.register_codec(registry.Codec(
        kind="test_sign", type=SignTensor, dense=SignTensor.dense,
        nbytes=lambda t: t.signs.size // 8 + 4,
        encode=lambda t: ({"signs": t.signs, "scale": t.scale}, {"note": "toy"}),
        decode=lambda parts, attrs: SignTensor(np.array(parts["signs"]), np.array(parts["scale"])),
    ))

    def check_offset(name, value):
        if not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        return float(value)

    registry.register_method(registry.Method(stage="cluster", name="test_sign", apply=sign_encode,
                                             options={"offset": (check_offset, 0.0)}))


# --------------------------------------------------------------------------- #
# Containers
# --------------------------------------------------------------------------- #


def test_state_dict_mapping(tmp_path):
    weights = torch_like()
    before = {k: v.copy() for k, v in weights.items()}
    result = sp.compress(weights, PRUNE80, progress=False)
    assert type(result.weights) is dict and list(result.weights) == list(weights)
    for name in ("fc1.weight", "conv.weight", "fc2.weight"):
        expected = weights[name] * ref.magnitude_mask(weights[name], 0.8)
        got = result.weights[name]
        assert got.dtype == np.float32 and got.shape == weights[name].shape
        np.testing.assert_array_equal(got, expected.astype(np.float32))
        assert isinstance(result.tensors[name], sp.PrunedTensor)
        np.testing.assert_array_equal(result.tensors[name].mask, ref.magnitude_mask(weights[name], 0.8))
    for name in ("fc1.bias", "bn.running_mean", "bn.num_batches_tracked"):  # 1-D and int: untouched
        assert result.weights[name] is weights[name]
        assert result.tensors[name] is weights[name]
    for name, value in weights.items():
        np.testing.assert_array_equal(value, before[name])  # inputs not modified


def test_ordered_dict_and_keras_list_and_tuple():
    od = collections.OrderedDict(torch_like())
    assert type(sp.compress(od, PRUNE80, progress=False).weights) is collections.OrderedDict
    weights = keras_like()
    result = sp.compress(weights, PRUNE80, progress=False)
    assert isinstance(result.weights, list) and len(result.weights) == 4
    np.testing.assert_array_equal(result.weights[0], weights[0] * ref.magnitude_mask(weights[0], 0.8))
    np.testing.assert_array_equal(result.weights[2], (weights[2] * ref.magnitude_mask(weights[2], 0.8)).astype(np.float32))
    assert result.weights[1] is weights[1]
    assert list(result.tensors) == ["0", "1", "2", "3"]
    assert result.container == "sequence"
    assert isinstance(sp.compress(tuple(weights), PRUNE80, progress=False).weights, tuple)


def test_loaded_file_and_open_file(tmp_path):
    weights = torch_like()
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, weights)
    from_dict = sp.compress(sp.load_weights(path), PRUNE80, progress=False)
    from_file = sp.compress(SafetensorsFile(path), PRUNE80, progress=False)
    in_memory = sp.compress(weights, PRUNE80, progress=False)
    for name in weights:
        np.testing.assert_array_equal(from_dict.weights[name], in_memory.weights[name])
        np.testing.assert_array_equal(from_file.weights[name], in_memory.weights[name])


def test_layouts_and_dtypes():
    base = RNG.standard_normal((10, 12))
    for w in (base.astype(np.float16), base.astype(np.float32), base, np.asfortranarray(base), base[::2, ::3]):
        result = sp.compress({"w": w}, PRUNE80, progress=False)
        expected = (w.astype(np.float32) * ref.magnitude_mask(w, 0.8)).astype(np.float32)
        np.testing.assert_array_equal(result.weights["w"], expected)


def test_empty_and_tiny_tensors():
    weights = {"empty": np.zeros((0, 4), np.float32), "one": np.ones((1, 1), np.float32)}
    result = sp.compress(weights, [{"prune": {"sparsity": 0.5}}], progress=False)
    assert result.weights["empty"].shape == (0, 4)
    assert result.report[0]["bits"] == 0.0 and result.report[0]["relative_error"] == 0.0


def test_bad_containers():
    with pytest.raises(TypeError, match="mapping"):
        sp.compress(np.ones((3, 3)), PRUNE80)
    with pytest.raises(TypeError, match="mapping"):
        sp.compress("model.safetensors", PRUNE80)
    with pytest.raises(TypeError, match="names"):
        sp.compress({3: np.ones((2, 2))}, PRUNE80)


def test_nan_names_stage_and_tensor():
    weights = {"good": np.ones((2, 2)), "bad": np.array([[1.0, np.nan], [0, 1]])}
    with pytest.raises(ValueError, match=r"recipe stage 0 \(prune\) on tensor 'bad'.*NaN"):
        sp.compress(weights, PRUNE80, progress=False)


# --------------------------------------------------------------------------- #
# Selection
# --------------------------------------------------------------------------- #


def touched(result) -> set[str]:
    return {r["name"] for r in result.report if r["stages"] != "-"}


def test_selection_by_glob_rank_and_name():
    weights = torch_like()
    run = lambda **fields: touched(sp.compress(weights, [{"prune": {"sparsity": 0.5}, **fields}], progress=False))
    assert run() == {"fc1.weight", "conv.weight", "fc2.weight"}
    assert run(include="fc*") == {"fc1.weight", "fc2.weight"}
    assert run(include=["conv.*", "fc2.*"]) == {"conv.weight", "fc2.weight"}
    assert run(exclude="*.weight") == set()
    assert run(min_rank=1) == {"fc1.weight", "fc1.bias", "bn.running_mean", "conv.weight", "fc2.weight"}
    assert run(min_rank=4) == {"conv.weight"}
    assert run(include=["fc1.*", "fc1.bias"]) == {"fc1.weight", "fc1.bias"}  # named explicitly: 1-D selected
    assert run(min_rank=0) == {"fc1.weight", "fc1.bias", "bn.running_mean", "conv.weight", "fc2.weight"}  # ints never


def test_selection_errors():
    weights = torch_like()
    with pytest.raises(ValueError, match=r"stage 0 \(prune\), field 'include': pattern 'fc9\*' matches no tensor"):
        sp.compress(weights, [{"prune": {"sparsity": 0.5}, "include": "fc9*"}])
    with pytest.raises(ValueError, match="int64; only float"):
        sp.compress(weights, [{"prune": {"sparsity": 0.5}, "include": "bn.num_batches_tracked"}])


# --------------------------------------------------------------------------- #
# Recipes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("recipe,kind,message", [
    ([{"prune": {"sparsity": 1.5}}], ValueError, r"recipe stage 0 \(prune\), field 'sparsity': .*\[0, 1\].*1.5"),
    ([{"prune": {"sparsity": "high"}}], TypeError, r"stage 0 \(prune\), field 'sparsity'"),
    ([{"prune": {}}], ValueError, r"stage 0 \(prune\), field 'sparsity': required"),
    ([{"prune": None}], ValueError, r"field 'sparsity': required"),
    ([{"prune": {"sparsity": 0.5, "amount": 2}}], ValueError, r"field 'amount': not an option"),
    ([{"prune": {"method": "psychic", "sparsity": 0.5}}], ValueError, r"field 'method': unknown method 'psychic'"),
    ([PRUNE80[0], {"prune": {"sparsity": 0.5}, "colour": 1}], ValueError, r"recipe stage 1: unknown field 'colour'"),
    ([{"sparsity": 0.5}], ValueError, r"recipe stage 0: unknown field 'sparsity'"),
    ([{"include": "*"}], ValueError, r"stage 0: needs exactly one of prune"),
    ([{"prune": {"sparsity": 0.5}, "cluster": {}}], ValueError, r"needs exactly one"),
    ([{"prune": [0.5]}], TypeError, r"stage 0 \(prune\): options must be a mapping"),
    ([{"prune": {"sparsity": 0.5}, "include": 3}], TypeError, r"field 'include'"),
    ([{"prune": {"sparsity": 0.5}, "min_rank": -1}], ValueError, r"field 'min_rank'"),
    ([{"prune": {"sparsity": 0.5}, "min_rank": 1.5}], TypeError, r"field 'min_rank'"),
    (["prune"], TypeError, r"recipe stage 0: expected a mapping"),
    ([], ValueError, "recipe is empty"),
    ({"prune": {"sparsity": 0.5}}, TypeError, "list of stages"),
])
def test_recipe_errors_name_stage_and_field(recipe, kind, message):
    with pytest.raises(kind, match=message):
        sp.compress({"w": np.ones((2, 2))}, recipe)


def test_unavailable_stage_is_reported(registry):
    registries._METHODS["low_rank"] = {}
    with pytest.raises(ValueError, match=r"stage 0 \(low_rank\): low_rank is not available"):
        sp.compress({"w": np.ones((2, 2))}, [{"low_rank": {"rank": 1}}])


def test_yaml_and_json_recipe_files(tmp_path):
    pytest.importorskip("yaml")
    weights = torch_like()
    yaml_path = tmp_path / "recipe.yaml"
    yaml_path.write_text("# prune the linear layers\n- prune: {method: magnitude, sparsity: 0.8}\n  include: 'fc*'\n")
    json_path = tmp_path / "recipe.json"
    json_path.write_text(json.dumps([{"prune": {"method": "magnitude", "sparsity": 0.8}, "include": "fc*"}]))
    expected = sp.compress(weights, [{"prune": {"sparsity": 0.8}, "include": "fc*"}], progress=False)
    for path in (yaml_path, str(json_path)):
        result = sp.compress(weights, path, progress=False)
        for name in weights:
            np.testing.assert_array_equal(result.weights[name], expected.weights[name])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- prune: {sparsity: 0.8\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        sp.compress(weights, bad)
    bad.write_text("prune: {sparsity: 0.8}\n")
    with pytest.raises(ValueError, match="must hold a list"):
        sp.compress(weights, bad)
    bad.write_text("- prune: {sparsity: 2}\n")
    with pytest.raises(ValueError, match=r"stage 0 \(prune\), field 'sparsity'"):
        sp.compress(weights, bad)
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ValueError, match="invalid JSON"):
        sp.compress(weights, tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        sp.compress(weights, tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- #
# Composition
# --------------------------------------------------------------------------- #


def test_prune_twice_accumulates_masks():
    w = RNG.standard_normal((20, 10))
    result = sp.compress({"w": w}, [{"prune": {"sparsity": 0.5}}, {"prune": {"sparsity": 0.7}}], progress=False)
    first = ref.magnitude_mask(w, 0.5)
    second = ref.magnitude_mask(np.where(first, w, 0).astype(np.float32), 0.7)
    np.testing.assert_array_equal(result.tensors["w"].mask, first & second)
    assert result.report[0]["stages"] == "prune.magnitude+prune.magnitude"


def test_prune_then_value_encoding_keeps_zeros_exact(registry, tmp_path):
    register_sign(registry)
    w = RNG.standard_normal((8, 16)).astype(np.float32)
    recipe = [{"prune": {"sparsity": 0.5}}, {"cluster": {"method": "test_sign", "offset": 1.0}}]
    result = sp.compress({"w": w, "b": np.ones(8, np.float32)}, recipe, progress=False)
    mask = ref.magnitude_mask(w, 0.5)
    pruned = np.where(mask, w, 0).astype(np.float32)
    expected = sign_encode(pruned, 1.0).dense() * mask
    np.testing.assert_array_equal(result.weights["w"], expected)
    assert np.count_nonzero(result.weights["w"]) == mask.sum()  # zeros exact despite the offset
    assert isinstance(result.tensors["w"], SignTensor)
    np.testing.assert_array_equal(result.masks["w"], mask)
    row = result.report[0]
    assert row["stages"] == "prune.magnitude+cluster.test_sign"
    assert row["bytes_after"] == w.size // 8 + 4 + (w.size + 7) // 8
    # The whole thing survives a save / load round trip.
    path = tmp_path / "c.safetensors"
    result.save(path)
    loaded = sp.load_compressed(path)
    np.testing.assert_array_equal(loaded.weights["w"], result.weights["w"])
    np.testing.assert_array_equal(loaded.masks["w"], mask)
    np.testing.assert_array_equal(loaded.tensors["w"].signs, result.tensors["w"].signs)
    assert loaded.report == result.report


def test_stage_order_errors(registry):
    register_sign(registry)
    w = {"w": RNG.standard_normal((4, 4))}
    sign = {"cluster": {"method": "test_sign"}}
    with pytest.raises(ValueError, match=r"stage 1 \(prune\): tensor 'w' was already encoded by cluster.test_sign"):
        sp.compress(w, [sign, {"prune": {"sparsity": 0.5}}], progress=False)
    with pytest.raises(ValueError, match=r"stage 1 \(cluster\): tensor 'w' was already encoded"):
        sp.compress(w, [sign, sign], progress=False)
    with pytest.raises(TypeError, match=r"stage 0 \(cluster\), field 'offset'"):
        sp.compress(w, [{"cluster": {"method": "test_sign", "offset": "x"}}])


def test_model_scope_method(registry, tmp_path):
    registry.register_method(registry.Method(
        stage="prune", name="test_global", scope="model",
        apply=lambda ws, sparsity: ref.global_magnitude_masks(ws, sparsity),
        options={"sparsity": (sp._validation.check_fraction, registries.REQUIRED)}))
    weights = torch_like()
    recipe = [{"prune": {"method": "test_global", "sparsity": 0.6}}]
    result = sp.compress(weights, recipe, progress=False)
    selected = {n: weights[n] for n in ("fc1.weight", "conv.weight", "fc2.weight")}
    expected = ref.global_magnitude_masks({n: w.astype(np.float32) for n, w in selected.items()}, 0.6)
    for name, mask in expected.items():
        np.testing.assert_array_equal(result.tensors[name].mask, mask)
    source = tmp_path / "m.safetensors"
    sp.save_weights(source, weights)
    sp.compress_file(source, tmp_path / "out.safetensors", recipe, progress=False)
    loaded = sp.load_compressed(tmp_path / "out.safetensors")
    for name, mask in expected.items():
        np.testing.assert_array_equal(loaded.tensors[name].mask, mask)


def test_method_returning_a_bad_mask(registry):
    registry.register_method(registry.Method(stage="prune", name="broken", apply=lambda w: np.ones(3), options={}))
    with pytest.raises(TypeError, match="expected bool"):
        sp.compress({"w": np.ones((2, 2))}, [{"prune": {"method": "broken"}}], progress=False)


def test_registry_rejects_bad_entries():
    with pytest.raises(ValueError, match="stage"):
        model.register_method(model.Method(stage="distill", name="x", apply=None, options={}))
    with pytest.raises(ValueError, match="scope"):
        model.register_method(model.Method(stage="prune", name="x", apply=None, options={}, scope="layer"))
    assert "magnitude" in model.available_methods()["prune"]


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def test_report_rows_and_summary():
    weights = torch_like()
    result = sp.compress(weights, PRUNE80, progress=False)
    rows = {r["name"]: r for r in result.report}
    w = weights["fc2.weight"]
    row = rows["fc2.weight"]
    kept = w.size - round(0.8 * w.size)
    assert row["shape"] == (5, 16) and row["params"] == 80 and row["nonzeros"] == kept
    assert row["bytes_before"] == 80 * 8
    assert row["bytes_after"] == kept * 4 + 10
    assert row["bits"] == pytest.approx(row["bytes_after"] * 8 / 80)
    expected_error = ref.relative_error(w, (w * ref.magnitude_mask(w, 0.8)).astype(np.float32))
    assert row["relative_error"] == pytest.approx(expected_error, rel=1e-6)
    untouched = rows["fc1.bias"]
    assert untouched["bytes_after"] == untouched["bytes_before"] == 64 and untouched["relative_error"] == 0.0
    totals = result.report.totals
    assert totals["bytes_before"] == sum(v.nbytes for v in weights.values())
    assert totals["ratio"] == pytest.approx(totals["bytes_before"] / totals["bytes_after"])
    text = result.summary()
    for name in weights:
        assert name in text
    assert "compression ratio" in text and f"{totals['ratio']:.2f}x" in text
    assert text.splitlines()[0].split()[:3] == ["tensor", "shape", "params"]


def test_relative_error_of_all_zero_tensor():
    result = sp.compress({"z": np.zeros((4, 4))}, PRUNE80, progress=False)
    assert result.report[0]["relative_error"] == 0.0
    assert report.relative_error_chunked(np.zeros(3), np.ones(3)) == math.inf


# --------------------------------------------------------------------------- #
# Compressed files
# --------------------------------------------------------------------------- #


def test_save_and_load_compressed_round_trip(tmp_path):
    weights = torch_like()
    result = sp.compress(weights, PRUNE80, progress=False)
    path = tmp_path / "c.safetensors"
    result.save(path)
    loaded = sp.load_compressed(path)
    assert list(loaded.tensors) == list(result.tensors)
    for name, form in result.tensors.items():
        got = loaded.tensors[name]
        if isinstance(form, sp.PrunedTensor):
            np.testing.assert_array_equal(got.mask, form.mask)
            np.testing.assert_array_equal(got.values, form.values)
        else:
            assert got.dtype == form.dtype
            np.testing.assert_array_equal(got, form)
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])
    assert loaded.report == result.report
    assert loaded.summary() == result.summary()
    # Smaller on disk than the dense weights, by about the reported ratio.
    big = {"w": RNG.standard_normal((512, 512)).astype(np.float32)}
    sp.compress(big, PRUNE80, progress=False).save(path)
    dense = tmp_path / "d.safetensors"
    sp.save_weights(dense, big)
    ratio = dense.stat().st_size / path.stat().st_size
    assert 4.0 < ratio < 4 / (0.2 + 1 / 32)  # 32 bits -> 0.2 * 32 + 1 bits per weight, plus the header


def test_compressed_list_comes_back_as_list(tmp_path):
    result = sp.compress(keras_like(), PRUNE80, progress=False)
    result.save(tmp_path / "k.safetensors")
    loaded = sp.load_compressed(tmp_path / "k.safetensors")
    assert isinstance(loaded.weights, list) and len(loaded.weights) == 4
    for a, b in zip(loaded.weights, result.weights):
        np.testing.assert_array_equal(a, b)


def test_compressed_file_is_standard_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    result = sp.compress(torch_like(), PRUNE80, progress=False)
    result.save(tmp_path / "c.safetensors")
    parts = st.load_file(str(tmp_path / "c.safetensors"))
    assert parts["fc1.weight::mask"].dtype == np.uint8
    np.testing.assert_array_equal(parts["fc1.weight::values"], result.tensors["fc1.weight"].values)


def test_save_errors(tmp_path):
    result = sp.compress(torch_like(), PRUNE80, progress=False)
    with pytest.raises(ValueError, match="save_weights"):
        result.save(tmp_path / "c.npz")
    clash = sp.compress({"a": np.ones((2, 2)), "a::mask": np.ones((2, 2))},
                        [{"prune": {"sparsity": 0.5}, "include": "a"}], progress=False)
    with pytest.raises(ValueError, match="used twice"):
        clash.save(tmp_path / "clash.safetensors")
    assert not (tmp_path / "clash.safetensors").exists()


def test_load_compressed_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    sp.save_weights(plain, {"a": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="load_weights"):
        sp.load_compressed(plain)
    for text in ("{not json", json.dumps({"tensors": [{"name": "a"}]}), json.dumps({"tensors": 3}),
                 json.dumps({"tensors": [{"name": "a", "kind": "pruned", "parts": {"mask": "zz"}}]})):
        bad = tmp_path / "bad.safetensors"
        sp.save_weights(bad, {"a": np.ones(2, np.float32)}, metadata={"swiftprune": text})
        with pytest.raises(ValueError):
            sp.load_compressed(bad)
    sp.save_weights(tmp_path / "u.safetensors", {"a": np.ones(2, np.float32)},
                    metadata={"swiftprune": json.dumps({"tensors": [{"name": "a", "kind": "future", "parts": {}}]})})
    with pytest.raises(ValueError, match="cannot read"):
        sp.load_compressed(tmp_path / "u.safetensors")
    wrong = {"tensors": [{"name": "a", "kind": "pruned", "parts": {"mask": "m", "values": "v"}, "attrs": {"shape": [9]}}]}
    sp.save_weights(tmp_path / "w.safetensors", {"m": np.zeros(1, np.uint8), "v": np.zeros(0, np.float32)},
                    metadata={"swiftprune": json.dumps(wrong)})
    with pytest.raises(ValueError, match="packed mask"):
        sp.load_compressed(tmp_path / "w.safetensors")


def test_compress_file_matches_compress(tmp_path, monkeypatch):
    weights = torch_like()
    source = tmp_path / "in.safetensors"
    sp.save_weights(source, weights)
    released = []
    original_release = SafetensorsFile.release
    monkeypatch.setattr(SafetensorsFile, "release", lambda self, name: (released.append(name), original_release(self, name)))
    report = sp.compress_file(source, tmp_path / "out.safetensors", PRUNE80, progress=False)
    assert released == list(weights)  # each tensor released after it was written
    expected = sp.compress(weights, PRUNE80, progress=False)
    assert report == expected.report
    loaded = sp.load_compressed(tmp_path / "out.safetensors")
    for name in weights:
        np.testing.assert_array_equal(loaded.weights[name], expected.weights[name])
    # Dense outputs, any format.
    sp.compress_file(source, tmp_path / "dense.safetensors", PRUNE80, dense=True, progress=False)
    sp.compress_file(source, tmp_path / "dense.npz", PRUNE80, progress=False)
    for out in ("dense.safetensors", "dense.npz"):
        got = sp.load_weights(tmp_path / out)
        for name in weights:
            np.testing.assert_array_equal(got[name], expected.weights[name])
    # From an .npz source too.
    np.savez(tmp_path / "in.npz", **weights)
    sp.compress_file(tmp_path / "in.npz", tmp_path / "from_npz.safetensors", PRUNE80, progress=False)
    assert sp.load_compressed(tmp_path / "from_npz.safetensors").report == expected.report


def test_compress_file_errors(tmp_path):
    source = tmp_path / "in.safetensors"
    sp.save_weights(source, torch_like())
    with pytest.raises(ValueError, match="dense=True"):
        sp.compress_file(source, tmp_path / "out.npz", PRUNE80, dense=False)
    with pytest.raises(ValueError, match="cannot tell"):
        sp.compress_file(source, tmp_path / "out.bin", PRUNE80)
    sp.compress_file(source, tmp_path / "c.safetensors", PRUNE80, progress=False)
    with pytest.raises(ValueError, match="already a swiftprune compressed file"):
        sp.compress_file(tmp_path / "c.safetensors", tmp_path / "cc.safetensors", PRUNE80)
    with pytest.raises(ValueError, match="NaN"):
        sp.save_weights(tmp_path / "nan.safetensors", {"w": np.full((2, 2), np.nan)})
        sp.compress_file(tmp_path / "nan.safetensors", tmp_path / "never.safetensors", PRUNE80, progress=False)
    assert not (tmp_path / "never.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_compress_file_in_place(tmp_path):
    weights = torch_like()
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, weights)
    sp.compress_file(path, path, PRUNE80, dense=True, progress=False)  # the mapping of the old file stays valid
    expected = sp.compress(weights, PRUNE80, progress=False)
    got = sp.load_weights(path)
    for name in weights:
        np.testing.assert_array_equal(got[name], expected.weights[name])
