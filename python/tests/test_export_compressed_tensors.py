"""swiftprune.export.to_compressed_tensors: the checkpoint decompresses, with
the compressed-tensors package itself where it is installed (it needs torch),
to exactly swiftprune's dequantized weights; the packing is also checked
against an independent bit-by-bit NumPy transcription of the format."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.export.compressed_tensors import pack_to_int32, to_compressed_tensors
from swiftprune.io import SafetensorsFile

RNG = np.random.default_rng(31)


def state_dict():
    return {
        "model.layers.0.mlp.up_proj.weight": RNG.standard_normal((48, 256)).astype(np.float32),
        "model.layers.0.mlp.down_proj.weight": RNG.standard_normal((256, 48)).astype(np.float32),
        "model.layers.0.self_attn.q_proj.weight": RNG.standard_normal((40, 96)).astype(np.float32),
        "model.layers.0.self_attn.o_proj.weight": RNG.standard_normal((24, 40)).astype(np.float32),
        "model.norm.weight": np.ones(48, np.float32),
    }


RECIPE = [
    {"quantize": {"bits": 4, "axis": 0, "group_size": 128}, "include": "*up_proj.weight"},
    {"quantize": {"bits": 8, "axis": 0}, "include": "*down_proj.weight"},
    {"quantize": {"bits": 3, "axis": 0, "group_size": 32, "symmetric": False}, "include": "*q_proj.weight"},
    {"prune": {"sparsity": 0.7}, "include": "*o_proj.weight"},
]


def reference_unpack(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Value i of a row is bits [i*bits, (i+1)*bits) of its int32 words (little-endian), minus 2**(bits-1)."""
    stream = np.unpackbits(np.ascontiguousarray(words, dtype="<i4").view(np.uint8).reshape(words.shape[0], -1), axis=1, bitorder="little")
    codes = stream[:, :count * bits].reshape(words.shape[0], count, bits) @ (1 << np.arange(bits))
    return codes - (1 << (bits - 1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ct")
    result = sp.compress(state_dict(), RECIPE, progress=False)
    out = to_compressed_tensors(result, directory, config={"model_type": "llama", "hidden_size": 48})
    return result, out, directory


def test_layout_and_config(exported):
    result, out, directory = exported
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "llama"
    qc = config["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    schemes = {tuple(g["targets"]): g["weights"] for g in qc["config_groups"].values()}
    assert schemes[("model.layers.0.mlp.up_proj",)] | {} == schemes[("model.layers.0.mlp.up_proj",)]
    assert schemes[("model.layers.0.mlp.up_proj",)]["strategy"] == "group"
    assert schemes[("model.layers.0.mlp.up_proj",)]["group_size"] == 128
    assert schemes[("model.layers.0.mlp.down_proj",)]["strategy"] == "channel"
    assert schemes[("model.layers.0.self_attn.q_proj",)]["symmetric"] is False
    assert qc["sparsity_config"]["format"] == "sparse-bitmask"
    assert qc["sparsity_config"]["targets"] == ["model.layers.0.self_attn.o_proj.weight"]
    stored = SafetensorsFile(directory / "model.safetensors").to_dict()
    assert out.nbytes == os.path.getsize(directory / "model.safetensors")
    for name, q in result.tensors.items():
        if not isinstance(q, sp.QuantizedTensor):
            continue
        prefix = name[:-len(".weight")]
        packed = stored[f"{prefix}.weight_packed"]
        assert packed.dtype == np.int32 and packed.shape == (q.shape[0], -(-q.shape[1] * q.bits // 32))
        signed = q.values.astype(np.int64) - (0 if q.symmetric else 1 << (q.bits - 1))
        np.testing.assert_array_equal(reference_unpack(packed, q.bits, q.shape[1]), signed)
        np.testing.assert_array_equal(stored[f"{prefix}.weight_shape"], q.shape)
        np.testing.assert_array_equal(stored[f"{prefix}.weight_scale"], q.scale)
        # (values - zero point) * scale, as compressed-tensors dequantizes, is swiftprune's weight
        scale = np.repeat(q.scale, q.group_size, axis=1) if q.group_size else q.scale
        zero = 0
        if not q.symmetric:
            zp = reference_unpack(stored[f"{prefix}.weight_zero_point"].T, q.bits, q.scale.shape[0]).T
            zero = np.repeat(zp, q.group_size, axis=1) if q.group_size else zp
        np.testing.assert_array_equal(((signed - zero) * scale).astype(np.float32), result.weights[name])
    sparse = "model.layers.0.self_attn.o_proj.weight"
    keep = np.unpackbits(stored[f"{sparse}.bitmask"], axis=1, count=40, bitorder="little").astype(bool)
    dense = np.zeros((24, 40), np.float32)
    dense[keep] = stored[f"{sparse}.compressed"]
    np.testing.assert_array_equal(dense, result.weights[sparse])
    np.testing.assert_array_equal(stored["model.norm.weight"], np.ones(48, np.float32))


def test_pack_to_int32_matches_the_reference_for_every_width():
    for bits in range(1, 9):
        values = RNG.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(5, 37))
        words = pack_to_int32(values, bits)
        assert words.shape == (5, -(-37 * bits // 32))
        np.testing.assert_array_equal(reference_unpack(words, bits, 37), values)


def test_decompressed_by_compressed_tensors(exported):
    torch = pytest.importorskip("torch", reason="compressed-tensors needs torch")
    ct = pytest.importorskip("compressed_tensors", reason="compressed-tensors is not installed")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme
    from compressed_tensors.utils import unpack_bitmasks

    result, out, directory = exported
    config = json.loads((directory / "config.json").read_text())["quantization_config"]
    parsed = QuantizationConfig.model_validate({k: v for k, v in config.items() if k != "sparsity_config"})
    stored = SafetensorsFile(directory / "model.safetensors").to_dict()
    for group in parsed.config_groups.values():
        scheme = QuantizationScheme(targets=group.targets, weights=group.weights)
        for target in group.targets:
            state = {key[len(target) + 1:]: torch.from_numpy(np.array(value)) for key, value in stored.items()
                     if key.startswith(target + ".")}
            weight = PackedQuantizationCompressor.decompress(state, scheme)["weight"]
            np.testing.assert_array_equal(weight.numpy(), result.weights[target + ".weight"])
    sparse = "model.layers.0.self_attn.o_proj.weight"
    mask = unpack_bitmasks(torch.from_numpy(np.array(stored[f"{sparse}.bitmask"])), [24, 40]).numpy()
    np.testing.assert_array_equal(mask, result.weights[sparse] != 0)
    assert ct.__version__


def test_bad_layouts_are_named(tmp_path):
    result = sp.compress({"w": RNG.standard_normal((8, 16)).astype(np.float32)},
                         [{"quantize": {"bits": 4, "axis": 1}}], progress=False)
    with pytest.raises(ValueError, match=r"w: compressed-tensors needs scales per output row"):
        to_compressed_tensors(result, tmp_path / "x")


def test_cli_export_compressed_tensors(tmp_path):
    from swiftprune import cli

    sp.compress(state_dict(), RECIPE, progress=False).save(tmp_path / "c.safetensors")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert cli.main(["export", str(tmp_path / "c.safetensors"), "--compressed-tensors", "-o", str(tmp_path / "ct"),
                     "--config", str(tmp_path / "config.json"), "-q"]) == 0
    config = json.loads((tmp_path / "ct" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["quantization_config"]["format"] == "pack-quantized"
