"""A small Keras (.keras file) → ONNX converter for the benchmark's CNNs.

Works on swiftprune's neutral graph of the .keras file (no Keras import), for
the ops of ResNet / MobileNet / DenseNet / Inception / Xception / EfficientNet /
VGG-style models: Conv2D (any stride, dilation, padding, groups), DepthwiseConv2D,
SeparableConv2D, BatchNormalization, ReLU / ReLU6 / Activation (relu, relu6,
sigmoid, swish/silu, hard_sigmoid, hard_swish, linear, softmax), Add, Multiply,
Concatenate (channels), Rescaling, Normalization, ZeroPadding2D, Cropping2D,
Max/AveragePooling2D, GlobalAverage/MaxPooling2D (keepdims or not), Reshape
between (C,) and (1, 1, C), Flatten, Dense, Dropout. NHWC Keras tensors become
NCHW ONNX tensors; the ONNX model's input is NCHW. Anything else raises
NotImplementedError.
"""
from __future__ import annotations

import numpy as np


def _pads(n, k, s, d, padding):
    if padding == "valid":
        return 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


KERNEL_LAYERS = ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D")


def _activation(nodes, const, act, source, target):
    """Keras's activation ``act`` from ``source`` to ``target`` as ONNX nodes."""
    from onnx import helper
    if act in ("swish", "silu"):
        gate = target + "_gate"
        nodes.append(helper.make_node("Sigmoid", [source], [gate]))
        nodes.append(helper.make_node("Mul", [source, gate], [target]))
    elif act == "relu6":
        nodes.append(helper.make_node("Clip", [source, const(np.array(0.0), "lo"), const(np.array(6.0), "hi")],
                                      [target]))
    elif act == "hard_sigmoid":   # Keras 3: relu6(x + 3) / 6
        nodes.append(helper.make_node("HardSigmoid", [source], [target], alpha=1.0 / 6.0, beta=0.5))
    elif act in ("hard_swish", "hard_silu"):
        nodes.append(helper.make_node("HardSwish", [source], [target]))
    elif act in ("relu", "softmax", "linear", "sigmoid", "tanh"):
        nodes.append(helper.make_node({"relu": "Relu", "softmax": "Softmax", "linear": "Identity",
                                       "sigmoid": "Sigmoid", "tanh": "Tanh"}[act], [source], [target]))
    else:
        raise NotImplementedError(f"keras_to_onnx: activation {act!r}")


