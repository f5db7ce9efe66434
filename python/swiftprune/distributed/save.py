"""``save_sharded``: in-memory weights to a sharded checkpoint."""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..io import PathLike, SafetensorsWriter, _named_arrays, _safetensors_dtype, header_size_estimate
from .layout import DEFAULT_MAX_SHARD_SIZE, destination_layout, parse_size, shard_name, stale_shards, write_index
from .parts import sha256_of

__all__ = ["save_sharded"]


def save_sharded(path: PathLike, weights: Any, *, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
                 metadata: Mapping[str, str] | None = None) -> list[str]:
    """Writes ``weights`` as a sharded ``.safetensors`` checkpoint, as transformers does.

    Tensors go, in order, to ``{prefix}-NNNNN-of-NNNNN.safetensors`` shards of
    at most ``max_shard_size`` tensor bytes (a larger tensor gets its own
    shard); the index ``{prefix}.safetensors.index.json`` (``metadata`` with
    ``total_size``, ``weight_map``) is written last. Every file is written
    atomically; shards of an earlier save with the same prefix are removed.

    Parameters
    ----------
    path : str or os.PathLike
        A folder (prefix ``model``) or an ``*.safetensors.index.json`` path.
    weights : mapping of str to array_like, or sequence of array_like
    max_shard_size : int or str, default "5GB"
    metadata : mapping of str to str, optional
        Stored in every shard's ``__metadata__`` (``format: pt`` is usual).

    Returns
    -------
    list of str
        The shard paths, in order.
    """
    limit = parse_size(max_shard_size)
    arrays = _named_arrays(weights)
    for name, array in arrays.items():
        _safetensors_dtype(name, array)  # TypeError for an unstorable dtype, before anything is written
    groups: list[list[str]] = []
    size = 0
    for name, array in arrays.items():
        if not groups or (size > 0 and size + array.nbytes > limit):
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += int(array.nbytes)
    if not groups:
        groups.append([])
    directory, index_name, prefix = destination_layout(path)
    os.makedirs(directory, exist_ok=True)
    files = [shard_name(prefix, i + 1, len(groups)) for i in range(len(groups))]
    weight_map: dict[str, str] = {}
    checksums: dict[str, str] = {}
    for file, group in zip(files, groups):
        target = os.path.join(directory, file)
        reserve = header_size_estimate({n: arrays[n].ndim for n in group}, metadata)
        with SafetensorsWriter(target, header_reserve=reserve) as writer:
            for key, value in (metadata or {}).items():
                writer.set_metadata(key, value)
            for name in group:
                writer.add(name, arrays[name])
                weight_map[name] = file
        checksums[file] = sha256_of(target)
    for stale in stale_shards(directory, prefix, set(files)):
        os.unlink(stale)
    total = sum(int(a.nbytes) for a in arrays.values())
    write_index(os.path.join(directory, index_name), weight_map, total, {"swiftprune": {"sha256": checksums}})
    return [os.path.join(directory, f) for f in files]
