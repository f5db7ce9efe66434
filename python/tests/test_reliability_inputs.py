"""Untrusted inputs: hostile .npz archives, crafted compressed-file metadata,
big-endian arrays (issue 16, items 3, 4 and 8)."""
from __future__ import annotations

import io
import json
import struct
import os
import zipfile

import numpy as np
import pytest

import swiftprune as sp
from _compressed_files import rewrite_metadata
from swiftprune.compressed_schema import dense_row, parse_document
from swiftprune.io import SafetensorsFile

RNG = np.random.default_rng(8)

# --------------------------------------------------------------------------- #
# .npz
# --------------------------------------------------------------------------- #


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def patch_central_directory(path, **fields) -> None:
    """Rewrites fields of the first central-directory entry (and its local
    header, so zipfile's consistency checks see what an attacker would write)."""
    data = bytearray(open(path, "rb").read())
    central = data.rfind(b"PK\x01\x02")
    local = data.find(b"PK\x03\x04")
    layout = {"flags": (8, 6, "<H"), "method": (10, 8, "<H"), "size": (24, 22, "<I")}
    for name, value in fields.items():
        central_offset, local_offset, fmt = layout[name]
        struct.pack_into(fmt, data, central + central_offset, value)
        struct.pack_into(fmt, data, local + local_offset, value)
    open(path, "wb").write(bytes(data))


def test_npz_round_trips_plain_and_compressed(tmp_path):
    w = {"a": RNG.standard_normal((3, 4)).astype(np.float32), "b": np.arange(6, dtype=np.int16).reshape(2, 3),
         "f": np.asfortranarray(RNG.standard_normal((3, 5))), "e": np.zeros((0, 2), np.float64)}
    np.savez(tmp_path / "plain.npz", **w)
    np.savez_compressed(tmp_path / "small.npz", **w)
    for name in ("plain.npz", "small.npz"):
        loaded = sp.load_weights(tmp_path / name)
        assert list(loaded) == list(w)
        for key, value in w.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype


