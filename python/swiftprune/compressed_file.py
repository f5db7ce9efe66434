"""The compressed ``.safetensors`` file: written by :class:`CompressedWriter`,
read back by :func:`read_compressed`.

Parts of a compressed tensor are stored as tensors named ``"<tensor>::<part>"``;
the metadata key ``"swiftprune"`` holds the layout and the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .io import PathLike, SafetensorsFile, SafetensorsWriter, header_size_estimate
from .pruned_tensor import pack_mask, unpack_mask
from .registry import _CODECS, codec_for
from .compressed_schema import dense_row, document_text, parse_document
from .report import Report

# What a codec may raise on stored parts that passed the schema but not its own checks
# (a third-party codec included): all reported as ValueError naming the tensor.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)

__all__ = ["CompressedWriter", "StoredCompression", "read_compressed"]

_ZERO = np.float32(0.0)


def header_reserve(ndims: Mapping[str, int]) -> int:
    """The header room :class:`CompressedWriter` keeps for tensors of these
    ranks: up to 6 stored parts per tensor plus the layout and report
    metadata. (The planner budgets the file with it: one source of truth.)"""
    return min(header_size_estimate(ndims, parts=6) + 800 * len(ndims) + 1024, 100_000_000)


def file_overhead(ndims: Mapping[str, int]) -> int:
    """Bytes of a compressed file besides its stored tensors: the 8-byte
    length and the reserved header, the data starting at a multiple of 8."""
    return (8 + header_reserve(ndims) + 7) // 8 * 8


class CompressedWriter:
    """Streams compressed tensors into a ``.safetensors`` file."""

    def __init__(self, path: str, container: str, ndims: Mapping[str, int]) -> None:
        self._writer = SafetensorsWriter(path, header_reserve=header_reserve(ndims))
        self._layout: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self._dense: dict[str, np.ndarray] = {}  # stored as they came: their report rows derive from them
        self.container = container
        self.report: list[dict[str, Any]] = []

    def _put(self, key: str, array: np.ndarray) -> None:
        if key in self._names:
            raise ValueError(f"cannot save: the stored name {key!r} is used twice (a tensor name contains '::'?)")
        self._names.add(key)
        self._writer.add(key, array)

    def add(self, name: str, form: Any, mask: np.ndarray | None) -> None:
        if isinstance(form, np.ndarray):
            self._put(name, form)
            self._layout.append({"name": name, "kind": "dense"})
            self._dense[name] = form
            return
        codec = codec_for(form)
        parts, attrs = codec.encode(form)
        entry: dict[str, Any] = {"name": name, "kind": codec.kind, "attrs": attrs, "parts": {}}
        for part, array in parts.items():
            key = f"{name}::{part}"
            self._put(key, np.asarray(array))
            entry["parts"][part] = key
        if mask is not None:
            key = f"{name}::keep_mask"
            self._put(key, pack_mask(mask))
            entry["mask"] = {"key": key, "shape": list(mask.shape)}
        self._layout.append(entry)

    def __enter__(self) -> "CompressedWriter":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is not None:
            self._writer = None  # discarded
            return
        self._writer.set_metadata("swiftprune", document_text(self.container, self._layout, self.report,
                                                              default=_json_default, dense=self._dense))
        self._writer.commit()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in the file's metadata")


@dataclass
class StoredCompression:
    """What a compressed file holds: the container kind of the compressed
    weights, the compressed form per name, stored keep-masks, their dense
    float32 reconstructions (in file order) and the report."""

    container: str
    tensors: dict[str, Any]
    masks: dict[str, np.ndarray]
    dense: list[np.ndarray]
    report: Report


def read_compressed(path: PathLike) -> StoredCompression:
    """Reads a file written by :class:`CompressedWriter` (see
    :func:`swiftprune.load_compressed`)."""
    source = SafetensorsFile(path)
    dense_read: dict[str, np.ndarray] = {}

    def read(name: str) -> np.ndarray:  # a dense tensor is read once: for its derived report row and for itself
        if name not in dense_read:
            dense_read[name] = source[name]
        return dense_read[name]

    text = source.metadata.get("swiftprune")
    if text is None:
        raise ValueError(f"{source.path} holds no swiftprune compression metadata; "
                         "use load_weights() for plain weight files")
    try:
        # The whole schema first: every field typed, every referenced tensor present.
        document = parse_document(text, set(source.names), describe=lambda name: dense_row(name, read(name)))
    except ValueError as error:
        raise ValueError(f"{source.path}: {error}") from None
    container = document.get("container", "mapping")
    tensors: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    for index, entry in enumerate(document["tensors"]):
        name, kind = entry["name"], entry["kind"]
        if kind == "dense":
            tensors[name] = dense_read.pop(name) if name in dense_read else source[name]
            continue
        if kind not in _CODECS:
            raise ValueError(f"{source.path}: tensor {name!r} is stored as {kind!r}, which this build of "
                             "swiftprune cannot read")
        parts = {part: source[key] for part, key in entry["parts"].items()}
        try:
            tensors[name] = _CODECS[kind].decode(parts, entry.get("attrs", {}))
            if "mask" in entry:
                masks[name] = unpack_mask(source[entry["mask"]["key"]], entry["mask"]["shape"])
        except KeyError as error:  # (format 2 lists parts by name: one may be missing from the list)
            raise ValueError(f"{source.path}: tensor {name!r} ({kind}): metadata field tensors[{index}]: "
                             f"{error} missing (a part or attribute the {kind} codec needs)") from None
        except _DECODE_ERRORS as error:
            raise ValueError(f"{source.path}: tensor {name!r} ({kind}): {error}") from None
    dense = []
    for name, form in tensors.items():
        if isinstance(form, np.ndarray):
            dense.append(form)
            continue
        try:
            values = np.asarray(codec_for(form).dense(form), dtype=np.float32)
            if name in masks:
                values = np.where(masks[name], values, _ZERO)
        except _DECODE_ERRORS as error:
            raise ValueError(f"{source.path}: tensor {name!r}: {error}") from None
        dense.append(values)
    report = Report()
    for row in document.get("report", []):
        row = dict(row)
        row["shape"] = tuple(row.get("shape", ()))
        report.append(row)
    return StoredCompression(container, tensors, masks, dense, report)
