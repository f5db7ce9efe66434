"""Validation of the ``"swiftprune"`` metadata of a compressed ``.safetensors`` file.

The document is written by :meth:`CompressionResult.save`; a file may come
from anywhere, so :func:`parse_document` checks all of it before any field
is used: the JSON itself (nesting depth, size), every field's type and
range, that every referenced stored tensor exists, and every report row.
Anything wrong raises ``ValueError`` naming the field, e.g.
``metadata field tensors[3].attrs.shape[0]: expected an integer in [0, 2**62), got 1.5``.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Collection, Mapping

from ._validation import check_nesting

__all__ = ["parse_document", "check_report_rows", "MAX_DIMENSION"]

#: The largest dimension or element count accepted (well past any real tensor;
#: it keeps sizes inside NumPy's int64 arithmetic).
MAX_DIMENSION = 2**62
#: JSON nesting deeper than this is refused before parsing (the document
#: needs 5 levels; Python's parser would recurse until RecursionError).
MAX_DEPTH = 64

_REPORT_INTS = ("params", "nonzeros", "bytes_before", "bytes_after")
_REPORT_FLOATS = ("bits", "relative_error")
_REPORT_STRINGS = ("name", "stages")


class _Fail(ValueError):
    pass


def _fail(field: str, message: str) -> _Fail:
    return _Fail(f"metadata field {field}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, field: str, low: int = 0, high: int = MAX_DIMENSION) -> int:
    if not _is_int(value) or not low <= value < high:
        raise _fail(field, f"expected an integer in [{low}, {high if high < 2**40 else '2**62'}), got {value!r:.80}")
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"expected a string, got {type(value).__name__}")
    return value


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, field: str) -> list:
    if not isinstance(value, list):
        raise _fail(field, f"expected a list, got {type(value).__name__}")
    return value


def _shape(value: Any, field: str) -> list[int]:
    dims = _list(value, field)
    if len(dims) > 64:
        raise _fail(field, f"{len(dims)} dimensions (at most 64)")
    count = 1
    for i, d in enumerate(dims):
        count *= _int(d, f"{field}[{i}]")
    if count >= MAX_DIMENSION:
        raise _fail(field, f"shape {dims} has {count} elements, too many for any tensor")
    return dims


def _check_attrs(kind: str, attrs: Mapping[str, Any], field: str) -> None:
    """Every attribute of the built-in codecs, typed; other kinds: JSON scalars and shape."""
    if "shape" in attrs:
        _shape(attrs["shape"], f"{field}.shape")
    elif kind in ("pruned", "quantized", "clustered", "low_rank"):
        raise _fail(f"{field}.shape", "missing")
    if kind == "quantized":
        _int(attrs.get("bits"), f"{field}.bits", 2, 9)
        if not isinstance(attrs.get("symmetric"), bool):
            raise _fail(f"{field}.symmetric", f"expected true or false, got {attrs.get('symmetric')!r:.80}")
        if attrs.get("axis") is not None:
            _int(attrs["axis"], f"{field}.axis", -64, 64)
        if attrs.get("group_size") is not None:
            _int(attrs["group_size"], f"{field}.group_size", 1)
        if "method" in attrs:
            _str(attrs["method"], f"{field}.method")
    elif kind == "clustered":
        _int(attrs.get("index_bits"), f"{field}.index_bits", 1, 17)
        if attrs.get("index_dtype") not in ("uint8", "uint16"):
            raise _fail(f"{field}.index_dtype", f"expected 'uint8' or 'uint16', got {attrs.get('index_dtype')!r:.80}")
        if "iterations" in attrs:
            _int(attrs["iterations"], f"{field}.iterations")
    elif kind == "low_rank":
        if attrs.get("layout") not in ("keras", "torch"):
            raise _fail(f"{field}.layout", f"expected 'keras' or 'torch', got {attrs.get('layout')!r:.80}")


def check_report_rows(rows: Any, field: str = "report") -> list[dict[str, Any]]:
    """The stored report rows, checked: each an object with every column
    :class:`~swiftprune.model.Report` needs, of the right type."""
    out = []
    for i, row in enumerate(_list(rows, field)):
        where = f"{field}[{i}]"
        row = dict(_mapping(row, where))
        for key in _REPORT_STRINGS:
            _str(row.get(key), f"{where}.{key}")
        for key in _REPORT_INTS:
            _int(row.get(key), f"{where}.{key}")
        for key in _REPORT_FLOATS:
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0:
                raise _fail(f"{where}.{key}", f"expected a non-negative number, got {value!r:.80}")
        row["shape"] = tuple(_shape(row.get("shape", []), f"{where}.shape"))
        if "dtype" in row:
            _str(row["dtype"], f"{where}.dtype")
        out.append(row)
    return out


def parse_document(text: Any, stored: Collection[str] | None = None) -> dict[str, Any]:
    """The checked metadata document of a compressed file.

    Parameters
    ----------
    text : str
        The ``"swiftprune"`` metadata value.
    stored : collection of str, optional
        The tensor names in the file: every name the document refers to
        must be one of them.

    Returns
    -------
    dict
        The document, with ``report`` rows checked (``shape`` as tuples).

    Raises
    ------
    ValueError
        Anything malformed; the message names the field.
    """
    try:
        if not isinstance(text, str):
            raise _Fail("metadata is not a string")
        try:
            check_nesting(text, MAX_DEPTH, "metadata")
        except ValueError as error:
            raise _Fail(str(error)) from None
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise _Fail(f"metadata is not valid JSON: {error}") from None
        document = dict(_mapping(document, "(document)"))
        version = document.get("format_version", 1)
        if _int(version, "format_version", 0, 2**31) > 1:
            raise _fail("format_version", f"version {version} is newer than this build of swiftprune reads (1)")
        if "swiftprune_version" in document:
            _str(document["swiftprune_version"], "swiftprune_version")
        container = document.get("container", "mapping")
        if container not in ("mapping", "sequence"):
            raise _fail("container", f"expected 'mapping' or 'sequence', got {container!r:.80}")
        names: set[str] = set()
        for i, entry in enumerate(_list(document.get("tensors"), "tensors")):
            where = f"tensors[{i}]"
            entry = _mapping(entry, where)
            name = _str(entry.get("name"), f"{where}.name")
            if name in names:
                raise _fail(f"{where}.name", f"duplicate tensor name {name!r}")
            names.add(name)
            kind = _str(entry.get("kind"), f"{where}.kind")
            if kind == "dense":
                if stored is not None and name not in stored:
                    raise _fail(f"{where}.name", f"tensor {name!r} is not stored in the file")
                continue
            parts = _mapping(entry.get("parts"), f"{where}.parts")
            for part, key in parts.items():
                _str(key, f"{where}.parts.{part}")
                if stored is not None and key not in stored:
                    raise _fail(f"{where}.parts.{part}", f"stored tensor {key!r} is not in the file")
            _check_attrs(kind, _mapping(entry.get("attrs", {}), f"{where}.attrs"), f"{where}.attrs")
            if "mask" in entry:
                mask = _mapping(entry["mask"], f"{where}.mask")
                key = _str(mask.get("key"), f"{where}.mask.key")
                if stored is not None and key not in stored:
                    raise _fail(f"{where}.mask.key", f"stored tensor {key!r} is not in the file")
                _shape(mask.get("shape"), f"{where}.mask.shape")
        document["report"] = check_report_rows(document.get("report", []))
        return document
    except _Fail as error:
        raise ValueError(str(error)) from None
