"""Sizes are honest: the bytes a report gives are the bytes of the file's tensor
data (the rest is the JSON header, padded only to the 8-byte alignment), every
layout reads back bit for bit, dense outputs say they are dense."""
from __future__ import annotations

import json
import os
import struct
import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import cli
from swiftprune.io import SafetensorsFile, SafetensorsWriter

import _reference_quantization as ref_q

RNG = np.random.default_rng(14)


def header(path) -> tuple[int, bytes]:
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return n, data[8:8 + n]


def data_bytes(path) -> int:
    """Bytes after the header, checked against the header's own data offsets."""
    n, text = header(path)
    entries = json.loads(text)
    entries.pop("__metadata__", None)
    covered = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in entries.values())
    size = os.path.getsize(path) - 8 - n
    assert covered == size
    return size


def padding(path) -> int:
    _, text = header(path)
    return len(text) - len(text.rstrip(b" "))


def assert_same_form(got, want):
    assert type(got) is type(want)
    if isinstance(want, sp.QuantizedTensor):
        for field in ("bits", "symmetric", "axis", "group_size", "shape"):
            assert getattr(got, field) == getattr(want, field)
        for field in ("values", "scale", "zero_point"):
            assert getattr(got, field).dtype == getattr(want, field).dtype
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    elif isinstance(want, sp.PrunedTensor):
        np.testing.assert_array_equal(got.mask, want.mask)
        np.testing.assert_array_equal(got.to_dense(), want.to_dense())
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want)


def weights():
    return {
        "dense": RNG.standard_normal((64, 128)).astype(np.float32),
        "conv": RNG.standard_normal((16, 8, 3, 3)).astype(np.float32),
        "odd": RNG.standard_normal((7, 13)).astype(np.float32),
        "bias": RNG.standard_normal(64).astype(np.float32),
    }


RECIPES = {
    "quantize": lambda b, sym: [{"quantize": {"bits": b, "symmetric": sym, "axis": 0}}],
    "groups": lambda b, sym: [{"quantize": {"bits": b, "symmetric": sym, "axis": 0, "group_size": 32},
                               "include": "dense"}],
    "prune90": lambda b, sym: [{"prune": {"sparsity": 0.9}}, {"quantize": {"bits": b, "symmetric": sym, "axis": 0}}],
    "nm24": lambda b, sym: [{"prune": {"method": "nm", "n": 2, "m": 4, "axis": 1}},
                            {"quantize": {"bits": b, "symmetric": sym, "axis": 0}}],
    "nm14": lambda b, sym: [{"prune": {"method": "nm", "n": 1, "m": 4, "axis": 1}},
                            {"quantize": {"bits": b, "symmetric": sym, "axis": 0}}],
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_file_bytes_equal_report_bytes_and_read_back_exactly(tmp_path, recipe, bits, symmetric):
    w = weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 'odd' does not fit N:M; skipped with a warning
        result = sp.compress(w, RECIPES[recipe](bits, symmetric), progress=False)
    path = tmp_path / "c.safetensors"
    written = result.save(path)
    assert written == os.path.getsize(path)
    assert data_bytes(path) == result.report.totals["bytes_after"]
    assert padding(path) < 8
    loaded = sp.load_compressed(path)
    for name, form in result.tensors.items():
        assert_same_form(loaded.tensors[name], form)
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])
        if isinstance(form, sp.QuantizedTensor):
            row = next(r for r in result.report if r["name"] == name)
            assert row["bytes_after"] == ref_q.reference_stored_bytes(form) or (
                recipe.startswith("nm") and row["bytes_after"] < ref_q.reference_stored_bytes(form))


