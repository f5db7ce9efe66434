"""Which tensor is a layer's bias: for bias correction of quantized layers."""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

from .ir import Graph
from .scale_folding import param_tensor

__all__ = ["layer_biases", "bias_by_name"]


def layer_biases(graph: Graph, weights: Iterable[str]) -> Dict[str, str]:
    """Weight tensor name -> bias tensor name of every Dense/MatMul/Gemm/Conv
    layer of ``graph`` that has one: its own bias, or (ONNX) the per-channel
    constant of an ``Add`` that alone reads a bias-free ``MatMul``'s output."""
    names = set(weights)
    out: Dict[str, str] = {}
    for node in graph.nodes:
        if node.op not in ("dense", "conv") or "kernel" not in node.params:
            continue
        kernel = param_tensor(graph, node, "kernel", names)
        if kernel is None:
            continue
        if "bias" in node.params:
            bias = param_tensor(graph, node, "bias", names)
            if bias is not None:
                out[kernel] = bias
            continue
        if graph.format != "onnx" or len(node.outputs) != 1:
            continue
        consumers = graph.tensors[node.outputs[0]].consumers
        if len(consumers) != 1:
            continue
        add = graph.nodes[consumers[0]]
        if add.op == "elementwise" and add.kind == "Add" and len(add.inputs) == 1 and len(add.params) == 1:
            key = next(iter(add.params))
            bias = param_tensor(graph, add, key, names)
            if bias is not None and add.params[key].value.ndim == 1:
                out[kernel] = bias
    return out


_SUFFIXES: Tuple[Tuple[str, str], ...] = ((".weight", ".bias"), ("/kernel", "/bias"), ("_weight", "_bias"),
                                          ("kernel", "bias"), ("weight", "bias"))


def bias_by_name(weight: str, shapes: Mapping[str, Sequence[int]], out_channels: int) -> Optional[str]:
    """The bias of ``weight`` among tensors named like it (``fc.weight`` ->
    ``fc.bias``, ``dense/kernel`` -> ``dense/bias``) with ``out_channels`` entries, or None."""
    for suffix, replacement in _SUFFIXES:
        if weight.endswith(suffix):
            name = weight[: -len(suffix)] + replacement
            if name in shapes and tuple(shapes[name]) == (out_channels,):
                return name
    return None