def test_npz_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    payload = npy_bytes(np.zeros(8 << 20, np.uint8))  # 8 MiB of zeros deflate to ~8 KiB
    write_zip(path, {"w.npy": payload}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(ValueError, match="max_bytes"):
        sp.load_weights(path, max_bytes=1 << 20)
    assert sp.load_weights(path, max_bytes=16 << 20)["w"].size == 8 << 20  # trusted: allowed
    # The default limit is relative to the file size: a member declaring 4 GiB in a tiny file.
    lying = tmp_path / "lying.npz"
    write_zip(lying, {"w.npy": npy_bytes(np.zeros(10, np.uint8))})
    patch_central_directory(lying, size=0xFFFFFFF0)
    with pytest.raises(ValueError, match="max_bytes"):
        sp.load_weights(lying)


def test_npz_huge_declared_shape_is_a_value_error(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    path = tmp_path / "shape.npz"
    write_zip(path, {"w.npy": header.getvalue() + b"\0" * 64})
    with pytest.raises(ValueError, match="needs 4398046511104 bytes"):
        sp.load_weights(path)


@pytest.mark.parametrize("fields,match", [({"flags": 1}, "encrypted"), ({"method": 99}, "compression method 99")])
def test_npz_encrypted_or_unknown_compression_is_a_value_error(tmp_path, fields, match):
    path = tmp_path / "odd.npz"
    write_zip(path, {"w.npy": npy_bytes(np.ones(4, np.float32))})
    patch_central_directory(path, **fields)
    with pytest.raises(ValueError, match=match):
        sp.load_weights(path)


def test_npz_members_must_be_arrays(tmp_path):
    path = tmp_path / "text.npz"
    write_zip(path, {"w.npy": npy_bytes(np.ones(2, np.float32)), "readme.txt": b"hello"})
    with pytest.raises(ValueError, match="not a .npy array"):
        sp.load_weights(path)
    pickled = tmp_path / "pickle.npz"
    np.savez(pickled, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        sp.load_weights(pickled)
    garbage = tmp_path / "garbage.npz"
    write_zip(garbage, {"w.npy": b"\x93NUMPY\x01\x00\xff\xff{'descr': "})
    with pytest.raises(ValueError):
        sp.load_weights(garbage)


# --------------------------------------------------------------------------- #
# Compressed-file metadata
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """A compressed file with every built-in kind, and its metadata document."""
    path = tmp_path_factory.mktemp("c") / "c.safetensors"
    w = {"p": RNG.standard_normal((16, 16)).astype(np.float32), "q": RNG.standard_normal((16, 8)).astype(np.float32),
         "c": RNG.standard_normal((8, 8)).astype(np.float32), "l": RNG.standard_normal((32, 32)).astype(np.float32),
         "bias": np.zeros(4, np.float32)}
    recipe = [{"prune": {"sparsity": 0.5}, "include": "p"}, {"quantize": {"bits": 4, "axis": 0}, "include": "q"},
              {"cluster": {"n_clusters": 4}, "include": "c"}, {"low_rank": {"rank": 4}, "include": "l"}]
    sp.compress(w, recipe, progress=False).save(path)
    # The mutations edit format 1's shape (what format 2 expands to; older files are still read)
    stored = SafetensorsFile(path)
    document = parse_document(stored.metadata["swiftprune"], describe=lambda name: dense_row(name, stored[name]))
    return path, json.loads(json.dumps(dict(document, format_version=1)))


def mutations(document: dict) -> list[tuple[str, str]]:
    """(label, metadata text) pairs, each breaking one thing."""
    def edit(fn, version=1):
        d = json.loads(json.dumps(document))
        fn(d)
        d["format_version"] = max(d["format_version"], version)
        return json.dumps(d)

    def edit2(fn):  # format 2's compact spellings
        return edit(fn, version=2)

    kinds = {e["kind"]: i for i, e in enumerate(document["tensors"])}
    out = [
        ("not json", "{"), ("a list", "[]"), ("a string", '"x"'), ("null", "null"),
        ("deep nesting", "[" * 100_000 + "]" * 100_000),
        ("deep inside", edit(lambda d: d.update(extra=json.loads("[" * 500 + "]" * 500)))),
        ("tensors not a list", edit(lambda d: d.update(tensors={}))),
        ("entry not an object", edit(lambda d: d["tensors"].append(3))),
        ("missing name", edit(lambda d: d["tensors"][0].pop("name"))),
        ("name a number", edit(lambda d: d["tensors"][0].update(name=7))),
        ("parts a list", edit(lambda d: d["tensors"][kinds["quantized"]].update(parts=[]))),
        ("attrs a list", edit(lambda d: d["tensors"][kinds["quantized"]].update(attrs=[1]))),
        ("part missing from file", edit(lambda d: d["tensors"][kinds["quantized"]]["parts"].update(values="nope"))),
        ("shape 2**64", edit(lambda d: d["tensors"][kinds["pruned"]]["attrs"].update(shape=[2**64]))),
        ("shape negative", edit(lambda d: d["tensors"][kinds["quantized"]]["attrs"].update(shape=[-1, 8]))),
        ("shape float", edit(lambda d: d["tensors"][kinds["quantized"]]["attrs"].update(shape=[16.0, 8]))),
        ("iterations Infinity", edit(lambda d: d["tensors"][kinds["clustered"]]["attrs"].update(iterations=float("inf")))),
        ("bits 99", edit(lambda d: d["tensors"][kinds["quantized"]]["attrs"].update(bits=99))),
        ("bits string", edit(lambda d: d["tensors"][kinds["quantized"]]["attrs"].update(bits="4"))),
        ("axis huge", edit(lambda d: d["tensors"][kinds["quantized"]]["attrs"].update(axis=2**70))),
        ("index dtype", edit(lambda d: d["tensors"][kinds["clustered"]]["attrs"].update(index_dtype="object"))),
        ("layout", edit(lambda d: d["tensors"][kinds["low_rank"]]["attrs"].update(layout=None))),
        ("container", edit(lambda d: d.update(container=[]))),
        ("version", edit(lambda d: d.update(format_version=99))),
        ("report [{}]", edit(lambda d: d.update(report=[{}]))),
        ("report a dict", edit(lambda d: d.update(report={"a": 1}))),
        ("report row a list", edit(lambda d: d.update(report=[[1, 2]]))),
        ("report params string", edit(lambda d: d["report"][0].update(params="many"))),
        ("report shape nested", edit(lambda d: d["report"][0].update(shape=[[1]]))),
        ("report bits NaN", edit(lambda d: d["report"][0].update(bits=float("nan")))),
        ("duplicate names", edit(lambda d: d["tensors"].append(dict(d["tensors"][0])))),
        # format 2's compact spellings
        ("compact part a number", edit2(lambda d: d["tensors"][kinds["quantized"]].update(parts=["values", 3]))),
        ("compact part missing", edit2(lambda d: d["tensors"][kinds["quantized"]].update(parts=["values", "nope"]))),
        ("compact mask shape", edit2(lambda d: d["tensors"][kinds["quantized"]].update(mask=[-1]))),
        ("compact mask missing", edit2(lambda d: d["tensors"][kinds["quantized"]].update(mask=[16, 8]))),
        ("dense name missing", edit2(lambda d: d["tensors"].append("nope"))),
        ("report columns", edit2(lambda d: d.update(report={"columns": "name", "rows": []}))),
        ("report columns twice", edit2(lambda d: d.update(report={"columns": ["name", "name"], "rows": []}))),
        ("report row a missing name", edit2(lambda d: d.update(report={"columns": ["name"], "rows": ["nope"]}))),
        ("report row a number", edit2(lambda d: d.update(report={"columns": ["name"], "rows": [7]}))),
        ("report row short", edit2(lambda d: d.update(report={"columns": ["name", "params"], "rows": [["p"]]}))),
        ("report table params", edit2(lambda d: d.update(report={"columns": list(d["report"][0]),
                                                                "rows": [["p"] * len(d["report"][0])]}))),
    ]
    return out


def test_crafted_metadata_raises_only_value_errors_naming_the_field(compressed, tmp_path):
    source, document = compressed
    assert sp.load_compressed(source).summary()  # the unmodified file is fine
    for i, (label, text) in enumerate(mutations(document)):
        target = tmp_path / f"m{i}.safetensors"
        rewrite_metadata(source, target, text)
        with pytest.raises(ValueError) as info:
            sp.load_compressed(target)
        message = str(info.value)
        assert str(target) in message, (label, message)
        if label not in ("not json", "deep nesting", "deep inside"):
            assert "metadata field" in message or "is stored as" in message, (label, message)


def test_inspect_survives_crafted_metadata(compressed, tmp_path, capsys):
    from swiftprune.cli import main

    source, document = compressed
    for i, (label, text) in enumerate(mutations(document)):
        target = tmp_path / f"i{i}.safetensors"
        rewrite_metadata(source, target, text)
        code = main(["inspect", str(target), "--no-progress"])  # an escaped exception fails the test
        captured = capsys.readouterr()
        assert code == 0, (label, captured.err)
        assert "(unreadable)" in captured.out and "metadata" in captured.err, (label, captured)


# --------------------------------------------------------------------------- #
# Big-endian input
# --------------------------------------------------------------------------- #

CALLS = {
    "magnitude_mask": lambda w, x: sp.magnitude_mask(w, 0.5),
    "prune_magnitude": lambda w, x: sp.prune_magnitude(w, 0.5),
    "random_mask": lambda w, x: sp.random_mask(w, 0.5, seed=1),
    "structured_mask": lambda w, x: sp.structured_mask(w, 0.5, axis=0),
    "nm_mask": lambda w, x: sp.nm_mask(w, 2, 4),
    "block_mask": lambda w, x: sp.block_mask(w, 0.5, block=(2, 2)),
    "wanda_mask": lambda w, x: sp.wanda_mask(w, x, 0.5),
    "sparsegpt": lambda w, x: sp.sparsegpt(w, x, 0.5),
    "global_magnitude_masks": lambda w, x: sp.global_magnitude_masks([w, w * 2], 0.5),
    "quantize": lambda w, x: sp.quantize(w, 4, axis=0).dequantize(),
    "gptq": lambda w, x: sp.gptq(w, x, bits=4, group_size=8).dequantize(),
    "cluster": lambda w, x: sp.cluster(w, 4).dequantize(),
    "cast": lambda w, x: sp.cast(w, "float16"),
    "svd": lambda w, x: sp.svd(w)[1],
    "low_rank": lambda w, x: sp.low_rank(w, rank=2).reconstruct(),
    "matmul": lambda w, x: sp.matmul(w, x.T),
    "csr": lambda w, x: sp.CSRMatrix.from_dense(w).to_dense(),
    "prune_channels": lambda w, x: sp.prune_channels([{"kernel": w}, {"kernel": w.T}], 0.5)[0]["kernel"],
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("dtype", ["f4", "f8"])
def test_big_endian_input_equals_native(name, dtype):
    w = RNG.standard_normal((8, 16)).astype("<" + dtype)
    x = RNG.standard_normal((32, 16)).astype("<" + dtype)
    expected = CALLS[name](w, x)
    got = CALLS[name](w.astype(">" + dtype), x.astype(">" + dtype))
    for e, g in zip(expected if isinstance(expected, list) else [expected],
                    got if isinstance(got, list) else [got]):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e))
