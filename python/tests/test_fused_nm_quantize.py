"""The fused N:M prune + minmax quantize + encode pass (swiftprune._fused):
the same recipe through the staged pipeline (the reference) and through the
fused pass gives byte-identical stored tensors and layouts, and equal reports."""
from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _core, _fused, pipeline
from swiftprune.io import SafetensorsWriter
from _fused_reference import assert_encodings_equal_staged, staged_quantized
from _threads import num_threads

ml_dtypes = pytest.importorskip("ml_dtypes")


def _tensors(rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    """Random and adversarial 2-D weights: ties, zeros, subnormals, ±0, an unfit shape."""
    normal = rng.standard_normal((48, 256)).astype(np.float32)
    ties = rng.choice(np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32), size=(16, 256))
    signed_zeros = np.where(rng.random((8, 128)) < 0.5, -0.0, 0.0).astype(np.float32)
    signed_zeros[:, ::7] = rng.standard_normal((8, 19)).astype(np.float32)
    zero_rows = normal[:8].copy()
    zero_rows[::2] = 0.0
    tiny = (rng.standard_normal((8, 128)) * (1e-41 if dtype != "float16" else 1e-7)).astype(np.float32)
    mixed = normal[:16].copy()
    mixed[:, :64] *= 1e-3  # one group much smaller than the others: many kept codes round to zero
    out = {"normal": normal, "ties": ties, "signed_zeros": signed_zeros, "zero_rows": zero_rows, "tiny": tiny,
           "mixed": mixed, "odd_columns": rng.standard_normal((8, 30)).astype(np.float32),
           "bias": rng.standard_normal(64).astype(np.float32)}
    if dtype == "bfloat16":
        return {k: v.astype(ml_dtypes.bfloat16) for k, v in out.items()}
    return {k: v.astype(dtype) for k, v in out.items()}


def _split(path: str) -> tuple[dict, dict, bytes]:
    """(tensor entries, swiftprune document, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    document = json.loads(header.pop("__metadata__")["swiftprune"])
    return header, document, raw[8 + size:]


def _compress_both(tmp_path, tensors, recipe, monkeypatch):
    source = str(tmp_path / "in.safetensors")
    with SafetensorsWriter(source) as writer:
        for name, array in tensors.items():
            writer.add(name, array)
    calls = []
    real = _fused.try_fused

    def spy(recipe_, track):
        taken = real(recipe_, track)
        calls.append((track.name, taken))
        return taken

    monkeypatch.setattr(pipeline, "try_fused", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused_report = sp.compress_file(source, str(tmp_path / "fused.safetensors"), recipe, progress=False)
        monkeypatch.setattr(pipeline, "try_fused", lambda recipe_, track: False)
        staged_report = sp.compress_file(source, str(tmp_path / "staged.safetensors"), recipe, progress=False)
    return fused_report, staged_report, dict(calls)


def _assert_same(tmp_path, fused_report, staged_report) -> None:
    f_header, f_doc, f_data = _split(str(tmp_path / "fused.safetensors"))
    s_header, s_doc, s_data = _split(str(tmp_path / "staged.safetensors"))
    assert f_header == s_header
    assert f_data == s_data
    assert f_doc["tensors"] == s_doc["tensors"]
    for a, b in zip(fused_report, staged_report):
        assert {k: v for k, v in a.items() if k != "relative_error"} == \
               {k: v for k, v in b.items() if k != "relative_error"}
        assert a["relative_error"] == pytest.approx(b["relative_error"], rel=1e-9, abs=1e-12)


RECIPES = [
    [{"prune": {"method": "nm", "n": 2, "m": 4}}, {"quantize": {"bits": 4, "axis": 0, "group_size": 128}}],
    [{"prune": {"method": "nm", "n": 2, "m": 4, "axis": 1}},
     {"quantize": {"bits": 4, "axis": -2, "symmetric": False}}],
    [{"prune": {"method": "nm", "n": 4, "m": 8}}, {"quantize": {"bits": 3, "axis": 0, "group_size": 32,
                                                                "symmetric": False}}],
    [{"prune": {"method": "nm", "n": 1, "m": 4}}, {"quantize": {"bits": 8, "axis": 0, "group_size": 64}}],
    [{"prune": {"method": "nm", "n": 3, "m": 16}}, {"quantize": {"bits": 2, "axis": 0, "group_size": 16}}],
    [{"prune": {"method": "nm", "n": 20, "m": 128}}, {"quantize": {"bits": 5, "axis": 0}}],
]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("recipe", range(len(RECIPES)))
def test_fused_files_equal_staged(tmp_path, monkeypatch, dtype, recipe):
    tensors = _tensors(np.random.default_rng(recipe), dtype)
    fused_report, staged_report, calls = _compress_both(tmp_path, tensors, RECIPES[recipe], monkeypatch)
    _assert_same(tmp_path, fused_report, staged_report)
    # The fused pass really ran (the shapes it supports), and the unfit ones went the staged way.
    m = RECIPES[recipe][0]["prune"]["m"]
    group = RECIPES[recipe][1]["quantize"].get("group_size") or 1
    expected = {name for name, a in tensors.items() if a.ndim == 2 and a.shape[1] % m == 0 and a.shape[1] % group == 0}
    assert {name for name, taken in calls.items() if taken} == expected
    layouts = {entry["attrs"]["layout"] for entry in _split(str(tmp_path / "fused.safetensors"))[1]["tensors"]
               if isinstance(entry, dict) and entry["name"] in expected}  # (format 2: a dense entry is its name)
    assert layouts <= {"nm", "bitmask"} and layouts
    skipped = [row for row in fused_report if row["name"] == "odd_columns"][0]["stages"]
    assert skipped.startswith("skipped:")


def test_fused_layouts_both_occur(tmp_path, monkeypatch):
    """An nm layout (affine int8: codes rarely at the zero point) and a bitmask one (int2: many kept codes round
    to zero) both come out of the fused pass, identical to the staged path's."""
    rng = np.random.default_rng(7)
    tensors = {"w": rng.standard_normal((32, 256)).astype(np.float32)}
    for quantize, layout in (({"bits": 8, "axis": 0, "symmetric": False}, "nm"),
                             ({"bits": 2, "axis": 0, "group_size": 32}, "bitmask")):
        recipe = [{"prune": {"method": "nm", "n": 2, "m": 4}}, {"quantize": quantize}]
        fused_report, staged_report, calls = _compress_both(tmp_path, tensors, recipe, monkeypatch)
        assert calls == {"w": True}
        _assert_same(tmp_path, fused_report, staged_report)
        assert _split(str(tmp_path / "fused.safetensors"))[1]["tensors"][0]["attrs"]["layout"] == layout


