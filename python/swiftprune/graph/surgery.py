"""Cut the removed channels out of every weight, and count what is left."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .groups import Dependencies
from .ir import Graph, Node

__all__ = ["Surgery", "cut", "LayerRow"]


@dataclass
class LayerRow:
    """One report row: a layer's output channels, parameters and MACs before/after."""

    name: str
    kind: str
    channels_before: Optional[int]
    channels_after: Optional[int]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


@dataclass
class Surgery:
    """New weights per node (only those that changed), the kept channel
    indices per tensor, and the per-layer report rows."""

    params: Dict[int, Dict[str, np.ndarray]]
    tensor_keep: List[Optional[np.ndarray]]
    rows: List[LayerRow]

    def channels(self, graph: Graph, tensor: int) -> Optional[int]:
        keep = self.tensor_keep[tensor]
        return graph.tensors[tensor].channels if keep is None else int(keep.sum())

    def new_shape(self, graph: Graph, tensor: int):
        t = graph.tensors[tensor]
        if t.shape is None or t.channel_axis is None or self.tensor_keep[tensor] is None:
            return t.shape
        shape = list(t.shape)
        shape[t.channel_axis] = int(self.tensor_keep[tensor].sum())
        return tuple(shape)


def _positions(graph: Graph, tensor: int) -> int:
    t = graph.tensors[tensor]
    if t.shape is None or t.channel_axis is None:
        return 1
    axis = t.channel_axis % len(t.shape)
    dims = [d for i, d in enumerate(t.shape) if i not in (0, axis)]
    return int(np.prod([d or 1 for d in dims], dtype=np.int64))


def _macs(graph: Graph, node: Node, params: Dict[str, np.ndarray]) -> int:
    if node.op not in ("conv", "dense", "depthwise", "separable"):
        return 0
    where = node.inputs[0] if node.attrs.get("macs_at") == "input" else node.outputs[0]
    return _positions(graph, where) * sum(int(v.size) for k, v in params.items()
                                          if node.params[k].role == "weight")


def cut(deps: Dependencies, keep_class: np.ndarray) -> Surgery:
    """Slice every bound weight axis to the kept classes."""
    graph = deps.graph
    tensor_keep: List[Optional[np.ndarray]] = [
        None if a is None else keep_class[deps.atom_class[a]] for a in deps.tensor_atoms]
    new: Dict[int, Dict[str, np.ndarray]] = {}
    for b in deps.bindings:
        keep = keep_class[deps.atom_class[b.atoms]]
        if keep.all():
            continue
        params = new.setdefault(b.node, {})
        value = params.get(b.param, graph.nodes[b.node].params[b.param].value)
        params[b.param] = np.compress(keep, value, axis=b.axis)
    rows = []
    for index, node in enumerate(graph.nodes):
        if not node.params:
            continue
        before = {k: p.value for k, p in node.params.items()}
        after = dict(before, **new.get(index, {}))
        out = node.outputs[0] if node.outputs else None
        rows.append(LayerRow(
            node.name, node.kind,
            None if out is None else graph.tensors[out].channels,
            None if out is None else (graph.tensors[out].channels if tensor_keep[out] is None
                                      else int(tensor_keep[out].sum())),
            sum(int(v.size) for v in before.values()), sum(int(v.size) for v in after.values()),
            # spatial positions do not change with channel pruning: only the kernels shrink
            _macs(graph, node, before), _macs(graph, node, after)))
    return Surgery(new, tensor_keep, rows)
