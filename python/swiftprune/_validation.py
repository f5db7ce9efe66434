"""Argument checks shared by the Python API: the bad value goes in the message."""
from __future__ import annotations

import numbers
import re
from typing import Any

import numpy as np


def check_fraction(name: str, value: Any) -> float:
    """`value` as a float in [0, 1]; TypeError / ValueError naming `name` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within bounds; TypeError / ValueError naming `name` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def float_array(name: str, value: Any) -> np.ndarray:
    """`value` as an ndarray of float16/32/64 in native byte order.

    Any memory layout and byte order is accepted (big-endian ``>f4`` is
    converted once, as the C layer converts other layouts); TypeError naming
    `name` for anything that is not a real floating array.
    """
    array = np.asarray(value)
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"{name} must be a real floating-point array (float16, float32 or float64), "
                        f"got dtype {array.dtype}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def check_nesting(text: str, limit: int, what: str) -> None:
    """ValueError if the brackets of JSON/YAML `text` nest deeper than `limit`.

    Python's JSON and YAML parsers recurse per level and end in
    RecursionError (or take seconds) on hostile nesting; this linear scan
    refuses it first. Brackets inside strings count too, which can only
    over-count.
    """
    depth = 0
    for ch in _NOT_BRACKETS.sub("", text):  # the C regex engine drops everything else
        depth += 1 if ch in "[{" else -1
        if depth > limit:
            raise ValueError(f"{what} is nested deeper than {limit} levels")
