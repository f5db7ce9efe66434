"""Names and sizes: output shard names, the index document, ``max_shard_size``."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

from ..io import PathLike, atomic_path
from .checkpoint import INDEX_SUFFIX

__all__ = ["parse_size", "destination_layout", "shard_name", "write_index", "stale_shards", "DEFAULT_MAX_SHARD_SIZE"]

DEFAULT_MAX_SHARD_SIZE = "5GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str, name: str = "max_shard_size") -> int:
    """Bytes from an int or a string such as ``"5GB"`` (10^9, as transformers)
    or ``"2GiB"`` (2^30); ``ValueError``/``TypeError`` naming ``name`` otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a size such as '5GB', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if not match or match.group(2).upper() not in _UNITS:
            raise ValueError(f"{name} must be a number of bytes or a size such as '5GB' or '500MiB', got {value!r}")
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    else:
        raise TypeError(f"{name} must be a number of bytes or a size such as '5GB', got {type(value).__name__}")
    if size < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
    return size


def destination_layout(destination: PathLike) -> tuple[str, str, str]:
    """``(directory, index file name, shard prefix)`` of a sharded destination:
    ``out/`` → ``(out, model.safetensors.index.json, model)``;
    ``out/llm.safetensors.index.json`` → ``(out, llm.safetensors.index.json, llm)``."""
    text = os.fspath(destination)
    if text.lower().endswith(".index.json"):
        base = os.path.basename(text)
        prefix = base[:-len(INDEX_SUFFIX)] if base.endswith(INDEX_SUFFIX) else base[:-len(".index.json")]
        if not prefix:
            raise ValueError(f"{text!r}: the index file name needs a stem, e.g. model.safetensors.index.json")
        return os.path.dirname(os.path.abspath(text)), base, prefix
    return os.path.abspath(text), "model" + INDEX_SUFFIX, "model"


def shard_name(prefix: str, number: int, count: int) -> str:
    """``model-00001-of-00003.safetensors`` (1-based, as transformers names them)."""
    return f"{prefix}-{number:05d}-of-{count:05d}.safetensors"


def stale_shards(directory: str, prefix: str, keep: set[str]) -> list[str]:
    """Shard files of an earlier write with this prefix (``{prefix}-NNNNN-of-NNNNN.safetensors``) not in ``keep``."""
    pattern = re.compile(re.escape(prefix) + r"-\d{5}-of-\d{5}\.safetensors")
    return [os.path.join(directory, f) for f in os.listdir(directory) if pattern.fullmatch(f) and f not in keep]


def write_index(path: str, weight_map: Mapping[str, str], total_size: int, extra: Mapping[str, Any]) -> None:
    """Writes ``{"metadata": {"total_size": ..., **extra}, "weight_map": ...}`` atomically."""
    document = {"metadata": {"total_size": int(total_size), **extra}, "weight_map": dict(weight_map)}
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
