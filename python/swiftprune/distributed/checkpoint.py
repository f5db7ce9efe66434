"""Sharded checkpoints on disk: finding the shards, reading them lazily.

A sharded checkpoint is what Hugging Face ``save_pretrained`` writes: a
folder of ``model-0000k-of-0000n.safetensors`` files plus
``model.safetensors.index.json`` (``{"metadata": {...}, "weight_map":
{tensor: file}}``). :class:`ShardedCheckpoint` opens either the folder or
the index file (or a folder of ``.safetensors`` files with no index, or a
single ``.safetensors`` file) and reads it as one mapping name → array.

Tensor order, which global pruning's tie-breaking follows, is fixed: shards
sorted by file name, then each shard's header order.
"""
from __future__ import annotations

import json
import errno
import os
from typing import Any, Iterator, Mapping

import numpy as np

from ..io import PathLike, SafetensorsFile, weight_format

__all__ = ["ShardedCheckpoint", "is_sharded_path", "INDEX_SUFFIX"]

INDEX_SUFFIX = ".safetensors.index.json"
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")


def is_sharded_path(path: PathLike, *, destination: bool = False) -> bool:
    """Whether ``path`` names a sharded checkpoint.

    True for a name ending in ``.index.json`` or an existing folder; as a
    ``destination`` also for a name ending in a path separator or a name that
    does not exist and has no suffix (``out/sharded`` → a folder). A
    ``.safetensors`` / ``.npz`` / ``.h5`` file name is never sharded.
    """
    text = os.fspath(path)
    if text.lower().endswith(".index.json") or os.path.isdir(text):
        return True
    if not destination:
        return False
    if text.endswith(("/", os.sep)):
        return True
    return not os.path.exists(text) and "." not in os.path.basename(text)


def _index_in(folder: str) -> str | None:
    """The index file of a checkpoint folder: ``model.safetensors.index.json``, or the only ``*.index.json``."""
    candidates = sorted(f for f in os.listdir(folder) if f.endswith(INDEX_SUFFIX))
    if not candidates:
        return None
    if "model" + INDEX_SUFFIX in candidates:
        return os.path.join(folder, "model" + INDEX_SUFFIX)
    if len(candidates) > 1:
        raise ValueError(f"{folder} holds several index files ({', '.join(candidates)}); open one of them")
    return os.path.join(folder, candidates[0])


