"""Validation of the ``"swiftprune"`` metadata of a compressed ``.safetensors`` file.

The document is written by :meth:`CompressionResult.save`; a file may come
from anywhere, so :func:`parse_document` checks all of it before any field
is used: the JSON itself (nesting depth, size), every field's type and
range, that every referenced stored tensor exists, and every report row.
Anything wrong raises ``ValueError`` naming the field, e.g.
``metadata field tensors[3].attrs.shape[0]: expected an integer in [0, 2**62), got 1.5``.

Format 2 (written since 0.2) is format 1 said in fewer bytes, because the
header is part of a budgeted file's size (about 410 bytes per tensor in
format 1, most of it repeated keys): compact JSON, a dense tensor's entry is
its name alone, ``parts`` lists part names (the stored key is
``"<tensor>::<part>"``), ``mask`` is the mask's shape (key
``"<tensor>::keep_mask"``), and the report is a table ``{"columns": [...],
"rows": [[...], ...]}`` in which the row of a tensor stored as it came (dense,
no stage) may be its name alone: :func:`dense_row` of the stored tensor gives it
back exactly (the writer abbreviates only rows it gives back). :func:`document_text` writes it;
:func:`parse_document` reads both formats and returns the format-1 shape, so
every reader sees one structure.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Callable, Collection, Mapping, Sequence

from ._validation import check_nesting

__all__ = ["parse_document", "document_text", "dense_row", "check_report_rows", "MAX_DIMENSION", "FORMAT_VERSION"]

#: Stored dtypes whose report row a reader derives from the tensor (their NumPy names round-trip).
_DERIVED_DTYPES = ("float32", "float16", "float64")

#: The largest dimension or element count accepted (well past any real tensor;
#: it keeps sizes inside NumPy's int64 arithmetic).
MAX_DIMENSION = 2**62
#: JSON nesting deeper than this is refused before parsing (the document
#: needs 5 levels; Python's parser would recurse until RecursionError).
MAX_DEPTH = 64
#: The format :func:`document_text` writes (and the newest :func:`parse_document` reads).
FORMAT_VERSION = 2

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
        if attrs.get("scale_dtype", "float32") not in ("float32", "float16"):
            raise _fail(f"{field}.scale_dtype", f"expected 'float32' or 'float16', got {attrs['scale_dtype']!r:.80}")
    elif kind == "clustered":
        _int(attrs.get("index_bits"), f"{field}.index_bits", 1, 17)
        if attrs.get("index_dtype") not in ("uint8", "uint16"):
            raise _fail(f"{field}.index_dtype", f"expected 'uint8' or 'uint16', got {attrs.get('index_dtype')!r:.80}")
        if "iterations" in attrs:
            _int(attrs["iterations"], f"{field}.iterations")
    elif kind == "low_rank":
        if attrs.get("layout") not in ("keras", "torch"):
            raise _fail(f"{field}.layout", f"expected 'keras' or 'torch', got {attrs.get('layout')!r:.80}")


def dense_row(name: str, array: Any) -> dict[str, Any]:
    """The report row of a tensor stored as it came (no stage): what
    :func:`~swiftprune.report.report_row` gives an untouched tensor (the
    shape as a list, as JSON holds it)."""
    import numpy as np

    array = np.asarray(array)
    params = int(array.size)
    return {"name": name, "shape": [int(d) for d in array.shape], "dtype": str(array.dtype), "params": params,
            "nonzeros": int(np.count_nonzero(array)), "bits": (array.nbytes * 8 / params) if params else 0.0,
            "bytes_before": int(array.nbytes), "bytes_after": int(array.nbytes), "relative_error": 0.0, "stages": "-"}


def _report_rows(report: Any, field: str = "report", stored: Collection[str] | None = None,
                 describe: Callable[[str], dict[str, Any]] | None = None) -> Any:
    """The report as a list of row objects: format 2's table expanded, a row given
    as a name derived from the stored tensor by ``describe`` (format 1's list as is)."""
    if not isinstance(report, dict) or "columns" not in report:
        return report
    columns = _list(report.get("columns"), f"{field}.columns")
    for i, column in enumerate(columns):
        _str(column, f"{field}.columns[{i}]")
    if len(set(columns)) != len(columns):
        raise _fail(f"{field}.columns", "a column is named twice")
    rows = []
    for i, row in enumerate(_list(report.get("rows"), f"{field}.rows")):
        if isinstance(row, str):
            if stored is not None and row not in stored:
                raise _fail(f"{field}.rows[{i}]", f"tensor {row!r} is not stored in the file")
            if describe is None:
                raise _fail(f"{field}.rows[{i}]", "a row derived from the stored tensor; read it with its file")
            rows.append(describe(row))
            continue
        if len(_list(row, f"{field}.rows[{i}]")) != len(columns):
            raise _fail(f"{field}.rows[{i}]", f"{len(row)} values for {len(columns)} columns")
        rows.append(dict(zip(columns, row)))
    return rows


def _expand_entry(entry: Any, where: str) -> Any:
    """A format-2 layout entry in format 1's shape: a bare name is a dense tensor,
    a list of parts and a mask shape name their stored keys by convention."""
    if isinstance(entry, str):
        return {"name": entry, "kind": "dense"}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return entry  # the checks below name what is wrong
    name = entry["name"]
    entry = dict(entry)
    if isinstance(entry.get("parts"), list):
        parts = {}
        for i, part in enumerate(entry["parts"]):
            parts[_str(part, f"{where}.parts[{i}]")] = f"{name}::{part}"
        entry["parts"] = parts
    if isinstance(entry.get("mask"), list):
        entry["mask"] = {"key": f"{name}::keep_mask", "shape": entry["mask"]}
    return entry


def _compact_entry(entry: Mapping[str, Any]) -> Any:
    """The format-2 spelling of a format-1 layout entry (the inverse of :func:`_expand_entry`)."""
    name = entry["name"]
    if entry.get("kind") == "dense" and set(entry) == {"name", "kind"}:
        return name
    out = dict(entry)
    parts = entry.get("parts")
    if isinstance(parts, Mapping) and all(key == f"{name}::{part}" for part, key in parts.items()):
        out["parts"] = list(parts)
    mask = entry.get("mask")
    if isinstance(mask, Mapping) and mask.get("key") == f"{name}::keep_mask" and set(mask) == {"key", "shape"}:
        out["mask"] = list(mask["shape"])
    return out


def _compact_report(rows: Sequence[Mapping[str, Any]], dense: Mapping[str, Any]) -> Any:
    """The report as one table when every row has the same columns (a list of rows otherwise);
    the row of a tensor in ``dense`` (stored as it came) is its name when :func:`dense_row`
    gives it back exactly."""
    if not rows:
        return []
    columns = list(rows[0])
    if any(list(row) != columns for row in rows):
        return [dict(row) for row in rows]
    table: list[Any] = []
    for row in rows:
        array = dense.get(row["name"])
        if (array is not None and row.get("stages") == "-" and str(getattr(array, "dtype", "")) in _DERIVED_DTYPES
                and dict(row, shape=list(row["shape"])) == dense_row(row["name"], array)):
            table.append(row["name"])
        else:
            table.append(list(row.values()))
    return {"columns": columns, "rows": table}


def document_text(container: str, tensors: Sequence[Mapping[str, Any]], report: Sequence[Mapping[str, Any]],
                  default: Callable[[Any], Any] | None = None, dense: Mapping[str, Any] | None = None) -> str:
    """The ``"swiftprune"`` metadata value (format 2) of a compressed file.

    Parameters
    ----------
    container : {"mapping", "sequence"}
        How the original weights were held.
    tensors : sequence of dict
        The layout in format 1's shape (``{"name", "kind", "attrs", "parts":
        {part: stored key}, "mask": {"key", "shape"}}``; dense tensors
        ``{"name", "kind": "dense"}``), in file order.
    report : sequence of dict
        The report rows.
    default : callable, optional
        ``json.dumps``'s ``default`` for values JSON does not know (NumPy scalars).
    dense : mapping of str to numpy.ndarray, optional
        The tensors stored as they came, by name: their report rows are
        written as the name when :func:`dense_row` gives them back.

    Returns
    -------
    str
        Compact JSON that :func:`parse_document` reads back to the same layout and rows.
    """
    from ._version import __version__

    document = {"format_version": FORMAT_VERSION, "swiftprune_version": __version__, "container": container,
                "tensors": [_compact_entry(entry) for entry in tensors], "report": _compact_report(list(report), dense or {})}
    return json.dumps(document, default=default, separators=(",", ":"))


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


def parse_document(text: Any, stored: Collection[str] | None = None,
                   describe: Callable[[str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The checked metadata document of a compressed file.

    Parameters
    ----------
    text : str
        The ``"swiftprune"`` metadata value.
    stored : collection of str, optional
        The tensor names in the file: every name the document refers to
        must be one of them.
    describe : callable, optional
        ``describe(name)``: the report row of a stored dense tensor
        (``dense_row(name, file[name])``), for rows the writer abbreviated.

    Returns
    -------
    dict
        The document in format 1's shape whatever its format: ``tensors``
        entries as objects (``parts`` mapping part to stored key, ``mask``
        as ``{"key", "shape"}``), ``report`` as checked rows (``shape`` as tuples).

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
        if _int(version, "format_version", 0, 2**31) > FORMAT_VERSION:
            raise _fail("format_version", f"version {version} is newer than this build of swiftprune reads "
                                          f"({FORMAT_VERSION})")
        if "swiftprune_version" in document:
            _str(document["swiftprune_version"], "swiftprune_version")
        container = document.get("container", "mapping")
        if container not in ("mapping", "sequence"):
            raise _fail("container", f"expected 'mapping' or 'sequence', got {container!r:.80}")
        names: set[str] = set()
        layout = []
        for i, entry in enumerate(_list(document.get("tensors"), "tensors")):
            where = f"tensors[{i}]"
            entry = _mapping(_expand_entry(entry, where) if version >= 2 else entry, where)
            layout.append(entry)
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
        document["tensors"] = layout
        report = document.get("report", [])
        document["report"] = check_report_rows(_report_rows(report, "report", stored, describe) if version >= 2
                                               else _list(report, "report"))
        return document
    except _Fail as error:
        raise ValueError(str(error)) from None