def test_grow_check_goes_the_staged_way(tmp_path, monkeypatch):
    """Groups of 1 make the quantized tensor larger than the pruned one: the fused pass declines, and the
    staged path applies on_unfit (skip: the pruned tensor is kept; warn: the quantized one)."""
    tensors = {"w": np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)}
    for policy, label in (("skip", "prune.nm+skipped:quantize.minmax"), ("warn", "prune.nm+quantize.minmax")):
        recipe = [{"prune": {"method": "nm", "n": 2, "m": 4}},
                  {"quantize": {"bits": 8, "axis": 0, "group_size": 1}, "on_unfit": policy}]
        fused_report, staged_report, calls = _compress_both(tmp_path, tensors, recipe, monkeypatch)
        assert calls == {"w": False}
        _assert_same(tmp_path, fused_report, staged_report)
        assert fused_report[0]["stages"] == label
        if policy == "skip":  # rolled back to the pruned tensor (rebuilt, not kept): the masked original
            w = tensors["w"]
            loaded = sp.load_compressed(str(tmp_path / "fused.safetensors")).weights["w"]
            np.testing.assert_array_equal(loaded, np.where(sp.nm_mask(w, 2, 4), w, np.float32(0)))


def test_fused_refuses_nan_as_the_staged_path(tmp_path, monkeypatch):
    w = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    w[3, 17] = np.nan
    source = str(tmp_path / "in.safetensors")
    with SafetensorsWriter(source) as writer:
        writer.add("w", w.astype(ml_dtypes.bfloat16))
    recipe = RECIPES[0]
    with pytest.raises(ValueError) as fused:
        sp.compress_file(source, str(tmp_path / "a.safetensors"), recipe, progress=False)
    monkeypatch.setattr(pipeline, "try_fused", lambda recipe_, track: False)
    with pytest.raises(ValueError) as staged:
        sp.compress_file(source, str(tmp_path / "b.safetensors"), recipe, progress=False)
    assert str(fused.value) == str(staged.value)
    assert "NaN" in str(fused.value) and "'w'" in str(fused.value)