def _read_index(path: str) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid index file (invalid JSON: {error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("weight_map"), dict):
        raise ValueError(f"{path}: not a valid index file (needs a 'weight_map' object)")
    weight_map = document["weight_map"]
    for name, file in weight_map.items():
        if not isinstance(file, str) or not file or os.path.isabs(file) or ".." in file.replace("\\", "/").split("/"):
            raise ValueError(f"{path}: weight_map entry {name!r} names a bad shard file {file!r}")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: 'metadata' must be an object")
    return metadata, weight_map


class ShardedCheckpoint(Mapping[str, np.ndarray]):
    """A sharded ``.safetensors`` checkpoint, read lazily as one mapping.

    Opening reads the index and every shard's header (each validated by the
    Swift core); tensor data is read only when a tensor is accessed, as a
    read-only view of its memory-mapped shard (BF16: a float32 copy, as
    :class:`~swiftprune.io.SafetensorsFile` gives it).

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint folder (with an ``*.safetensors.index.json``, or just
        ``*.safetensors`` files), an index file, or one ``.safetensors`` file.

    Raises
    ------
    FileNotFoundError
        The path, or a shard the index names, does not exist.
    ValueError
        A malformed index or shard, a tensor in two shards, or an index that
        disagrees with the shards' contents (the message names the tensor).

    Examples
    --------
    >>> ckpt = ShardedCheckpoint("llama/")                 # doctest: +SKIP
    >>> ckpt.shards, len(ckpt), ckpt["lm_head.weight"].shape  # doctest: +SKIP
    """

    def __init__(self, path: PathLike) -> None:
        text = os.fspath(path)
        if not os.path.exists(text):
            raise FileNotFoundError(2, "no such checkpoint", text)
        self.metadata: dict[str, Any] = {}
        self.index_path: str | None = None
        weight_map: dict[str, str] | None = None
        if os.path.isdir(text):
            self.directory = text
            self.index_path = _index_in(text)
            if self.index_path is None:
                files = sorted(f for f in os.listdir(text) if f.endswith(".safetensors") and not f.startswith("."))
                if not files:
                    # A folder where a weight file was expected (e.g. "model.safetensors/"): the OSError
                    # subclass of every reader for a directory.
                    raise IsADirectoryError(errno.EISDIR, "a folder with no .safetensors shards or index file", text)
            else:
                self.metadata, weight_map = _read_index(self.index_path)
                files = sorted(set(weight_map.values()))
        elif text.lower().endswith(".index.json"):
            self.index_path = text
            self.directory = os.path.dirname(os.path.abspath(text))
            self.metadata, weight_map = _read_index(text)
            files = sorted(set(weight_map.values()))
        else:
            if weight_format(text) != "safetensors":
                raise ValueError(f"{text}: sharded checkpoints (and workers, Dask, resume) read .safetensors files; "
                                 "convert it with save_weights(path.safetensors, load_weights(...)) first")
            self.directory = os.path.dirname(os.path.abspath(text))
            files = [os.path.basename(text)]
        self.shards: list[str] = [os.path.join(self.directory, f) for f in files]
        self._files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, str] = {}
        for shard in self.shards:
            if not os.path.exists(shard):
                raise FileNotFoundError(2, f"shard listed in {self.index_path} is missing", shard)
            opened = self._open(shard)
            for name in opened.names:
                if name in self._where:
                    raise ValueError(f"tensor {name!r} is stored twice: in {self._where[name]} and {shard}")
                self._where[name] = shard
        if weight_map is not None:
            for name, file in weight_map.items():
                actual = self._where.get(name)
                if actual is None:
                    raise ValueError(f"{self.index_path}: tensor {name!r} is listed in {file} but no shard holds it")
                if os.path.basename(actual) != os.path.basename(file):
                    raise ValueError(f"{self.index_path}: tensor {name!r} is listed in {file} but stored in {actual}")
            extra = [n for n in self._where if n not in weight_map]
            if extra:
                raise ValueError(f"{self.index_path}: tensor {extra[0]!r} in {self._where[extra[0]]} is missing "
                                 "from the weight_map")

    def _open(self, shard: str) -> SafetensorsFile:
        opened = self._files.get(shard)
        if opened is None:
            opened = self._files[shard] = SafetensorsFile(shard)
        return opened

    @property
    def names(self) -> list[str]:
        """Tensor names: shards in file-name order, each in header order."""
        return list(self._where)

    def shard_of(self, name: str) -> str:
        """The path of the shard holding tensor ``name``."""
        return self._where[name]

    def names_in(self, shard: str) -> list[str]:
        """The tensors of one shard, in header order."""
        return self._open(shard).names

    def file(self, name: str) -> SafetensorsFile:
        """The open shard holding ``name`` (for its dtype, raw bytes, release)."""
        return self._open(self._where[name])

    def dtype_name(self, name: str) -> str:
        """The tensor's safetensors dtype, e.g. ``"BF16"``."""
        return self.file(name).dtype_name(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape."""
        return self.file(name).shape(name)

    def nbytes(self, name: str) -> int:
        """The tensor's size in its shard, in bytes."""
        return self.file(name).nbytes(name)

    def is_float(self, name: str) -> bool:
        """Whether the tensor is floating point (F16, BF16, F32, F64, F8)."""
        return self.dtype_name(name) in _FLOAT_DTYPES

    @property
    def total_bytes(self) -> int:
        """The size of all tensor data, in bytes."""
        return sum(self.nbytes(name) for name in self._where)

    def release(self, name: str) -> None:
        """Lets the pages of tensor ``name`` leave resident memory (see
        :meth:`~swiftprune.io.SafetensorsFile.release`)."""
        self.file(name).release(name)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise KeyError(name)
        return self.file(name)[name]

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"ShardedCheckpoint({self.directory!r}, shards={len(self.shards)}, tensors={len(self)})"
