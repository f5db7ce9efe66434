"""Writes the committed seed corpus: small valid files and the malformed
variants the reliability probe of issue 16 used, one directory per target.

Pure Python (json, struct, zipfile, NumPy): run it again after changing it,
``python fuzz/make_corpus.py``, and commit fuzz/corpus. Every file is < 64 KiB.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None,
                header: dict | None = None) -> bytes:
    """A safetensors file (``header`` overrides the generated JSON)."""
    table: dict = {"__metadata__": metadata} if metadata else {}
    data = b""
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        dtype = {"float32": "F32", "uint8": "U8", "int64": "I64", "float16": "F16"}[array.dtype.name]
        table[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header if header is not None else table).encode()
    return struct.pack("<Q", len(text)) + text + data


def compressed_file(document_edit=None) -> bytes:
    """A compressed file as CompressionResult.save writes it: one pruned, one dense tensor."""
    w = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    mask = np.abs(w) > 8
    document = {
        "format_version": 1, "swiftprune_version": "0.1.0", "container": "mapping",
        "tensors": [
            {"name": "w", "kind": "pruned", "attrs": {"shape": [4, 4]},
             "parts": {"values": "w::values", "mask": "w::mask"}},
            {"name": "b", "kind": "dense"},
        ],
        "report": [{"name": "w", "shape": [4, 4], "dtype": "float32", "params": 16, "nonzeros": 8, "bits": 20.0,
                    "bytes_before": 64, "bytes_after": 40, "relative_error": 0.2, "stages": "prune.magnitude"},
                   {"name": "b", "shape": [4], "dtype": "float32", "params": 4, "nonzeros": 4, "bits": 32.0,
                    "bytes_before": 16, "bytes_after": 16, "relative_error": 0.0, "stages": "-"}],
    }
    if document_edit is not None:
        document_edit(document)
    text = document if isinstance(document, str) else json.dumps(document)
    return safetensors({"w::values": w[mask], "w::mask": np.packbits(mask.reshape(-1)),
                        "b": np.ones(4, np.float32)}, {"swiftprune": text})


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED, patch=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = bytearray(buffer.getvalue())
    for offset_central, offset_local, fmt, value in (patch or []):
        central, local = data.rfind(b"PK\x01\x02"), data.find(b"PK\x03\x04")
        struct.pack_into(fmt, data, central + offset_central, value)
        struct.pack_into(fmt, data, local + offset_local, value)
    return bytes(data)


def npy_header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def cases() -> dict[str, dict[str, bytes]]:
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    valid = safetensors({"w": w, "b": np.ones(3, np.float32)})
    out: dict[str, dict[str, bytes]] = {}
    out["safetensors"] = {
        "valid": valid,
        "empty": b"",
        "short": b"\x05\x00\x00",
        "length_huge": struct.pack("<Q", 2**63) + b"{}",
        "length_past_end": struct.pack("<Q", 1000) + b"{}",
        "not_object": safetensors({}, header=[]),  # type: ignore[arg-type]
        "bad_dtype": safetensors({}, header={"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
        "overlap": safetensors({}, header={"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
        "shape_overflow": safetensors({}, header={"w": {"dtype": "F32", "shape": [2**62, 8], "data_offsets": [0, 0]}}),
        "offsets_past_end": safetensors({}, header={"w": {"dtype": "U8", "shape": [9], "data_offsets": [0, 9]}}) + b"\0",
        "truncated": valid[:-5],
        "trailing": valid + b"\0" * 8,
        "duplicate_keys": b"".join([struct.pack("<Q", 70), b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                    b'"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]} }', b"\0"]),
        "deep_json": struct.pack("<Q", 20001) + b"{" + b"[" * 10000 + b"]" * 10000,
        "bad_utf8": struct.pack("<Q", 8) + b'{"\xff":1}',
        "metadata_not_string": safetensors({}, header={"__metadata__": {"a": 1}}),
    }
    out["compressed"] = {
        "valid": compressed_file(),
        "deep": safetensors({"b": np.ones(1, np.float32)},
                            {"swiftprune": '{"tensors": [], "x": ' + "[" * 20000 + "]" * 20000 + "}"}),
        "shape_2_64": compressed_file(lambda d: d["tensors"][0]["attrs"].update(shape=[2**64])),
        "report_empty_row": compressed_file(lambda d: d.update(report=[{}])),
        "parts_list": compressed_file(lambda d: d["tensors"][0].update(parts=[])),
        "tensors_dict": compressed_file(lambda d: d.update(tensors={})),
        "unknown_kind": compressed_file(lambda d: d["tensors"][0].update(kind="mystery")),
        "missing_part": compressed_file(lambda d: d["tensors"][0]["parts"].update(values="nope")),
        "mask_mismatch": compressed_file(lambda d: d["tensors"][0]["attrs"].update(shape=[5, 4])),
        "not_json": safetensors({"b": np.ones(1, np.float32)}, {"swiftprune": "{'tensors':"}),
        "infinity": safetensors({"b": np.ones(1, np.float32)}, {"swiftprune": '{"tensors":[],"report":[{"name":"b",'
                                '"stages":"-","params":Infinity}]}'}),
    }
    out["npz"] = {
        "valid": zip_bytes({"w.npy": npy(w), "b.npy": npy(np.ones(3))}),
        "valid_deflated": zip_bytes({"w.npy": npy(w)}, zipfile.ZIP_DEFLATED),
        "bomb": zip_bytes({"w.npy": npy(np.zeros(4 << 20, np.uint8))}, zipfile.ZIP_DEFLATED,
                          patch=[(24, 22, "<I", 0xFFFFFFF0)]),
        "shape_2_40": zip_bytes({"w.npy": npy_header((2**40,)) + b"\0" * 16}),
        "encrypted": zip_bytes({"w.npy": npy(w)}, patch=[(8, 6, "<H", 1)]),
        "method_99": zip_bytes({"w.npy": npy(w)}, patch=[(10, 8, "<H", 99)]),
        "not_npy": zip_bytes({"readme.txt": b"hello"}),
        "object_dtype": zip_bytes({"o.npy": npy_header((1,), "|O") + b"\0" * 8}),
        "bad_header": zip_bytes({"w.npy": b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (-1,)}  \n"}),
        "truncated": zip_bytes({"w.npy": npy(w)})[:-30],
        "not_zip": b"PK\x03\x04" + b"\0" * 40,
    }
    h5_valid = b""
    try:
        import h5py

        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=w)
        h5_valid = buffer.getvalue()
    except ImportError:
        pass
    out["h5"] = {"truncated_magic": b"\x89HDF\r\n\x1a\n" + b"\0" * 32, "garbage": b"not hdf5 at all"}
    if h5_valid:
        out["h5"].update(valid=h5_valid, truncated=h5_valid[: len(h5_valid) // 2])
    out["recipe_json"] = {
        "valid": b'[{"prune": {"sparsity": 0.5}}]',
        "deep": b"[" * 30000 + b"]" * 30000,
        "not_list": b'{"prune": 1}',
        "bad_field": b'[{"prune": {"sparsity": "half"}}]',
        "bad_utf8": b'[{"prune": "\xff"}]',
        "empty": b"",
        "nan": b'[{"prune": {"sparsity": NaN}}]',
    }
    out["recipe_yaml"] = {
        "valid": b"- prune: {sparsity: 0.5}\n  include: '*.weight'\n",
        "deep": b"[" * 5000 + b"]" * 5000,
        "anchors": b"- &a {prune: {sparsity: 0.5}}\n- *a\n",
        "python_tag": b"- !!python/object/apply:os.system ['true']\n",
        "tab": b"-\tprune: 1\n",
        "bad_utf8": b"- prune: \xff\n",
    }
    return out


def main() -> None:
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    for target, files in cases().items():
        directory = os.path.join(CORPUS, target)
        os.makedirs(directory)
        for name, data in files.items():
            assert len(data) < 64 << 10, (target, name, len(data))
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
    print(f"wrote {sum(len(v) for v in cases().values())} files under {CORPUS}")


if __name__ == "__main__":
    main()