def test_loaded_weights_equal(tmp_path, monkeypatch):
    """The fused file loads to the staged path's dense weights (and the report's error matches them)."""
    tensors = _tensors(np.random.default_rng(11), "bfloat16")
    fused_report, _, _ = _compress_both(tmp_path, tensors, RECIPES[0], monkeypatch)
    fused = sp.load_compressed(str(tmp_path / "fused.safetensors")).weights
    staged = sp.load_compressed(str(tmp_path / "staged.safetensors")).weights
    for name in tensors:
        np.testing.assert_array_equal(fused[name], staged[name])
    row = [r for r in fused_report if r["name"] == "normal"][0]
    original = tensors["normal"].astype(np.float64)
    expected = np.linalg.norm(original - fused["normal"]) / np.linalg.norm(original)
    assert row["relative_error"] == pytest.approx(expected, rel=1e-9)
    assert row["nonzeros"] == np.count_nonzero(fused["normal"])


@pytest.mark.parametrize("args, message", [
    ((np.zeros((4, 8), np.float64), 2, 4, 4, True, 4), "float32, float16 or uint16"),
    ((np.zeros(8, np.float32), 2, 4, 4, True, 4), "2-D"),
    ((np.zeros((4, 8), np.float32)[:, ::2], 2, 4, 4, True, 2), "C-contiguous"),
    ((np.zeros((4, 6), np.float32), 2, 4, 4, True, 6), "dividing"),
    ((np.zeros((4, 8), np.float32), 4, 4, 4, True, 4), "n < m"),
    ((np.zeros((4, 8), np.float32), 2, 4, 9, True, 4), "bits"),
    ((np.zeros((4, 8), np.float32), 2, 4, 4, True, 3), "dividing"),
    ((np.zeros((4, 8), np.float32), 2, 4, 4, True, 0), "group_size"),
])
def test_core_checks_arguments(args, message):
    with pytest.raises((TypeError, ValueError), match=message):
        _core.nm_quantize_encode(*args)


def test_core_empty_and_single_row():
    scales, zeros, nm_values, positions, mask, values, nonzeros, norm, difference = \
        _core.nm_quantize_encode(np.zeros((0, 8), np.float32), 2, 4, 4, True, 4)
    assert scales.shape == (0, 2) and nm_values.size == mask.size == values.size == 0 and nonzeros == 0
    w = np.array([[3.0, -1.0, 0.5, 2.0, 0.0, -0.0, 0.0, 0.0]], np.float32)
    scales, zeros, nm_values, positions, mask, values, nonzeros, norm, difference = \
        _core.nm_quantize_encode(w, 2, 4, 4, True, 8)
    # Kept: 3 and 2 (run 1), the first two zeros (run 2); scale 3/7: codes 7, 5 (2 / (3/7) = 4.67 -> 5).
    assert scales.tolist() == [[np.float32(3.0 / 7)]] and nonzeros == 2
    assert np.unpackbits(mask).tolist() == [1, 0, 0, 1, 0, 0, 0, 0]
    assert values.tolist() == [0x57]  # 7 then 5, low nibble first
    assert nm_values.tolist() == [0x57, 0x00] and positions.tolist() == [0b0100_1100]  # positions 0, 3 | 0, 1 (2 bits each, low first)
    deq = np.array([7, 0, 0, 5, 0, 0, 0, 0], np.float64) * np.float64(np.float32(3.0 / 7))
    assert norm == pytest.approx(float(np.sum(w.astype(np.float64) ** 2)))
    assert difference == pytest.approx(float(np.sum((w.astype(np.float64) - deq) ** 2)))


@pytest.mark.parametrize("bits, symmetric, group", [(3, False, 32), (2, True, 64), (5, True, 512)])
def test_core_outputs_equal_staged_kernels_with_workers(bits, symmetric, group):
    """Both layouts the kernel writes, on a tensor large enough for several workers (their bitmask values
    are moved together at odd bit offsets), equal the staged kernels' encodings."""
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((1048, 512)).astype(np.float32)
    w[rng.random(w.shape) < 0.2] *= 1e-3  # kept codes that round to the zero point
    with num_threads(3):
        scales, zeros, nm_values, positions, mask, values, nonzeros, norm, difference = \
            _core.nm_quantize_encode(w, 2, 4, bits, symmetric, group)
    q = staged_quantized(w, sp.nm_mask(w, 2, 4), bits, symmetric, group)
    np.testing.assert_array_equal(zeros, q.zero_point)
    assert_encodings_equal_staged(q, w, bits, scales, nm_values, positions, mask, values, nonzeros, norm, difference)
