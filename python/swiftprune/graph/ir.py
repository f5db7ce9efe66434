"""The framework-neutral model graph: tensors, nodes and the weights they hold.

Importers (``keras_file``, ``onnx_file``) translate a model into this form;
``groups`` reads it to find the channels that must be removed together;
``surgery`` slices the weights it holds; exporters write the same format back.
Nothing here knows about Keras or ONNX.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["Tensor", "Param", "Node", "Graph", "OPS"]

# The op kinds the dependency analysis understands (see groups.py for each rule).
OPS = (
    "input",        # a model input: channels frozen
    "conv",         # kernel in/out axes given per node (any rank, stride, dilation; attrs["groups"])
    "depthwise",    # per-channel conv, attrs["multiplier"]; output c*m+j reads input c
    "separable",    # depthwise then pointwise in one node (Keras SeparableConv)
    "dense",        # Dense / MatMul / Gemm with a weight: last axis in, last axis out
    "norm",         # per-channel affine normalization (BatchNorm, folded or not)
    "layernorm",    # normalizes over the channel axis: channels frozen unless allowed
    "elementwise",  # Add / Sub / Multiply / Maximum ... with broadcasting
    "concat",       # attrs["axis"]
    "flatten",      # collapses (spatial..., channels) into one feature axis
    "reshape",      # kept when the channel axis survives unchanged, else frozen
    "passthrough",  # activation, dropout, pooling, padding, resize, global pooling, identity
    "unknown",      # anything else: every channel through it is frozen
)


@dataclass
class Tensor:
    """One value flowing between nodes.

    ``shape`` excludes nothing: it is the full shape with ``None`` for unknown
    (batch) sizes, or ``None`` when not known at all. ``channel_axis`` indexes
    ``shape`` (negative counts from the end) or is ``None`` for tensors without
    channels (scalars, shapes).
    """

    name: str
    shape: Optional[Tuple[Optional[int], ...]]
    channel_axis: Optional[int] = -1
    producer: Optional[int] = None
    consumers: List[int] = field(default_factory=list)

    @property
    def channels(self) -> Optional[int]:
        """The size of the channel axis, when known."""
        if self.shape is None or self.channel_axis is None or not self.shape:
            return None
        try:
            return self.shape[self.channel_axis]
        except IndexError:
            return None


@dataclass
class Param:
    """A weight array of a node; ``role`` is ``"weight"`` (counted by L1/L2
    importance), ``"gamma"`` (a normalization's scale), ``"bias"`` or ``"stat"``."""

    name: str
    value: np.ndarray
    role: str = "weight"


@dataclass
class Node:
    """One operation. ``inputs``/``outputs`` index ``Graph.tensors``.

    ``attrs`` carries what the dependency rules need (``groups``,
    ``multiplier``, ``axis``, the kernel's ``in_axis``/``out_axis``,
    ``reason`` for unknown ops). ``source`` is the importer's handle
    (the Keras config dict, the ONNX node) used by its exporter.
    """

    name: str
    op: str
    kind: str
    inputs: List[int]
    outputs: List[int]
    params: Dict[str, Param] = field(default_factory=dict)
    attrs: Dict[str, Any] = field(default_factory=dict)
    source: Any = None


@dataclass
class Graph:
    """Nodes in topological order, the tensors between them, and which
    tensors are the model's inputs and outputs. ``format`` names the importer."""

    format: str
    nodes: List[Node] = field(default_factory=list)
    tensors: List[Tensor] = field(default_factory=list)
    inputs: List[int] = field(default_factory=list)
    outputs: List[int] = field(default_factory=list)
    source: Any = None

    def add_tensor(self, name: str, shape: Optional[Tuple[Optional[int], ...]], channel_axis: Optional[int] = -1) -> int:
        self.tensors.append(Tensor(name, None if shape is None else tuple(shape), channel_axis))
        return len(self.tensors) - 1

    def add_node(self, node: Node) -> Node:
        if node.op not in OPS:
            raise ValueError(f"node {node.name!r}: unknown op kind {node.op!r}")
        index = len(self.nodes)
        for t in node.inputs:
            self.tensors[t].consumers.append(index)
        for t in node.outputs:
            self.tensors[t].producer = index
        self.nodes.append(node)
        return node

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r}")

    def summary(self) -> str:
        """One line per node: name, kind, op, output shapes."""
        lines = []
        for node in self.nodes:
            shapes = ", ".join(str(self.tensors[t].shape) for t in node.outputs)
            lines.append(f"{node.name:40s} {node.kind:24s} {node.op:12s} {shapes}")
        return "\n".join(lines)
