"""The compressed file's metadata, format 2 (compact), against format 1.

Format-1 files are built here by hand the way swiftprune <= 0.1 wrote them
(``json.dumps`` of the expanded document), not through the current writer,
so reading them back checks the compatibility independently. The header's
size is measured from the file's first 8 bytes (the safetensors length).
"""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import swiftprune as sp
from _compressed_files import rewrite_metadata
from swiftprune.io import SafetensorsFile

RNG = np.random.default_rng(13)


def header_length(path) -> int:
    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def many_small_tensors(count: int = 120) -> dict[str, np.ndarray]:
    """A model like PP-OCRv4's: a few kernels and many tiny 1-D tensors (norms, biases)."""
    weights = {}
    for i in range(count // 4):
        weights[f"backbone.block_{i}.conv.weight"] = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
        for part in ("bias", "norm.weight", "norm.bias"):
            weights[f"backbone.block_{i}.{part}"] = RNG.standard_normal(16).astype(np.float32)
    return weights


RECIPE = [{"quantize": {"bits": 4, "axis": 0}, "include": "*.conv.weight"}]


def format1_text(path, report) -> str:
    """The document of a file written now, spelled as format 1 (what 0.1 wrote): every
    dense tensor an object, parts as {part: stored key}, the mask {key, shape}, the report
    (the in-memory one) as a list of row objects, default JSON separators."""
    stored = json.loads(SafetensorsFile(path).metadata["swiftprune"])
    assert stored["format_version"] == 2
    tensors = []
    for entry in stored["tensors"]:
        if isinstance(entry, str):
            tensors.append({"name": entry, "kind": "dense"})
            continue
        name = entry["name"]
        entry["parts"] = {part: f"{name}::{part}" for part in entry["parts"]}
        if "mask" in entry:
            entry["mask"] = {"key": f"{name}::keep_mask", "shape": entry["mask"]}
        tensors.append(entry)
    return json.dumps({"format_version": 1, "swiftprune_version": "0.1.0", "container": stored["container"],
                       "tensors": tensors, "report": [dict(row, shape=list(row["shape"])) for row in report]})


def test_header_costs_less_than_format_1(tmp_path):
    weights = many_small_tensors()
    result = sp.compress(weights, RECIPE, progress=False)
    path = tmp_path / "small.safetensors"
    size = result.save(path)
    header = header_length(path)
    assert size == 8 + header + result.report.totals["bytes_after"]
    # format 1 spent ~410 bytes per tensor on such models (repeated keys, escaped quotes)
    old = tmp_path / "old.safetensors"
    rewrite_metadata(path, old, format1_text(path, result.report))
    old_header = header_length(old)
    names = sum(len(name) for name in weights)  # each name is written 3 times (entry, layout, report)
    assert (header - 3 * names) / len(weights) <= 200, (header - 3 * names) / len(weights)
    assert (old_header - 3 * names) / len(weights) >= 400  # what format 1 spends: the test can fail
    assert header <= 0.55 * old_header, (header, old_header)
    # the rows of the 90 tensors stored as they came are their names (derived back from the tensors)
    rows = json.loads(SafetensorsFile(path).metadata["swiftprune"])["report"]["rows"]
    assert sum(isinstance(row, str) for row in rows) == 90
    assert sp.load_compressed(path).report == result.report


@pytest.mark.parametrize("recipe,container", [
    (RECIPE + [{"cluster": {"n_clusters": 4}, "include": "*.norm.weight"}], "mapping"),
    ([{"prune": {"sparsity": 0.5}, "include": "*.conv.weight"},
      {"low_rank": {"rank": 2}, "include": "*.norm.weight"}], "mapping"),
    ([{"quantize": {"bits": 3, "group_size": 8, "axis": 0}, "include": "0"}], "sequence"),
])
def test_format1_and_format2_files_load_the_same(tmp_path, recipe, container):
    weights = many_small_tensors(8)
    if container == "sequence":
        weights = [RNG.standard_normal((6, 16)).astype(np.float32), np.zeros(6, np.float32)]
    result = sp.compress(weights, recipe, progress=False)
    new = tmp_path / "new.safetensors"
    result.save(new)
    old = tmp_path / "old.safetensors"
    rewrite_metadata(new, old, format1_text(new, result.report))
    a, b = sp.load_compressed(new), sp.load_compressed(old)
    assert a.report == b.report == result.report
    assert a.masks.keys() == b.masks.keys() == result.masks.keys()  # (test_model covers a stored mask)
    expected = result.weights if container == "sequence" else list(result.weights.values())
    got_a = a.weights if container == "sequence" else list(a.weights.values())
    got_b = b.weights if container == "sequence" else list(b.weights.values())
    for want, x, y in zip(expected, got_a, got_b):
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(y, want)


def test_report_rows_with_different_columns_stay_a_list(tmp_path):
    from swiftprune.compressed_schema import document_text, parse_document

    rows = [{"name": "a", "shape": [2], "params": 2, "nonzeros": 2, "bits": 32.0, "bytes_before": 8,
             "bytes_after": 8, "relative_error": 0.0, "stages": "-"}]
    rows.append(dict(rows[0], name="b", dtype="float16"))
    text = document_text("mapping", [{"name": "a", "kind": "dense"}, {"name": "b", "kind": "dense"}], rows)
    assert isinstance(json.loads(text)["report"], list)
    parsed = parse_document(text, {"a", "b"})
    assert [r["name"] for r in parsed["report"]] == ["a", "b"] and parsed["report"][1]["dtype"] == "float16"
    assert parsed["tensors"] == [{"name": "a", "kind": "dense"}, {"name": "b", "kind": "dense"}]


def test_a_newer_format_is_refused_by_name(tmp_path):
    weights = many_small_tensors(4)
    path = tmp_path / "w.safetensors"
    sp.compress(weights, RECIPE, progress=False).save(path)
    document = json.loads(SafetensorsFile(path).metadata["swiftprune"])
    target = tmp_path / "future.safetensors"
    rewrite_metadata(path, target, json.dumps(dict(document, format_version=3)))
    with pytest.raises(ValueError, match="format_version.*newer"):
        sp.load_compressed(target)


@pytest.mark.parametrize("shape,axis", [((12, 64, 1, 1), 0), ((3, 3, 8, 6), -1)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_grouped_conv_kernels_with_mostly_zero_values_read_back(tmp_path, shape, axis, symmetric):
    # Mostly-zero values are stored as a bit mask plus the non-zero ones; reading them back needs
    # every value's zero point, which for a grouped conv kernel follows the (channel, in x kernel)
    # matrix view (the PP-OCRv4 int4:g32 uniform recipe could not be read back before).
    w = (RNG.standard_normal(shape) * 0.01).astype(np.float32)
    w *= RNG.random(shape) < 0.15
    result = sp.compress({"w": w}, [{"quantize": {"bits": 4, "axis": axis, "group_size": 8,
                                                  "symmetric": symmetric}}], progress=False)
    path = tmp_path / "g.safetensors"
    result.save(path)
    layout = json.loads(SafetensorsFile(path).metadata["swiftprune"])["tensors"][0]["attrs"]["layout"]
    assert layout == "bitmask"
    np.testing.assert_array_equal(sp.load_compressed(path).weights["w"], result.weights["w"])
