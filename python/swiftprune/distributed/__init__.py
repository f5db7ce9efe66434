"""Sharded checkpoints, model-scope methods in streaming passes, and a Dask backend.

- :class:`ShardedCheckpoint`: a folder / ``*.safetensors.index.json`` read
  lazily as one mapping (also what :func:`~swiftprune.load_weights` returns
  for one);
- :func:`save_sharded`: weights to ``model-NNNNN-of-NNNNN.safetensors`` plus
  the index (also :func:`~swiftprune.save_weights` of a folder);
- :func:`compress_sharded`: a recipe over a sharded checkpoint with bounded
  memory, ``workers`` local processes or ``backend="dask"``, resumable (also
  :func:`~swiftprune.compress_file` when the source or destination is sharded);
- :class:`TwoPassPlan` / :func:`register_two_pass`: the streaming form of a
  model-scope method (global magnitude pruning ships as
  :class:`GlobalMagnitudePlan`, exact to the bit).

Dask is imported only when ``backend="dask"`` is asked for.
"""
from __future__ import annotations

from .checkpoint import ShardedCheckpoint, is_sharded_path
from .layout import parse_size
from .runner import compress_sharded
from .save import save_sharded
from .two_pass import GlobalMagnitudePlan, TwoPassPlan, register_two_pass

__all__ = [
    "ShardedCheckpoint",
    "is_sharded_path",
    "compress_sharded",
    "save_sharded",
    "parse_size",
    "TwoPassPlan",
    "GlobalMagnitudePlan",
    "register_two_pass",
]
