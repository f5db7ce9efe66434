"""Writing one job's outputs as ``.safetensors`` parts of bounded size.

A job (one input shard) emits its finished tensors in order; they go to
parts of at most ``max_shard_size`` bytes of tensor data each (a single
tensor larger than that gets a part of its own, as in transformers'
``save_pretrained``). Each part is an ordinary, complete safetensors file,
written atomically by the Swift core: dense parts hold plain tensors in the
source's dtype; compressed parts hold what
:meth:`~swiftprune.CompressionResult.save` writes (the packed forms plus the
``"swiftprune"`` layout and report of their own tensors), so every part is
readable by itself.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping, Sequence

import numpy as np

from .. import _core
from ..io import SafetensorsFile, SafetensorsWriter, header_size_estimate
from ..compressed_file import _json_default
from ..compressed_schema import document_text
from ..pruned_tensor import pack_mask as _pack_mask
from ..registry import codec_for as _codec_for

__all__ = ["PartWriter", "sha256_of", "raw_bytes", "dense_output"]

_FLOAT_KEEP = {"F16": np.float16, "F32": np.float32, "F64": np.float64}


def sha256_of(path: str, chunk: int = 1 << 22) -> str:
    """The hex SHA-256 of a file, read in 4 MiB chunks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def raw_bytes(file: SafetensorsFile, name: str) -> np.ndarray:
    """The stored bytes of tensor ``name`` (uint8), dtype untouched (BF16 stays BF16)."""
    return file.raw_bytes(name)


def dense_output(dense: np.ndarray, dtype_name: str) -> tuple[str, np.ndarray]:
    """The float32 result of the stages in the source's float dtype: F16/F32/F64
    by NumPy's rounding cast, BF16 by round-to-nearest-even (the Swift core's cast)."""
    if dtype_name == "BF16":
        return "BF16", _core.cast(np.ascontiguousarray(dense, dtype=np.float32), True)
    kind = _FLOAT_KEEP.get(dtype_name, np.float32)
    name = dtype_name if dtype_name in _FLOAT_KEEP else "F32"
    return name, np.ascontiguousarray(dense, dtype=kind)


class PartWriter:
    """Streams one job's tensors into parts ``{stem}-part-NNN.safetensors``.

    Parameters
    ----------
    directory, stem : str
        Where the parts go and how they are named.
    max_shard_size : int
        The most tensor bytes per part.
    compressed : bool
        Write the compressed form (with per-part layout and report) rather
        than plain dense tensors.
    container : str
        ``"mapping"`` (recorded in a compressed part's layout).
    ndims : mapping of str to int
        Rank of each tensor the job may add (sizes the header reserve).
    """

    def __init__(self, directory: str, stem: str, max_shard_size: int, *, compressed: bool, container: str,
                 ndims: Mapping[str, int]) -> None:
        self.directory, self.stem = directory, stem
        self.max_shard_size = int(max_shard_size)
        self.compressed = compressed
        self.container = container
        parts = 6 if compressed else 1
        self._reserve = min(header_size_estimate(ndims, parts=parts) + (800 * len(ndims) + 1024 if compressed else 0),
                            100_000_000)
        self.parts: list[dict[str, Any]] = []
        self._writer: SafetensorsWriter | None = None
        self._size = 0
        self._keys: list[str] = []
        self._layout: list[dict[str, Any]] = []
        self._rows: list[dict[str, Any]] = []

    def _roll(self, incoming: int) -> None:
        if self._writer is not None and self._size > 0 and self._size + incoming > self.max_shard_size:
            self._close()
        if self._writer is None:
            path = os.path.join(self.directory, f"{self.stem}-part-{len(self.parts):03d}.safetensors")
            self._writer = SafetensorsWriter(path, header_reserve=self._reserve)
            self._size, self._keys, self._layout, self._rows = 0, [], [], []

    def add_dense(self, name: str, dtype_name: str, shape: Sequence[int], data: np.ndarray, row: dict[str, Any]) -> None:
        """Adds one plain tensor: ``data`` holds its values (or raw bytes) in ``dtype_name``."""
        self._roll(int(data.nbytes))
        array = np.ascontiguousarray(data)
        _core.safetensors_writer_add(self._writer._handle, name, dtype_name, tuple(int(d) for d in shape), array)
        self._keys.append(name)
        self._size += int(array.nbytes)
        self._layout.append({"name": name, "kind": "dense"})
        self._rows.append(row)

    def add_form(self, name: str, form: Any, mask: np.ndarray | None, row: dict[str, Any]) -> None:
        """Adds one compressed tensor (a form with a registered codec), as ``CompressionResult.save`` stores it."""
        codec = _codec_for(form)
        parts, attrs = codec.encode(form)
        arrays = {f"{name}::{part}": np.asarray(array) for part, array in parts.items()}
        if mask is not None:
            arrays[f"{name}::keep_mask"] = _pack_mask(mask)
        self._roll(sum(int(a.nbytes) for a in arrays.values()))
        entry: dict[str, Any] = {"name": name, "kind": codec.kind, "attrs": attrs, "parts": {}}
        for key, array in arrays.items():
            if key in self._keys:
                raise ValueError(f"cannot save: the stored name {key!r} is used twice (a tensor name contains '::'?)")
            self._writer.add(key, array)
            self._keys.append(key)
            self._size += int(array.nbytes)
            part = key.rsplit("::", 1)[1]
            if part == "keep_mask":
                entry["mask"] = {"key": key, "shape": list(mask.shape)}
            else:
                entry["parts"][part] = key
        self._layout.append(entry)
        self._rows.append(row)

    def _close(self) -> None:
        writer = self._writer
        self._writer = None
        if self.compressed:
            writer.set_metadata("swiftprune", document_text(self.container, self._layout, self._rows,
                                                            default=_json_default))
        writer.commit()
        self.parts.append({"file": os.path.basename(writer.path), "keys": list(self._keys), "bytes": self._size,
                           "sha256": sha256_of(writer.path)})

    def finish(self) -> list[dict[str, Any]]:
        """Commits the last part; returns every part: file, stored keys, data bytes, sha256."""
        if self._writer is not None:
            self._close()
        return self.parts

    def discard(self) -> None:
        """Drops the part being written (its temporary file goes with the writer)."""
        self._writer = None
