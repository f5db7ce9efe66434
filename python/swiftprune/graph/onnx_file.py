"""Read an ``.onnx`` model into a :class:`Graph` and write a pruned one back.

Weights come from initializers and ``Constant`` nodes. Shapes come from ONNX
shape inference. Tensors are NCHW: the channel axis is 1 for convolution
tensors and the last axis after MatMul/Gemm. A model input of rank >= 3 takes
its layout from the first op that fixes one on the way from it (a token
sequence ``(batch, tokens, features)`` read by MatMul keeps its features last).
Ops outside the tables below
(and any op whose weights are computed rather than stored) freeze the
channels through them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from .._onnx_model import OnnxFileError, load_onnx_model
from .ir import Graph, Node, Param

__all__ = ["read_onnx", "write_onnx", "OnnxFileError"]


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError('reading .onnx files needs the onnx package: pip install "swiftprune[onnx]"') from error
    return onnx, numpy_helper


PASSTHROUGH = {
    "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
    "Softsign", "Gelu", "Erf", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Resize", "Upsample", "Abs", "Neg", "Exp", "Sqrt", "Mish", "PRelu_scalar", "Cast",
}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean"}
# Ops whose reading of a tensor says where its channels are (ONNX convolution and pooling are NCHW).
CHANNELS_FIRST = {"Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool",
                  "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool"}
CHANNELS_LAST = {"MatMul", "Gemm", "LayerNormalization"}


def _attrs(node) -> Dict[str, Any]:
    onnx, _ = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shape(value_info) -> Optional[tuple]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _readers(nodes) -> Dict[str, list]:
    """tensor name -> the nodes reading it as data (an element-wise op: any input; others: the first),
    built once per graph for :func:`_input_channel_axis`."""
    readers: Dict[str, list] = {}
    for node in nodes:
        for i in node.input[:1] if node.op_type not in ELEMENTWISE else node.input:
            readers.setdefault(i, []).append(node)
    return readers


def _input_channel_axis(name: str, shape: Optional[tuple], readers: Dict[str, list]) -> Optional[int]:
    """Where a model input's channels are: axis 1 (NCHW) or -1 (features last).

    Rank 2 is ``(batch, features)``. For rank >= 3 the first op that fixes a layout, found
    breadth-first through element-wise and activation ops, decides; without one, a rank-3
    input whose axis 1 has no fixed size but whose last axis has one (``[None, None, C]``)
    is a token sequence, anything else NCHW.
    """
    if shape is None or len(shape) < 2:
        return None
    if len(shape) == 2:
        return 1
    frontier, seen = [name], {name}
    while frontier:
        tensor = frontier.pop(0)
        for node in readers.get(tensor, []):
            if node.op_type in CHANNELS_FIRST:
                return 1
            if node.op_type == "LayerNormalization":
                axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
                if axis % len(shape) == len(shape) - 1:
                    return -1
            elif node.op_type in CHANNELS_LAST:
                return -1
            if node.op_type in PASSTHROUGH or node.op_type in ELEMENTWISE:
                fresh = [o for o in node.output if o and o not in seen]
                seen.update(fresh)
                frontier.extend(fresh)
    return -1 if len(shape) == 3 and shape[1] is None and shape[2] is not None else 1


def read_onnx(model: Any) -> Graph:
    """Read an ``.onnx`` path (or an ``onnx.ModelProto``) into a :class:`Graph`."""
    onnx, numpy_helper = _onnx()
    proto = load_onnx_model(model, onnx)
    path = "<ModelProto>" if proto is model else str(model)
    if not len(proto.graph.node):
        raise OnnxFileError(f"{path}: the ONNX graph has no nodes")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception as error:
        raise OnnxFileError(f"{path}: ONNX shape inference failed ({error})") from None
    g = inferred.graph
    weights: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            value = _attrs(node).get("value")
            if value is not None:
                weights[node.output[0]] = numpy_helper.to_array(value)
    shapes: Dict[str, Optional[tuple]] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = _shape(vi)

    graph = Graph("onnx")
    graph.source = {"proto": proto, "path": path}
    ids: Dict[str, int] = {}

    def tensor(name: str, axis: Optional[int]) -> int:
        if name not in ids:
            ids[name] = graph.add_tensor(name, shapes.get(name), axis)
        return ids[name]

    readers = _readers(g.node)
    for vi in g.input:
        if vi.name in weights:
            continue
        shape = shapes.get(vi.name)
        t = tensor(vi.name, _input_channel_axis(vi.name, shape, readers))
        graph.inputs.append(t)
        graph.add_node(Node(vi.name, "input", "Input", [], [t]))

    for index, onode in enumerate(g.node):
        if onode.op_type == "Constant":
            continue
        name = onode.name or f"{onode.op_type}_{index}"
        attrs = _attrs(onode)
        data = [i for i in onode.input if i and i not in weights]
        consts = {i: weights[i] for i in onode.input if i in weights}
        in_axes = [graph.tensors[ids[i]].channel_axis if i in ids else None for i in data]
        axis_in = in_axes[0] if in_axes else None
        op, kind = onode.op_type, onode.op_type
        node = Node(name, "unknown", kind, [], [], source={"node": onode, "weights": consts}, attrs={"onnx_index": index})
        out_axis = axis_in
        if op in ("Conv", "ConvTranspose") and len(onode.input) >= 2 and onode.input[1] in weights and len(data) == 1:
            w = weights[onode.input[1]]
            group = int(attrs.get("group", 1))
            in_shape = shapes.get(data[0])
            c_in = None if in_shape is None or len(in_shape) < 2 else in_shape[1]
            params = {"kernel": Param("kernel", w, "weight")}
            if len(onode.input) > 2 and onode.input[2] in weights:
                params["bias"] = Param("bias", weights[onode.input[2]], "bias")
            node.params = params
            node.attrs["inputs"] = {"kernel": onode.input[1], "bias": onode.input[2] if len(onode.input) > 2 else None}
            if op == "Conv" and group > 1 and c_in == group and w.shape[1] == 1:
                node.op = "depthwise"
                node.attrs["multiplier"] = w.shape[0] // group
                node.attrs["bind"] = [("kernel", 0, "out"), ("bias", 0, "out")]
            elif op == "Conv":
                node.op, node.attrs["groups"] = "conv", group
                node.attrs["bind"] = [("kernel", 0, "out"), ("kernel", 1, "in_local"), ("bias", 0, "out")]
            else:
                node.op, node.attrs["groups"], node.attrs["macs_at"] = "conv", group, "input"
                node.attrs["bind"] = [("kernel", 1, "out_local"), ("kernel", 0, "in"), ("bias", 0, "out")]
            out_axis = 1
        elif op == "Gemm" and len(onode.input) >= 2 and onode.input[1] in weights and not attrs.get("transA", 0):
            w = weights[onode.input[1]]
            node.params = {"kernel": Param("kernel", w, "weight")}
            node.attrs["inputs"] = {"kernel": onode.input[1], "bias": None}
            t_b = int(attrs.get("transB", 0))
            node.attrs["bind"] = [("kernel", 0 if t_b else 1, "out"), ("kernel", 1 if t_b else 0, "in")]
            if len(onode.input) > 2 and onode.input[2] in weights:
                bias = weights[onode.input[2]]
                if bias.ndim == 1 and bias.size == w.shape[0 if t_b else 1]:
                    node.params["bias"] = Param("bias", bias, "bias")
                    node.attrs["inputs"]["bias"] = onode.input[2]
                    node.attrs["bind"].append(("bias", 0, "out"))
                elif bias.size != 1:
                    node.attrs["reason"] = "Gemm bias that is not per output"
            node.op = "dense" if "reason" not in node.attrs else "unknown"
            out_axis = -1
        elif op == "MatMul" and len(onode.input) == 2 and onode.input[1] in weights and weights[onode.input[1]].ndim == 2:
            node.params = {"kernel": Param("kernel", weights[onode.input[1]], "weight")}
            node.attrs["inputs"] = {"kernel": onode.input[1]}
            node.attrs["bind"] = [("kernel", 1, "out"), ("kernel", 0, "in")]
            node.op, out_axis = "dense", -1
            if axis_in is not None and shapes.get(data[0]) is not None and \
                    axis_in % len(shapes[data[0]]) != len(shapes[data[0]]) - 1:
                node.op, node.attrs["reason"] = "unknown", "MatMul over a non-channel axis"
        elif op == "BatchNormalization" and all(i in weights for i in onode.input[1:5]):
            names = ["gamma", "beta", "mean", "var"]
            node.params = {n: Param(n, weights[i], r) for n, i, r in
                           zip(names, onode.input[1:5], ["gamma", "bias", "stat", "stat"])}
            node.attrs["inputs"] = dict(zip(names, onode.input[1:5]))
            node.attrs["bind"] = [(n, 0, "out") for n in names]
            node.op = "norm"
        elif op == "LayerNormalization" and onode.input[1] in weights:
            rank = len(shapes.get(data[0]) or ())
            ax = int(attrs.get("axis", -1))
            if rank and axis_in is not None and ax % rank == rank - 1 and axis_in % rank == rank - 1:
                names = ["gamma"] + (["beta"] if len(onode.input) > 2 and onode.input[2] in weights else [])
                node.params = {n: Param(n, weights[i], r) for n, i, r in zip(names, onode.input[1:], ["gamma", "bias"])}
                node.attrs["inputs"] = dict(zip(names, onode.input[1:]))
                node.attrs["bind"] = [(n, 0, "out") for n in names]
                node.op = "layernorm"
        elif op in ELEMENTWISE:
            node.op = "elementwise"
            out_shape = shapes.get(onode.output[0])
            for i, value in consts.items():
                if value.size == 1:
                    continue
                if out_shape is None or out_axis is None:
                    node.op, node.attrs["reason"] = "unknown", f"{op} with a constant of unknown layout"
                    break
                rank, cax = len(out_shape), out_axis % len(out_shape)
                axis = cax - (rank - value.ndim)
                others = [d for k, d in enumerate(value.shape) if k != axis]
                if axis < 0 or any(d != 1 for d in others):
                    node.op, node.attrs["reason"] = "unknown", f"{op} with a constant that is not per channel"
                    break
                key = f"const{len(node.params)}"
                node.params[key] = Param(key, value, "bias")
                node.attrs.setdefault("inputs", {})[key] = i
                node.attrs.setdefault("bind", []).append((key, axis, "out"))
        elif op == "Concat":
            node.op, node.attrs["axis"] = "concat", int(attrs.get("axis", 1))
        elif op == "Flatten" and int(attrs.get("axis", 1)) == 1:
            node.op, out_axis = "flatten", 1
        elif op == "Reshape" and len(onode.input) == 2 and onode.input[1] in weights:
            node.op = "reshape"
            node.attrs["shape_input"] = onode.input[1]
            out_shape = shapes.get(onode.output[0])
            out_axis = 1 if out_shape is not None and len(out_shape) >= 2 else None
        elif op in ("Squeeze", "Unsqueeze") and axis_in is not None:
            node.op = "reshape"
            out_shape = shapes.get(onode.output[0])
            out_axis = 1 if out_shape is not None and len(out_shape) >= 2 else None
        elif op == "Pad":
            pads = consts.get(onode.input[1]) if len(onode.input) > 1 else attrs.get("pads")
            rank = len(shapes.get(data[0]) or ())
            if pads is not None and rank and axis_in is not None and len(onode.input) <= 3:
                pads = np.asarray(pads).reshape(2, -1)
                if pads.shape[1] == rank and not pads[:, axis_in % rank].any():
                    node.op = "passthrough"
        elif op == "Slice" and axis_in is not None and len(onode.input) >= 4 and onode.input[3] in weights:
            # cropping: a slice over other axes keeps every channel
            rank = len(shapes.get(data[0]) or ())
            axes = [int(a) % rank for a in np.asarray(weights[onode.input[3]]).ravel()] if rank else None
            if axes is not None and axis_in % rank not in axes:
                node.op = "passthrough"
        elif op in ("ReduceMean", "ReduceMax") and axis_in is not None:
            axes = attrs.get("axes")
            if axes is None and len(onode.input) > 1 and onode.input[1] in weights:
                axes = weights[onode.input[1]].tolist()
            rank = len(shapes.get(data[0]) or ())
            if axes is not None and rank and axis_in % rank not in [a % rank for a in axes] and \
                    attrs.get("keepdims", 1):
                node.op = "passthrough"
        elif op == "Transpose" and axis_in is not None and attrs.get("perm") is not None:
            # channels move to wherever the permutation puts them
            node.op = "passthrough"
            out_axis = list(attrs["perm"]).index(axis_in % len(attrs["perm"]))
        elif op in PASSTHROUGH and axis_in is not None:
            node.op = "passthrough"
        if node.op == "unknown":
            node.attrs.setdefault("reason", f"unsupported ONNX op {op}")
        node.inputs = [tensor(i, axis_in) for i in data]
        for o in onode.output:
            if not o:
                continue
            shape = shapes.get(o)
            axis = out_axis
            if axis is not None and shape is not None and len(shape) and axis % len(shape) == len(shape) - 1:
                axis = -1
            if axis is not None and shape is not None and len(shape) < 2:
                axis = None
            node.outputs.append(tensor(o, axis))
        graph.add_node(node)
    graph.outputs = [ids[o.name] for o in g.output if o.name in ids]
    return graph


def write_onnx(graph: Graph, surgery, path: Optional[str]):
    """Write the pruned model (atomically when ``path`` is given); returns the ModelProto."""
    onnx, numpy_helper = _onnx()
    proto = type(graph.source["proto"])()
    proto.CopyFrom(graph.source["proto"])
    g = proto.graph
    replace: Dict[str, np.ndarray] = {}
    for index, params in surgery.params.items():
        node = graph.nodes[index]
        for name, value in params.items():
            replace[node.attrs["inputs"][name]] = value
    for index, node in enumerate(graph.nodes):
        if node.op == "reshape" and "shape_input" in node.attrs:
            out = node.outputs[0]
            new, old = surgery.new_shape(graph, out), graph.tensors[out].shape
            if new != old:
                original = numpy_helper.to_array(_find_constant(g, node.attrs["shape_input"]))
                target = original.copy()
                for k, (a, b) in enumerate(zip(old, new)):
                    if a != b and target[k] not in (-1, 0):
                        target[k] = b
                replace[node.attrs["shape_input"]] = target
    for node in graph.nodes:
        if node.op == "depthwise" and surgery.tensor_keep[node.inputs[0]] is not None:
            for a in g.node[node.attrs["onnx_index"]].attribute:
                if a.name == "group":   # a depthwise conv has one group per input channel
                    a.i = int(surgery.tensor_keep[node.inputs[0]].sum())
    for init in g.initializer:
        if init.name in replace:
            init.CopyFrom(numpy_helper.from_array(np.asarray(replace[init.name], dtype=numpy_helper.to_array(init).dtype),
                                                  init.name))
    for n in g.node:
        if n.op_type == "Constant" and n.output and n.output[0] in replace:
            for a in n.attribute:
                if a.name == "value":
                    old = numpy_helper.to_array(a.t)
                    a.t.CopyFrom(numpy_helper.from_array(np.asarray(replace[n.output[0]], dtype=old.dtype)))
    # Intermediate shapes changed: let runtimes infer them again.
    del g.value_info[:]
    if path is not None:
        from .._atomic import atomic_file
        with atomic_file(path) as handle:   # beside the destination, fsynced, renamed over it
            handle.write(proto.SerializeToString())
    return proto


def _find_constant(g, name: str):
    for init in g.initializer:
        if init.name == name:
            return init
    for n in g.node:
        if n.op_type == "Constant" and n.output and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    return a.t
    raise KeyError(name)