def convert(path: str, opset: int = 17):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from swiftprune.graph import load_graph

    graph = load_graph(path)
    nodes, inits = [], []
    name = {t: f"t{t}" for t in range(len(graph.tensors))}

    def const(value, label):
        key = f"{label}_{len(inits)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), key))
        return key

    def const64(value, label):
        key = f"{label}_{len(inits)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.int64), key))
        return key

    for node in graph.nodes:
        cls = node.kind
        cfg = node.source["layer"]["config"] if isinstance(node.source, dict) and "layer" in node.source else {}
        ins = [name[t] for t in node.inputs]
        outs = [name[t] for t in node.outputs]
        shape = graph.tensors[node.inputs[0]].shape if node.inputs else None
        act = cfg.get("activation", "linear")
        mid = outs[0] + "_pre" if act not in ("linear", None) and cls in KERNEL_LAYERS else outs[0]
        if node.op == "input":
            continue
        if cls in ("Conv2D", "DepthwiseConv2D"):
            k = node.params["kernel"].value
            if cls == "Conv2D":
                w, group = k.transpose(3, 2, 0, 1), int(cfg.get("groups", 1))
            else:
                kh, kw, c, m = k.shape
                w, group = k.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None], c
            s, d = cfg["strides"], cfg["dilation_rate"]
            ph = _pads(shape[1], w.shape[2], s[0], d[0], cfg["padding"])
            pw = _pads(shape[2], w.shape[3], s[1], d[1], cfg["padding"])
            args = [ins[0], const(w, "w")]
            if "bias" in node.params:
                args.append(const(node.params["bias"].value, "b"))
            nodes.append(helper.make_node("Conv", args, [mid], strides=s, dilations=d, group=group,
                                          pads=[ph[0], pw[0], ph[1], pw[1]]))
        elif cls == "SeparableConv2D":
            dk, pk = node.params["depthwise_kernel"].value, node.params["pointwise_kernel"].value
            kh, kw, c, m = dk.shape
            s, d = cfg["strides"], cfg["dilation_rate"]
            ph = _pads(shape[1], kh, s[0], d[0], cfg["padding"])
            pw = _pads(shape[2], kw, s[1], d[1], cfg["padding"])
            depth = outs[0] + "_dw"
            nodes.append(helper.make_node("Conv", [ins[0], const(dk.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None],
                                                                   "w")], [depth], strides=s, dilations=d, group=c,
                                          pads=[ph[0], pw[0], ph[1], pw[1]]))
            args = [depth, const(pk.transpose(3, 2, 0, 1), "w")]
            if "bias" in node.params:
                args.append(const(node.params["bias"].value, "b"))
            nodes.append(helper.make_node("Conv", args, [mid]))
        elif cls == "Dense":
            args = [ins[0], const(node.params["kernel"].value, "w")]
            args.append(const(node.params["bias"].value if "bias" in node.params else
                              np.zeros(node.params["kernel"].value.shape[1]), "b"))
            nodes.append(helper.make_node("Gemm", args, [mid]))
        elif cls == "BatchNormalization":
            p = node.params
            c = p["moving_mean"].value.size
            args = [ins[0], const(p["gamma"].value if "gamma" in p else np.ones(c), "g"),
                    const(p["beta"].value if "beta" in p else np.zeros(c), "b"),
                    const(p["moving_mean"].value, "m"), const(p["moving_variance"].value, "v")]
            nodes.append(helper.make_node("BatchNormalization", args, outs, epsilon=cfg["epsilon"]))
        elif cls == "ReLU":
            if cfg.get("max_value") is not None:
                nodes.append(helper.make_node("Clip", [ins[0], const(np.array(0.0), "lo"),
                                                       const(np.array(cfg["max_value"]), "hi")], outs))
            else:
                nodes.append(helper.make_node("Relu", ins, outs))
        elif cls == "Activation":
            _activation(nodes, const, cfg["activation"], ins[0], outs[0])
            continue
        elif cls in ("Add", "Multiply"):
            if len(ins) == 1:  # keras.ops on a KerasTensor and a Python scalar (x + 3.0, x * (1 / 6))
                scalar = [a for a in node.source["layer"]["inbound_nodes"][0]["args"] if not isinstance(a, dict)]
                if len(scalar) != 1 or not isinstance(scalar[0], (int, float)):
                    raise NotImplementedError(f"keras_to_onnx: {cls} with operands {scalar} ({node.name})")
                ins = ins + [const(np.array(scalar[0]), "s")]
            op = {"Add": "Add", "Multiply": "Mul"}[cls]
            acc = ins[0]
            for k, other in enumerate(ins[1:]):
                target = outs[0] if k == len(ins) - 2 else f"{outs[0]}_{k}"
                nodes.append(helper.make_node(op, [acc, other], [target]))
                acc = target
        elif cls == "Concatenate":
            rank = len(graph.tensors[node.outputs[0]].shape)
            axis = cfg["axis"] % rank
            nodes.append(helper.make_node("Concat", ins, outs, axis=[0, 2, 3, 1][axis] if rank == 4 else axis))
        elif cls == "Rescaling":
            scaled = outs[0] + "_scaled"
            nodes.append(helper.make_node("Mul", [ins[0], const(np.array(cfg["scale"]), "s")], [scaled]))
            nodes.append(helper.make_node("Add", [scaled, const(np.array(cfg["offset"]), "o")], outs))
        elif cls == "Normalization":
            if node.params:        # adapted: mean and variance are weights
                mean, var = (v.value for v in list(node.params.values())[:2])
            else:                  # given to the constructor: in the config
                mean, var = (np.asarray(cfg[k], dtype=np.float32).reshape(1, 1, 1, -1) for k in ("mean", "variance"))
            if cfg.get("invert") or mean.ndim != 4:
                raise NotImplementedError(f"keras_to_onnx: Normalization {cfg} ({node.name})")
            centred = outs[0] + "_centred"
            nodes.append(helper.make_node("Sub", [ins[0], const(mean.transpose(0, 3, 1, 2), "m")], [centred]))
            nodes.append(helper.make_node("Div", [centred, const(np.maximum(np.sqrt(var), 1e-7).transpose(0, 3, 1, 2),
                                                                  "sd")], outs))
        elif cls == "Cropping2D":
            (t, b), (l, r) = cfg["cropping"]
            starts = const64(np.array([t, l]), "starts")
            ends = const64(np.array([shape[1] - b, shape[2] - r]), "ends")
            nodes.append(helper.make_node("Slice", [ins[0], starts, ends, const64(np.array([2, 3]), "axes")], outs))
        elif cls == "Reshape":
            src, dst = list(shape[1:]), list(cfg["target_shape"])
            if len(src) == 1 and dst == [1, 1, src[0]]:
                nodes.append(helper.make_node("Unsqueeze", [ins[0], const64(np.array([2, 3]), "axes")], outs))
            elif len(src) == 3 and src[:2] == [1, 1] and dst == [src[2]]:
                nodes.append(helper.make_node("Flatten", ins, outs, axis=1))
            else:
                raise NotImplementedError(f"keras_to_onnx: Reshape {src} -> {dst} ({node.name})")
        elif cls == "ZeroPadding2D":
            (t, b), (l, r) = cfg["padding"]
            pads = f"pads_{len(inits)}"
            inits.append(helper.make_tensor(pads, TensorProto.INT64, [8], [0, 0, t, l, 0, 0, b, r]))
            nodes.append(helper.make_node("Pad", [ins[0], pads], outs))
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            p, s = cfg["pool_size"], cfg["strides"] or cfg["pool_size"]
            ph, pw = _pads(shape[1], p[0], s[0], 1, cfg["padding"]), _pads(shape[2], p[1], s[1], 1, cfg["padding"])
            nodes.append(helper.make_node("MaxPool" if cls[0] == "M" else "AveragePool", ins, outs, kernel_shape=p,
                                          strides=s, pads=[ph[0], pw[0], ph[1], pw[1]]))
        elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            op = "GlobalAveragePool" if "Average" in cls else "GlobalMaxPool"
            if cfg.get("keepdims"):
                nodes.append(helper.make_node(op, ins, outs))
            else:
                pooled = outs[0] + "_pool"
                nodes.append(helper.make_node(op, ins, [pooled]))
                nodes.append(helper.make_node("Flatten", [pooled], outs, axis=1))
        elif cls in ("Dropout", "NestedOutput"):
            nodes.append(helper.make_node("Identity", ins, outs))
        elif cls == "Flatten":
            # Keras flattens NHWC: transpose back before flattening
            nhwc = outs[0] + "_nhwc"
            nodes.append(helper.make_node("Transpose", ins, [nhwc], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Flatten", [nhwc], outs, axis=1))
        else:
            raise NotImplementedError(f"keras_to_onnx: layer {cls} ({node.name})")
        if mid != outs[0]:
            _activation(nodes, const, act, mid, outs[0])
    x = graph.tensors[graph.inputs[0]].shape
    inputs = [helper.make_tensor_value_info(name[graph.inputs[0]], TensorProto.FLOAT, ["N", x[3], x[1], x[2]])]
    outputs = [helper.make_tensor_value_info(name[t], TensorProto.FLOAT, ["N"] + list(graph.tensors[t].shape[1:]))
               for t in graph.outputs]
    model = helper.make_model(helper.make_graph(nodes, "keras", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
