"""Scales stored as float16 (``scale_dtype="float16"``, candidates ``intB:f16``).

References are NumPy: the float32-scale quantization of the same weight, its
scales rounded by ``np.float16``, and ``(values - zero_point) * scale``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import swiftprune as sp
from _compressed_files import rewrite_metadata
from swiftprune.io import SafetensorsFile

RNG = np.random.default_rng(16)


@pytest.mark.parametrize("kwargs", [dict(axis=0), dict(axis=-1, group_size=8), dict(axis=0, symmetric=False),
                                    dict(axis=None)])
def test_float16_scales_are_the_float32_ones_rounded_with_the_same_integers(kwargs):
    w = (RNG.standard_normal((16, 32)) * 0.03).astype(np.float32)
    full = sp.quantize(w, 4, **kwargs)
    half = sp.quantize(w, 4, scale_dtype="float16", **kwargs)
    np.testing.assert_array_equal(half.values, full.values)
    np.testing.assert_array_equal(half.zero_point, full.zero_point)
    np.testing.assert_array_equal(half.scale, full.scale.astype(np.float16).astype(np.float32))
    assert half.scale_dtype == "float16" and full.scale_dtype == "float32"
    assert full.nbytes - half.nbytes == 2 * full.scale.size
    # dequantized with exactly the stored scales (NumPy reference, scales broadcast back over their groups)
    scale = half.scale.astype(np.float64)
    zero = half.zero_point.astype(np.float64)
    if kwargs.get("group_size"):
        scale, zero = np.repeat(scale, 8, axis=0), np.repeat(zero, 8, axis=0)
    expected = (half.values.astype(np.float64) - zero) * scale
    np.testing.assert_allclose(half.dequantize(), expected.astype(np.float32), rtol=1e-6, atol=1e-9)


def test_file_stores_float16_scales_and_reads_them_back_exactly(tmp_path):
    w = {"conv": (RNG.standard_normal((8, 4, 3, 3)) * 0.1).astype(np.float32),
         "fc": (RNG.standard_normal((10, 64)) * 0.1).astype(np.float32), "bias": np.ones(10, np.float32)}
    recipe = [{"quantize": {"bits": 5, "axis": 0, "scale_dtype": "float16"}, "include": "conv"},
              {"quantize": {"bits": 4, "axis": 0, "group_size": 16, "symmetric": False, "scale_dtype": "float16"},
               "include": "fc"}]
    result = sp.compress(w, recipe, progress=False)
    reference = sp.compress(w, [dict(s, quantize={k: v for k, v in s["quantize"].items() if k != "scale_dtype"})
                                for s in recipe], progress=False)
    for row, ref in zip(result.report, reference.report):
        if row["name"] != "bias":
            scales = reference.tensors[row["name"]].scale.size
            assert ref["bytes_after"] - row["bytes_after"] == 2 * scales
    path = tmp_path / "f16.safetensors"
    size = result.save(path)
    stored = SafetensorsFile(path)
    assert stored["conv::scale"].dtype == np.float16 and stored["fc::scale"].dtype == np.float16
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    assert size == 8 + header + result.report.totals["bytes_after"]  # the report counts what the file holds
    back = sp.load_compressed(path)
    for name in w:
        np.testing.assert_array_equal(back.weights[name], result.weights[name])
    assert back.tensors["fc"].scale_dtype == "float16"
    np.testing.assert_array_equal(back.tensors["fc"].scale, stored["fc::scale"].astype(np.float32))


def test_gptq_float16_scales_keep_the_compensated_integers():
    w = (RNG.standard_normal((12, 32)) * 0.05).astype(np.float32)
    x = RNG.standard_normal((256, 32)).astype(np.float32)
    full = sp.gptq(w, x, bits=4, group_size=None)
    half = sp.gptq(w, x, bits=4, group_size=None, scale_dtype="float16")
    np.testing.assert_array_equal(half.values, full.values)
    np.testing.assert_array_equal(half.scale, full.scale.astype(np.float16).astype(np.float32))


def test_scales_beyond_float16_are_refused_by_name():
    with pytest.raises(ValueError, match="float16's range"):
        sp.quantize(np.full((2, 4), 1e7, np.float32), 4, axis=0, scale_dtype="float16")

    with pytest.raises(ValueError, match="scale_dtype"):
        sp.quantize(np.ones((2, 4), np.float32), 4, axis=0, scale_dtype="bfloat16")
    with pytest.raises(ValueError, match="scale_dtype"):
        sp.compress({"w": np.ones((2, 4), np.float32)}, [{"quantize": {"bits": 4, "axis": 0, "scale_dtype": "f8"}}],
                    progress=False)
    with pytest.raises(ValueError, match="not a float16 value"):
        sp.QuantizedTensor(np.zeros((2, 2), np.int8), np.full((2, 1), 0.1, np.float32), np.zeros((2, 1), np.int8),
                           bits=4, symmetric=True, axis=0, scale_dtype="float16")


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("shape,axis,group", [((4, 16), 0, None), ((4, 16), 0, 8), ((6, 4, 3, 3), 0, 12),
                                              ((3, 3, 4, 6), -1, 12)])
def test_groups_below_float16_scales_are_stored_as_zeros(tmp_path, symmetric, shape, axis, group):
    w = (RNG.standard_normal(shape) * 0.1).astype(np.float32)
    channel = [slice(None)] * len(shape)
    channel[axis] = 1
    w[tuple(channel)] *= 1e-38  # a channel of float32 denormals: scales far below float16's smallest
    full = sp.quantize(w, 4, axis=axis, group_size=group, symmetric=symmetric)
    half = sp.quantize(w, 4, axis=axis, group_size=group, symmetric=symmetric, scale_dtype="float16")
    dense = half.dequantize()
    assert np.all(dense[tuple(channel)] == 0)
    others = np.ones(shape, bool)
    others[tuple(channel)] = False
    np.testing.assert_array_equal(half.values[others], full.values[others])  # the other channels as before
    path = tmp_path / "tiny.safetensors"
    sp.compress({"w": w}, [{"quantize": {"bits": 4, "axis": axis, "group_size": group, "symmetric": symmetric,
                                         "scale_dtype": "float16"}}], progress=False).save(path)
    np.testing.assert_array_equal(sp.load_compressed(path).weights["w"], dense)


def test_a_file_whose_scale_dtype_disagrees_with_the_stored_part_is_refused(tmp_path):
    w = {"w": (RNG.standard_normal((4, 8)) * 0.1).astype(np.float32)}
    path = tmp_path / "a.safetensors"
    sp.compress(w, [{"quantize": {"bits": 4, "axis": 0}}], progress=False).save(path)
    source = SafetensorsFile(path)
    document = json.loads(source.metadata["swiftprune"])
    for value, message in (("float16", "must be float16"), ("int8", "scale_dtype")):
        document["tensors"][0]["attrs"]["scale_dtype"] = value
        target = tmp_path / f"{value}.safetensors"
        rewrite_metadata(path, target, json.dumps(document))
        with pytest.raises(ValueError, match=message):
            sp.load_compressed(target)


def test_f16_candidates_cost_less_and_their_damage_is_measured_with_the_stored_scales():
    w = {"a": (RNG.standard_normal((64, 16)) * 0.02).astype(np.float32),
         "b": (RNG.standard_normal((3, 3, 8, 16)) * 0.2).astype(np.float32)}
    assert sp.parse_candidate("int4:g32:f16").name == "int4:g32:f16"
    assert sp.parse_candidate("sparse0.5+int8:f16").scale_dtype == "float16"
    s = sp.sensitivity(w, ["int4", "int4:f16", "int4:g32:f16"], measure="weight", layout="keras", progress=False)
    for name, array in w.items():
        options = {o.candidate: o for o in s.options[name]}
        q = sp.quantize(array, 4, axis=-1)
        assert options["int4"].bytes - options["int4:f16"].bytes == 2 * q.scale.size
        half = sp.quantize(array, 4, axis=-1, scale_dtype="float16").dequantize().astype(np.float64)
        error = np.linalg.norm(half - array) / np.linalg.norm(array)  # NumPy, not the report
        assert options["int4:f16"].damage == pytest.approx(error ** 2, rel=1e-4)  # weight damage: error squared
        assert options["int4:f16"].damage != options["int4"].damage  # the rounding of the scales shows
