"""A small Keras (.keras file) → ONNX converter for the benchmark's CNNs.

Works on swiftprune's neutral graph of the .keras file (no Keras import), for
the ops of ResNet50 / MobileNetV2 / VGG-style models: Conv2D (any stride,
dilation, padding), DepthwiseConv2D, BatchNormalization, ReLU / ReLU6 /
Activation, Add, ZeroPadding2D, Max/AveragePooling2D, GlobalAveragePooling2D,
Flatten, Dense, Dropout. NHWC Keras tensors become NCHW ONNX tensors; the
ONNX model's input is NCHW. Anything else raises NotImplementedError.
"""
from __future__ import annotations

import numpy as np


def _pads(n, k, s, d, padding):
    if padding == "valid":
        return 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


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

    for node in graph.nodes:
        cls = node.kind
        cfg = node.source["layer"]["config"] if isinstance(node.source, dict) and "layer" in node.source else {}
        ins = [name[t] for t in node.inputs]
        outs = [name[t] for t in node.outputs]
        shape = graph.tensors[node.inputs[0]].shape if node.inputs else None
        act = cfg.get("activation", "linear")
        mid = outs[0] + "_pre" if act not in ("linear", None) and cls in ("Conv2D", "Dense", "DepthwiseConv2D") \
            else outs[0]
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
            act = cfg["activation"]
            mid = outs[0]
            nodes.append(helper.make_node({"relu": "Relu", "softmax": "Softmax", "linear": "Identity",
                                           "sigmoid": "Sigmoid"}[act], ins, outs))
            continue
        elif cls == "Add":
            nodes.append(helper.make_node("Add", ins, outs))
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
        elif cls == "GlobalAveragePooling2D":
            pooled = outs[0] + "_pool"
            nodes.append(helper.make_node("GlobalAveragePool", ins, [pooled]))
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
            nodes.append(helper.make_node({"relu": "Relu", "softmax": "Softmax"}[act], [mid], outs))
    x = graph.tensors[graph.inputs[0]].shape
    inputs = [helper.make_tensor_value_info(name[graph.inputs[0]], TensorProto.FLOAT, ["N", x[3], x[1], x[2]])]
    outputs = [helper.make_tensor_value_info(name[t], TensorProto.FLOAT, ["N"] + list(graph.tensors[t].shape[1:]))
               for t in graph.outputs]
    model = helper.make_model(helper.make_graph(nodes, "keras", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
