"""Reading a sharded compressed checkpoint back: every shard's compressed forms in one result."""
from __future__ import annotations

from typing import Any

from ..io import PathLike
from ..model import CompressionResult, Report, load_compressed
from .checkpoint import ShardedCheckpoint

__all__ = ["load_compressed_sharded"]


def load_compressed_sharded(path: PathLike) -> CompressionResult:
    """:func:`~swiftprune.load_compressed` over a sharded output of
    ``compress_file`` (a folder or its index): the shards' tensors, masks and
    report rows joined in checkpoint order. ``ValueError`` if a shard holds no
    swiftprune metadata."""
    checkpoint = ShardedCheckpoint(path)
    tensors: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    report = Report()
    for shard in checkpoint.shards:
        part = load_compressed(shard)
        tensors.update(part.tensors)
        masks.update(part.masks)
        weights.update(part.weights)
        report.extend(part.report)
    return CompressionResult(weights, tensors, masks, report, "mapping")
