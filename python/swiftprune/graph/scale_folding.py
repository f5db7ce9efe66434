"""Where a per-input-channel scale can be folded: the graph side of AWQ and SmoothQuant.

AWQ and SmoothQuant multiply input channel ``c`` of a linear layer's weight
by ``s_c``; the model computes the same function only if whatever produces
that layer's input divides channel ``c`` by ``s_c``. This module finds, for
the consumer layers a recipe stage scales, the op that can absorb ``1/s``
(:class:`FoldSite`) or says why none can:

- a LayerNorm or BatchNorm (gain and bias divided by ``s``);
- a Dense / MatMul / Gemm / Conv with no activation (its output channels:
  kernel slices and bias divided by ``s``);
- in ONNX, per-channel ``Add``/``Sub``/``Mul``/``Div`` constants on the way
  (a decomposed LayerNorm, a ``MatMul`` + ``Add`` bias): an ``Add``'s
  constant is divided and the trace continues to its input, a ``Mul``'s
  constant is divided (``Div``: its divisor multiplied) and the trace stops.

Every layer reading the same tensor shares one scale (AWQ's q/k/v after one
LayerNorm), so a site groups all of them; if anything else reads that tensor
(a residual ``Add``, a layer the stage does not scale) or sits between it and
the producer (an activation, a reshape), the site is refused with a reason,
and the caller leaves those layers unscaled: a file whose function changed is
never written. Pure graph logic: no arrays are changed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from .ir import Graph, Node

__all__ = ["Adjustment", "FoldSite", "find_fold_sites", "param_tensor"]

# Keras layers whose kernel runs the other way (their "in" is not the input channel axis).
_TRANSPOSED = ("ConvTranspose", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")


@dataclass(frozen=True)
class Adjustment:
    """One weight tensor that absorbs the scale: multiplied by ``s ** power``
    along ``axis`` (``power`` -1 for gains, biases and output channels; +1
    for a ``Div`` node's divisor)."""

    tensor: str
    axis: int
    power: int = -1


@dataclass
class FoldSite:
    """Consumer layers reading one tensor, and the ops before it that absorb ``1/s``.

    ``consumers`` maps each consumer's weight tensor name to the kernel axis
    of its input channels; ``channels`` is their count; ``producer`` says
    which op absorbs the scale (for reports)."""

    tensor: str
    channels: int
    consumers: Dict[str, int] = field(default_factory=dict)
    adjustments: List[Adjustment] = field(default_factory=list)
    producer: str = ""
    inserted: bool = False  # 1/s goes into a Mul inserted before the consumers (no adjustments)


def param_tensor(graph: Graph, node: Node, param: str, weights: Iterable[str]) -> Optional[str]:
    """The weight tensor name of ``node``'s parameter ``param``: an ONNX
    initializer name, or a Keras variable path ``"<layer>/<param>"``; None
    when the model's weights hold no such tensor."""
    names = weights if isinstance(weights, (set, frozenset, dict)) else set(weights)
    if graph.format == "onnx":
        name = node.attrs.get("inputs", {}).get(param)
    else:
        name = f"{node.name}/{param}"
    return name if name is not None and name in names else None


def _bound_axis(node: Node, param: str, roles: Tuple[str, ...]) -> Optional[int]:
    for bound, axis, role in node.attrs.get("bind", []):
        if bound == param and role in roles:
            return axis
    return None


def _initializer_uses(graph: Graph) -> Dict[str, int]:
    """How many ONNX node inputs read each name (a shared initializer cannot be changed for one node)."""
    uses: Dict[str, int] = {}
    proto = (graph.source or {}).get("proto") if isinstance(graph.source, dict) else None
    if proto is not None:
        for node in proto.graph.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
    return uses


def _consumer_axis(graph: Graph, node: Node) -> Optional[int]:
    """The input-channel axis of a dense/conv node's kernel, or None when it is not one plain map."""
    if node.op == "dense":
        return _bound_axis(node, "kernel", ("in",))
    if node.op == "conv" and node.attrs.get("groups", 1) == 1 and node.kind not in _TRANSPOSED:
        return _bound_axis(node, "kernel", ("in", "in_local"))
    return None


class _Refused(Exception):
    pass


def find_fold_sites(graph: Graph, consumers: Iterable[str], weights: Iterable[str], *,
                    insert: bool = False) -> Tuple[List[FoldSite], Dict[str, str]]:
    """Fold sites for the consumer weight tensors ``consumers`` (the layers a stage scales).

    Parameters
    ----------
    graph : Graph
        The model (:func:`~swiftprune.graph.load_graph`).
    consumers : iterable of str
        Weight tensor names of the layers to scale.
    weights : iterable of str
        Every weight tensor name of the model (as ``compress()`` sees them).
    insert : bool, default False
        Where no op can absorb ``1/s``, return an inserted site (a ``Mul``
        before the consumers; ONNX Dense/MatMul/Gemm consumers only) instead
        of refusing it.

    Returns
    -------
    (list of FoldSite, dict of str to str)
        The sites, in graph order, and for every consumer that is in none of
        them the reason (e.g. ``"its input also feeds Add 'add' (a residual
        connection)"``).
    """
    names = set(weights)
    wanted = set(consumers)
    reasons: Dict[str, str] = {}
    uses = _initializer_uses(graph)
    by_input: Dict[int, Dict[str, Tuple[int, int]]] = {}  # tensor -> consumer name -> (node index, kernel axis)
    found = set()
    for index, node in enumerate(graph.nodes):
        if node.op not in ("dense", "conv") or "kernel" not in node.params:
            continue
        kernel = param_tensor(graph, node, "kernel", names)
        if kernel is None or kernel not in wanted:
            continue
        found.add(kernel)
        axis = _consumer_axis(graph, node)
        if axis is None or len(node.inputs) != 1:
            reasons[kernel] = f"{node.kind} {node.name!r} is not one linear map over its input channels " \
                              "(grouped, transposed or several inputs)"
            continue
        by_input.setdefault(node.inputs[0], {})[kernel] = (index, axis)
    for name in wanted - found:
        reasons[name] = "the model graph shows no Dense/MatMul/Gemm/Conv layer with this weight"
    sites: List[FoldSite] = []
    for tensor, members in sorted(by_input.items(), key=lambda item: min(i for i, _ in item[1].values())):
        try:
            site = _site(graph, tensor, members, names, uses)
        except _Refused as why:
            site = _inserted_site(graph, tensor, members, str(why)) if insert else None
            if site is None:
                for name in members:
                    reasons[name] = str(why) + (_insert_refusal(graph, members) if insert else "")
                continue
        sites.append(site)
    return sites, reasons


def _insertable(graph: Graph, members: Dict[str, Tuple[int, int]]) -> bool:
    return graph.format == "onnx" and all(graph.nodes[index].op == "dense" for index, _ in members.values())


def _insert_refusal(graph: Graph, members: Dict[str, Tuple[int, int]]) -> str:
    if graph.format != "onnx":
        return "; inserting a Mul is supported for ONNX models only (a Keras model's graph is not rebuilt)"
    return "; inserting a Mul needs Dense/MatMul/Gemm consumers (input channels on the last axis)"


def _inserted_site(graph: Graph, tensor: int, members: Dict[str, Tuple[int, int]], why: str) -> Optional[FoldSite]:
    """A site whose ``1/s`` goes into a ``Mul`` inserted on the edges into ``members`` (None: not possible)."""
    if not _insertable(graph, members):
        return None
    t = graph.tensors[tensor]
    counts = {int(graph.nodes[index].params["kernel"].value.shape[axis]) for index, axis in members.values()}
    if len(counts) != 1:
        return None
    return FoldSite(t.name, counts.pop(), {name: axis for name, (_, axis) in members.items()},
                    producer=f"a Mul inserted before them (no op can absorb it: {why})", inserted=True)


def _describe(node: Node) -> str:
    return f"{node.kind} {node.name!r}"


def _site(graph: Graph, tensor: int, members: Dict[str, Tuple[int, int]], names: set,
          uses: Dict[str, int]) -> FoldSite:
    t = graph.tensors[tensor]
    member_nodes = {index for index, _ in members.values()}
    others = [graph.nodes[c] for c in t.consumers if c not in member_nodes]
    if others:
        what = _describe(others[0])
        if others[0].op == "elementwise":
            what += " (a residual connection or elementwise op)"
        elif others[0].op in ("dense", "conv"):
            what += " (a layer this stage does not scale, so it cannot share the scale)"
        raise _Refused(f"its input {t.name!r} also feeds {what}")
    if tensor in graph.outputs:
        raise _Refused(f"its input {t.name!r} is also a model output")
    channels = None
    for name, (index, axis) in members.items():
        count = graph.nodes[index].params["kernel"].value.shape[axis]
        if channels is not None and count != channels:
            raise _Refused(f"the layers reading {t.name!r} disagree on its channel count")
        channels = int(count)
    site = FoldSite(t.name, int(channels or 0), {name: axis for name, (_, axis) in members.items()})

    def adjust(node: Node, param: str, axis: Optional[int], power: int = -1) -> None:
        name = param_tensor(graph, node, param, names)
        if name is None or axis is None:
            raise _Refused(f"{_describe(node)} holds its {param} outside the model's weights")
        value = node.params[param].value
        if value.ndim == 0 or value.shape[axis] != channels:
            raise _Refused(f"{_describe(node)}'s {param} has shape {value.shape}, not {channels} channels")
        if uses.get(name, 1) > 1:
            raise _Refused(f"{_describe(node)}'s {param} {name!r} is shared with other nodes")
        site.adjustments.append(Adjustment(name, axis % value.ndim, power))

    current = tensor
    passed: List[str] = []  # per-channel Add/Sub constants on the way, which absorbed the scale too
    # Which consumer channel each element of the current tensor carries (broadcast, right-aligned;
    # size-1 axes carry the same scale everywhere): a plain arange(channels) until a Reshape/Transpose.
    layout = np.arange(int(channels or 0))

    def done(node: Node) -> FoldSite:
        site.producer = " after ".join(passed + [_describe(node)])
        return site

    while True:
        producer = graph.tensors[current].producer
        if producer is None or graph.nodes[producer].op == "input":
            raise _Refused(f"its input {graph.tensors[current].name!r} is a model input (no op before it can "
                           "absorb the scale)")
        node = graph.nodes[producer]
        used = [o for o in node.outputs if o != current and (graph.tensors[o].consumers or o in graph.outputs)]
        if used:  # (a LayerNormalization's unused Mean / InvStdDev outputs do not count)
            raise _Refused(f"{_describe(node)} has several outputs in use")
        if graph.format == "onnx" and node.kind in ("Reshape", "Transpose", "MatMul") and not node.params:
            upstream, layout = _trace_layout(graph, node, current, layout)
            if len(graph.tensors[upstream].consumers) != 1 or upstream in graph.outputs:
                raise _Refused(f"{graph.tensors[upstream].name!r} before {_describe(node)} feeds other ops too")
            current = upstream
            continue
        if not _plain(layout):
            raise _Refused(f"the Reshape/Transpose chain before {_describe(node)} moves the channels (their order "
                           "at that op is not the layer's)")
        layout = np.arange(layout.size)
        if node.op in ("layernorm", "norm"):
            gains = [p for p, param in node.params.items() if param.role == "gamma"]
            if not gains:
                raise _Refused(f"{_describe(node)} has no scale (gamma) to absorb it")
            for p, param in node.params.items():
                if param.role in ("gamma", "bias"):
                    adjust(node, p, _bound_axis(node, p, ("out",)))
            return done(node)
        if node.op in ("dense", "conv") and "kernel" in node.params:
            layer = node.source.get("layer") if isinstance(node.source, dict) else None
            activation = (layer or {}).get("config", {}).get("activation", "linear")
            if activation not in (None, "linear"):
                raise _Refused(f"{_describe(node)} ends in a {activation!r} activation")
            if node.kind in _TRANSPOSED:
                raise _Refused(f"{_describe(node)} is a transposed convolution")
            onnx_node = node.source.get("node") if isinstance(node.source, dict) else None
            if onnx_node is not None and len(onnx_node.input) > 2 and onnx_node.input[2] and "bias" not in node.params:
                raise _Refused(f"{_describe(node)} has a bias that is not one value per output channel")
            adjust(node, "kernel", _bound_axis(node, "kernel", ("out", "out_local")))
            if "bias" in node.params:
                adjust(node, "bias", 0)
            return done(node)
        if node.op == "elementwise" and graph.format == "onnx" and len(node.inputs) == 1:
            source = node.source["node"]
            data_first = source.input[0] not in node.source["weights"]
            consts = [p for p in node.params]
            scalars = [n for n, v in node.source["weights"].items() if v.size == 1]
            if node.kind in ("Add", "Sub"):
                if scalars:
                    raise _Refused(f"{_describe(node)} adds a scalar constant (a scaled input needs it per channel)")
                for p in consts:
                    adjust(node, p, _bound_axis(node, p, ("out",)))
            elif node.kind in ("Mul", "Div") and consts:
                if node.kind == "Div" and not data_first:
                    raise _Refused(f"{_describe(node)} divides by the activation")
                for p in consts:
                    adjust(node, p, _bound_axis(node, p, ("out",)), +1 if node.kind == "Div" else -1)
                return done(node)
            elif node.kind not in ("Mul", "Div"):
                raise _Refused(f"{_describe(node)} is between the layer and the op that could absorb the scale")
            # Add/Sub constants (and a scalar Mul/Div) commute with the scale: go on to the input.
            upstream = node.inputs[0]
            if len(graph.tensors[upstream].consumers) != 1 or upstream in graph.outputs:
                raise _Refused(f"{graph.tensors[upstream].name!r} before {_describe(node)} feeds other ops too")
            if consts:
                passed.append(_describe(node))
            current = upstream
            continue
        if node.op == "elementwise":
            raise _Refused(f"{_describe(node)} (a residual connection or elementwise op) produces its input")
        if node.op == "passthrough":
            raise _Refused(f"{_describe(node)} (an activation or other nonlinear/reshaping op) is between the "
                           "layer and the op that could absorb the scale")
        raise _Refused(f"{_describe(node)} produces its input and cannot absorb a per-channel scale")


def _plain(layout: np.ndarray) -> bool:
    """Whether channel ``c`` sits at position ``c`` of the last axis (leading axes of size 1)."""
    return all(d == 1 for d in layout.shape[:-1]) and np.array_equal(layout.reshape(-1), np.arange(layout.size))


def _trace_layout(graph: Graph, node: Node, output: int, layout: np.ndarray) -> Tuple[int, np.ndarray]:
    """The input of a Reshape / Transpose / activation MatMul that carries the scaled channels of its
    ``output``, and their layout there; refuses when the op mixes them (or shapes are unknown)."""
    shape = graph.tensors[output].shape
    if shape is None or len(shape) < layout.ndim:
        raise _Refused(f"{_describe(node)}: the shape of {graph.tensors[output].name!r} is unknown")
    full = layout.reshape((1,) * (len(shape) - layout.ndim) + layout.shape)
    if node.kind == "Transpose":
        perm = node.source["node"].attribute
        perm = next((list(a.ints) for a in perm if a.name == "perm"), list(range(len(shape)))[::-1])
        if len(perm) != len(shape):
            raise _Refused(f"{_describe(node)} has a permutation of another rank")
        return node.inputs[0], np.transpose(full, np.argsort(perm))
    if node.kind == "MatMul":
        # probs @ v: every output column n is a mix of v's column n over the rows (keys), so a scale per
        # (batch..., column) of the output is the same scale on v, when it is constant over the rows.
        if len(node.inputs) != 2 or len(shape) < 2 or full.shape[-2] != 1:
            raise _Refused(f"{_describe(node)} mixes the channels")
        source = graph.tensors[node.inputs[1]].shape
        if source is None or len(source) != len(shape):
            raise _Refused(f"{_describe(node)}: the shape of its second input is unknown")
        return node.inputs[1], full
    # Reshape: only a split / merge of the trailing axes that carry the channels (row-major order keeps
    # their position inside the trailing block).
    source = graph.tensors[node.inputs[0]].shape if node.inputs else None
    varying = [k for k, d in enumerate(full.shape) if d != 1]
    first = varying[0] if varying else len(shape) - 1
    block = shape[first:]
    if source is None or any(d is None for d in block) or tuple(full.shape[first:]) != tuple(block):
        raise _Refused(f"{_describe(node)} reshapes axes whose sizes are unknown or that the scale does not span")
    size, k = int(np.prod(block)), len(source)
    product = 1
    while product < size and k > 0 and source[k - 1] is not None:
        k -= 1
        product *= int(source[k])
    if product != size:
        raise _Refused(f"{_describe(node)} does not keep the channels in a trailing block")
    trailing = tuple(int(d) for d in source[k:])
    return node.inputs[0], full.reshape(full.shape[first:]).reshape((1,) * k + trailing)