def test_low_bit_widths_take_fewer_bytes_and_sparse_int8_beats_both(tmp_path):
    w = {"w": RNG.standard_normal((256, 256)).astype(np.float32)}
    sizes, results = {}, {}
    for b in (2, 3, 4, 8):
        results[b] = sp.compress(w, [{"quantize": {"bits": b, "axis": 0}}], progress=False)
        sizes[b] = results[b].save(tmp_path / f"{b}.safetensors")
    assert sizes[2] < sizes[3] < sizes[4] < sizes[8]
    values = {b: data_bytes(tmp_path / f"{b}.safetensors") - 256 * 4 for b in (2, 3, 4, 8)}
    # At most b bits a value: packed at exactly b bits, or (2- and 3-bit Gaussian weights are
    # mostly 0) a bit mask plus the non-zero values at b bits, whichever is smaller.
    assert values[4] == 256 * 256 // 2 and values[8] == 256 * 256
    for b in (2, 3):
        q = results[b].tensors["w"]
        nonzero = int(np.count_nonzero(q.values))
        assert values[b] == min(256 * 256 * b // 8, 256 * 256 // 8 + (nonzero * b + 7) // 8) <= 256 * 256 * b // 8
    pruned = sp.compress(w, [{"prune": {"sparsity": 0.9}}], progress=False).save(tmp_path / "p.safetensors")
    both = sp.compress(w, [{"prune": {"sparsity": 0.9}}, {"quantize": {"bits": 8, "axis": 0}}],
                       progress=False).save(tmp_path / "pq.safetensors")
    assert both < pruned < sizes[8] * 1.5 and both < sizes[8] / 3
    # bit mask (8 KiB) + 6,554 int8 values + 256 scales
    assert data_bytes(tmp_path / "pq.safetensors") == 65536 // 8 + round(0.1 * 65536) + 256 * 4


def test_nm_layouts_store_values_and_positions(tmp_path):
    w = {"w": RNG.standard_normal((32, 64)).astype(np.float32)}
    one_of_four = sp.compress(w, [{"prune": {"method": "nm", "n": 1, "m": 4}}], progress=False)
    path = tmp_path / "nm.safetensors"
    one_of_four.save(path)
    parts = SafetensorsFile(path).to_dict()
    assert set(parts) == {"w::values", "w::positions"}
    assert parts["w::positions"].nbytes == 512 * 2 // 8  # 2 bits per kept value
    expected = np.argmax(np.abs(w["w"]).reshape(-1, 4), axis=1)
    np.testing.assert_array_equal(sp._bitpack.unpack_bits(parts["w::positions"], 512, 2), expected)
    assert data_bytes(path) == one_of_four.report.totals["bytes_after"] == 512 * 4 + 128
    assert_same_form(sp.load_compressed(path).tensors["w"], one_of_four.tensors["w"])
    # 1:4 + int8: one value and one 2-bit position per run beats a 1-bit-per-entry mask.
    q = sp.compress(w, [{"prune": {"method": "nm", "n": 1, "m": 4}}, {"quantize": {"bits": 8, "axis": 0}}],
                    progress=False)
    q.save(path)
    parts = SafetensorsFile(path).to_dict()
    assert "w::positions" in parts and "w::mask" not in parts
    assert data_bytes(path) == 512 + 128 + 32 * 4
    loaded = sp.load_compressed(path)
    assert_same_form(loaded.tensors["w"], q.tensors["w"])
    np.testing.assert_array_equal(loaded.weights["w"], q.weights["w"])


def test_other_codecs_file_bytes_equal_report(tmp_path):
    w = {"a": RNG.standard_normal((40, 24)).astype(np.float32), "b": RNG.standard_normal((3, 30)).astype(np.float32)}
    for recipe in ([{"cluster": {"n_clusters": 5}}], [{"low_rank": {"rank": 2}}], [{"prune": {"sparsity": 0.7}}],
                   [{"prune": {"sparsity": 0.5}}, {"cluster": {"n_clusters": 16}}]):
        result = sp.compress(w, recipe, progress=False)
        path = tmp_path / "x.safetensors"
        assert result.save(path) == os.path.getsize(path)
        assert data_bytes(path) == result.report.totals["bytes_after"], recipe
        assert padding(path) < 8


def test_writer_reserving_too_much_room_leaves_no_slack(tmp_path):
    path = tmp_path / "w.safetensors"
    with SafetensorsWriter(path, header_reserve=100_000) as writer:
        writer.add("x", np.arange(10, dtype=np.float32))
    assert padding(path) < 8 and os.path.getsize(path) < 200
    np.testing.assert_array_equal(sp.load_weights(path)["x"], np.arange(10, dtype=np.float32))


def test_dense_outputs_report_dense_sizes(tmp_path):
    src = tmp_path / "m.safetensors"
    w = weights()
    sp.save_weights(src, w)
    for out in ("d.npz", "d.safetensors"):
        report = sp.compress_file(src, tmp_path / out, [{"prune": {"sparsity": 0.5}}], dense=True, progress=False)
        assert report.dense_output and report.file_bytes == os.path.getsize(tmp_path / out)
        assert [r["bytes_after"] for r in report] == [w[r["name"]].nbytes for r in report]
        assert "dense output" in report.summary() and "compression ratio" not in report.summary()
    report = sp.compress_file(src, tmp_path / "c.safetensors", [{"prune": {"sparsity": 0.5}}], progress=False)
    assert not report.dense_output and report.file_bytes == os.path.getsize(tmp_path / "c.safetensors")
    assert data_bytes(tmp_path / "c.safetensors") == report.totals["bytes_after"]


def test_load_weights_on_a_compressed_file(tmp_path):
    path = tmp_path / "c.safetensors"
    result = sp.compress([RNG.standard_normal((8, 8)).astype(np.float32)], [{"quantize": {"bits": 4}}], progress=False)
    result.save(path)
    with pytest.raises(ValueError, match=r"swiftprune compressed file.*load_compressed\(path\).*decompress=True"):
        sp.load_weights(path)
    dense = sp.load_weights(path, decompress=True)
    assert list(dense) == ["0"]
    np.testing.assert_array_equal(dense["0"], result.weights[0])


def test_inspect_shows_the_decoded_sparsity_and_stored_layout(tmp_path, capsys):
    path = tmp_path / "c.safetensors"
    w = {"fc.weight": RNG.standard_normal((64, 64)).astype(np.float32)}
    sp.compress(w, [{"prune": {"sparsity": 0.9}}, {"quantize": {"bits": 8, "axis": 0}}], progress=False).save(path)
    assert cli.main(["inspect", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fc.weight"))
    assert "int8 bitmask" in row and "90.0%" in row and f"{512 + 410 + 256:,}" in row
    assert f"{os.path.getsize(path):,} bytes" in out


@pytest.mark.parametrize("metadata", [None, {"k": "v" * 50, 'q"\n': "\u00e9\b\f\x01"}])
def test_exact_header_reserve_is_the_header_written(tmp_path, metadata):
    from swiftprune.io import exact_header_reserve

    names = ["a", 'b"c', "\u00e9\u4e2d", "x\b\f\n\t\x01\\"] + [f"layer.{i}.weight" for i in range(40)]
    arrays = {n: RNG.standard_normal((3, i + 1)).astype(np.float32 if i % 2 else np.float16) for i, n in enumerate(names)}
    sp.save_weights(tmp_path / "w.safetensors", arrays, metadata=metadata)
    n, _ = header(tmp_path / "w.safetensors")
    entries = [(name, "F32" if a.dtype == np.float32 else "F16", a.shape, a.nbytes) for name, a in arrays.items()]
    assert n == exact_header_reserve(entries, metadata) and padding(tmp_path / "w.safetensors") < 8
    loaded = sp.load_weights(tmp_path / "w.safetensors")
    for name, a in arrays.items():
        np.testing.assert_array_equal(loaded[name], a)


@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_packing_against_a_bit_by_bit_reference(bits):
    from swiftprune._bitpack import pack_bits, unpack_bits

    for count in (0, 1, 7, 9, 1_000_003):  # the largest is split over worker threads
        values = RNG.integers(0, 256, count).astype(np.uint8)
        low = values & ((1 << bits) - 1)
        packed = pack_bits(values, bits)
        np.testing.assert_array_equal(packed, ref_q.reference_pack_bits(low, bits))
        np.testing.assert_array_equal(unpack_bits(packed, count, bits), low)
        signed = ((low.astype(np.int16) ^ (1 << (bits - 1))) - (1 << (bits - 1))).astype(np.int8)
        np.testing.assert_array_equal(unpack_bits(packed, count, bits, signed=True), signed)
    with pytest.raises(ValueError, match=f"3 values of {bits} bits need"):
        unpack_bits(np.zeros(5, np.uint8), 3, bits)
