"""Read a Keras 3 ``.keras`` file into a :class:`Graph` and write a pruned one back.

A ``.keras`` file is a zip of ``config.json`` (the layer graph) and
``model.weights.h5`` (one ``vars`` group per layer, named in its ``name``
attribute). Both are read with ``json`` and ``h5py``: Keras is not imported.
Nested Functional/Sequential models called once are inlined; a layer called
more than once (shared weights) is frozen, as is every layer class whose
channel behaviour is not known here.
"""
from __future__ import annotations

import copy
import errno
import io
import json
import os
import re
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .ir import Graph, Node, Param

__all__ = ["read_keras_file", "write_keras_file", "KerasFileError"]


class KerasFileError(ValueError):
    """The file is not a readable Keras 3 ``.keras`` archive."""


def _h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - h5py is in the test extra
        raise ImportError('reading .keras files needs h5py: pip install "swiftprune[h5]"') from error
    return h5py


PASSTHROUGH = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization", "Identity", "ReLU", "ELU", "LeakyReLU", "ThresholdedReLU",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Resizing",
    "StochasticDepth",
    # keras.ops applied to KerasTensors (per element)
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "Swish", "HardSilu", "HardSwish", "Gelu", "Tanh",
    "Abs", "Exp", "Sqrt", "Square", "Negative", "Elu", "Selu", "Softplus", "LeakyRelu",
}
ELEMENTWISE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Divide", "TrueDivide"}
ELEMENTWISE_ACTIVATIONS = {
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "swish", "silu", "hard_swish", "hard_silu", "gelu",
    "tanh", "elu", "selu", "softplus", "softsign", "exponential", "mish", "leaky_relu", "celu", "glu_none",
}
CHANNELS_LAST_KERNELS = ("Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D")
TRANSPOSE_KERNELS = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
NESTED = ("Functional", "Sequential", "Model")
# Layers that multiply each channel by a learned scale (ConvNeXt's LayerScale): class -> the config
# key holding their channel count, rewritten when channels are removed.
CHANNEL_SCALES = {"LayerScale": "projection_dim"}


def _snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class _Reader:
    def __init__(self, config: dict, h5) -> None:
        self.graph = Graph("keras")
        self.h5 = h5
        self.tensor_ids: Dict[Tuple[str, str, int, int], int] = {}
        self.shapes: Dict[Tuple[str, str, int, int], Any] = {}
        self.input_layer_configs: Dict[int, List[dict]] = {}     # tensor id -> InputLayer configs bound to it
        self.graph.source = {"config": config, "input_layers": self.input_layer_configs,
                             "tensor_ids": self.tensor_ids}

    # -- weights ---------------------------------------------------------------------------------------------
    def _layer_groups(self, container: str, layers: List[dict]) -> Dict[str, str]:
        """Layer name -> its h5 group path, for the layers of one (nested) model."""
        base = f"{container}/layers" if container else "layers"
        found: Dict[str, str] = {}
        if base in self.h5:
            for key in self.h5[base]:
                vars_group = self.h5[f"{base}/{key}"].get("vars")
                name = vars_group.attrs.get("name") if vars_group is not None else None
                if isinstance(name, bytes):
                    name = name.decode()
                if name is not None:
                    found[str(name)] = f"{base}/{key}"
        if len(found) < len(layers):  # older files: Keras's own naming, snake_case class name + counter
            used: Dict[str, int] = {}
            for layer in layers:
                key = _snake(layer["class_name"])
                if key in used:
                    used[key] += 1
                    key = f"{key}_{used[key]}"
                else:
                    used[key] = 0
                name = layer.get("config", {}).get("name", layer.get("name"))
                if name not in found and f"{base}/{key}" in self.h5:
                    found[name] = f"{base}/{key}"
        return found

    def _vars(self, path: Optional[str]) -> List[np.ndarray]:
        if path is None or f"{path}/vars" not in self.h5:
            return []
        group = self.h5[f"{path}/vars"]
        keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        return [np.asarray(group[k]) for k in keys]

    # -- tensors ---------------------------------------------------------------------------------------------
    def _collect_shapes(self, scope: str, layers: List[dict]) -> None:
        for layer in layers:
            for call in layer.get("inbound_nodes", []) or []:
                for kt in _keras_tensors(call):
                    history = kt["config"]["keras_history"]
                    self.shapes[(scope, history[0], history[1], history[2])] = kt["config"].get("shape")

    def _tensor(self, scope: str, history, shape=None) -> int:
        key = (scope, history[0], int(history[1]), int(history[2]))
        if key not in self.tensor_ids:
            shape = self.shapes.get(key, shape)
            self.tensor_ids[key] = self.graph.add_tensor(f"{scope}{history[0]}:{history[1]}:{history[2]}",
                                                         None if shape is None else tuple(shape))
        return self.tensor_ids[key]

    # -- models ----------------------------------------------------------------------------------------------
    def functional(self, config: dict, scope: str, h5path: str, bound_inputs: Optional[List[int]]) -> List[int]:
        layers = config["layers"]
        self._collect_shapes(scope, layers)
        groups = self._layer_groups(h5path, layers)
        inputs = _refs(config.get("input_layers", []))
        if bound_inputs is not None:
            if len(bound_inputs) != len(inputs):
                raise KerasFileError(f"nested model {scope!r} takes {len(inputs)} inputs, called with {len(bound_inputs)}")
            for ref, tensor in zip(inputs, bound_inputs):
                self.tensor_ids[(scope, ref[0], int(ref[1]), int(ref[2]))] = tensor
        for layer in layers:
            name = layer.get("name", layer["config"].get("name"))
            if layer["class_name"] == "InputLayer":
                key = (scope, name, 0, 0)
                if key in self.tensor_ids:
                    self.input_layer_configs.setdefault(self.tensor_ids[key], []).append(layer["config"])
                    continue
                shape = layer["config"].get("batch_shape") or layer["config"].get("batch_input_shape")
                t = self._tensor(scope, (name, 0, 0), shape)
                self.input_layer_configs.setdefault(t, []).append(layer["config"])
                self.graph.inputs.append(t)
                self.graph.add_node(Node(scope + name, "input", "InputLayer", [], [t], source=layer))
                continue
            calls = layer.get("inbound_nodes", []) or []
            for call_index, call in enumerate(calls):
                ins = [self._tensor(scope, kt["config"]["keras_history"]) for kt in _keras_tensors(call)]
                outs = [self._tensor(scope, (name, call_index, 0))]
                self._layer(layer, scope, groups.get(name), ins, outs, shared=len(calls) > 1, first=call_index == 0)
        return [self._tensor(scope, ref) for ref in _refs(config.get("output_layers", []))]

    def sequential(self, config: dict, scope: str, h5path: str, bound_inputs: Optional[List[int]]) -> List[int]:
        layers = [l for l in config["layers"]]
        groups = self._layer_groups(h5path, [l for l in layers if l["class_name"] != "InputLayer"])
        current: Optional[int] = None
        if bound_inputs is not None:
            current = bound_inputs[0]
        for position, layer in enumerate(layers):
            name = layer["config"].get("name", layer.get("name"))
            if layer["class_name"] == "InputLayer":
                if current is None:
                    current = self.graph.add_tensor(f"{scope}{name}", tuple(layer["config"]["batch_shape"]))
                    self.graph.inputs.append(current)
                    self.graph.add_node(Node(scope + name, "input", "InputLayer", [], [current], source=layer))
                self.input_layer_configs.setdefault(current, []).append(layer["config"])
                continue
            if current is None:
                shape = config.get("build_input_shape") or layer.get("build_config", {}).get("input_shape")
                if shape is None:
                    raise KerasFileError(f"Sequential model {scope or config.get('name')!r} has no input shape")
                current = self.graph.add_tensor(f"{scope}input", tuple(shape))
                self.graph.inputs.append(current)
                self.graph.add_node(Node(scope + "input", "input", "InputLayer", [], [current], source=None))
            nxt = layers[position + 1] if position + 1 < len(layers) else None
            shape = None if nxt is None else (nxt.get("build_config") or {}).get("input_shape")
            out = self.graph.add_tensor(f"{scope}{name}:0", None if shape is None else tuple(shape))
            self._layer(layer, scope, groups.get(name), [current], [out], shared=False)
            current = out
        return [current]

    def _layer(self, layer: dict, scope: str, h5path: Optional[str], ins: List[int], outs: List[int],
               shared: bool, first: bool = True) -> None:
        cls = layer["class_name"]
        cfg = layer.get("config", {})
        name = scope + cfg.get("name", layer.get("name", cls))
        g = self.graph
        if cls in NESTED and not shared and "layers" in cfg:
            inner = self.sequential if cls == "Sequential" else self.functional
            self.graph.source.setdefault("nested", []).append((layer, list(ins)))
            results = inner(cfg, name + "/", h5path, ins)
            # The nested model's outputs stand for this call's outputs.
            for out, result in zip(outs, results):
                g.add_node(Node(name + "/output", "passthrough", "NestedOutput", [result], [out], source=None))
            return
        values = self._vars(h5path) if first else []
        node = Node(name, "unknown", cls, ins, outs, source={"layer": layer, "h5": h5path})
        if shared:
            node.attrs["reason"] = f"shared layer (called {len(layer.get('inbound_nodes', []))} times)"
        elif cfg.get("data_format") == "channels_first":
            node.attrs["reason"] = "channels_first data format"
        elif cls in CHANNELS_LAST_KERNELS + TRANSPOSE_KERNELS + DEPTHWISE + SEPARABLE + ("Dense",):
            self._kernel_layer(node, cls, cfg, values)
        elif cls == "BatchNormalization" and cfg.get("axis", -1) in (-1, [-1]) or (
                cls == "BatchNormalization" and self._is_last_axis(ins, cfg.get("axis"))):
            roles = (["gamma"] if cfg.get("scale", True) else []) + (["bias"] if cfg.get("center", True) else []) \
                + ["stat", "stat"]
            names = (["gamma"] if cfg.get("scale", True) else []) + (["beta"] if cfg.get("center", True) else []) \
                + ["moving_mean", "moving_variance"]
            self._params(node, values, names, roles, "norm", [(n, 0, "out") for n in names])
        elif cls in CHANNEL_SCALES and len(values) == 1 and values[0].ndim == 1 \
                and isinstance(cfg.get(CHANNEL_SCALES[cls]), int):
            self._params(node, values, ["gamma"], ["gamma"], "norm", [("gamma", 0, "out")])
        elif cls == "LayerNormalization" and self._is_last_axis(ins, cfg.get("axis", -1)):
            names = (["gamma"] if cfg.get("scale", True) else []) + (["beta"] if cfg.get("center", True) else [])
            roles = (["gamma"] if cfg.get("scale", True) else []) + (["bias"] if cfg.get("center", True) else [])
            self._params(node, values, names, roles, "layernorm", [(n, 0, "out") for n in names])
        elif cls in PASSTHROUGH or (cls == "Activation" and cfg.get("activation") in ELEMENTWISE_ACTIVATIONS) \
                or (cls == "Rescaling" and np.ndim(cfg.get("scale", 1)) == 0 and np.ndim(cfg.get("offset", 0)) == 0):
            node.op = "passthrough" if not values else "unknown"
        elif cls in ELEMENTWISE and not values:
            node.op = "elementwise"
        elif cls == "Concatenate":
            node.op = "concat"
            node.attrs["axis"] = cfg.get("axis", -1)
        elif cls == "Flatten" and cfg.get("data_format") != "channels_first":
            node.op = "flatten"
        elif cls == "Reshape":
            node.op = "reshape"
        if node.op == "unknown":
            node.attrs.setdefault("reason", f"unsupported layer {cls}")
            # kept as they are, but counted in the report
            node.params = {f"var{i}": Param(f"var{i}", v, "other") for i, v in enumerate(values)}
            node.attrs.pop("bind", None)
        # Output shapes that no consumer recorded (model outputs, dead ends).
        for out in outs:
            if g.tensors[out].shape is None:
                g.tensors[out].shape = self._infer_shape(node, cls, cfg)
        g.add_node(node)

    def _is_last_axis(self, ins: List[int], axis) -> bool:
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                return False
            axis = axis[0]
        shape = self.graph.tensors[ins[0]].shape if ins else None
        return axis == -1 or (shape is not None and isinstance(axis, int) and axis == len(shape) - 1)

    def _params(self, node: Node, values, names, roles, op: str, bind) -> None:
        if len(values) != len(names):
            node.attrs["reason"] = f"{node.kind}: expected {len(names)} weights, found {len(values)}"
            return
        node.params = {n: Param(n, v, r) for n, v, r in zip(names, values, roles)}
        node.attrs["var_index"] = {n: i for i, n in enumerate(names)}
        node.attrs["bind"] = bind
        node.op = op

    def _kernel_layer(self, node: Node, cls: str, cfg: dict, values) -> None:
        bias = ["bias"] if cfg.get("use_bias", True) else []
        groups = int(cfg.get("groups", 1))
        if cls in CHANNELS_LAST_KERNELS and groups > 1 and values and values[0].shape[-2] == 1 \
                and values[0].shape[-1] % groups == 0:
            # one input channel per group (ConvNeXt's 7x7 "depthwise" Conv2D): a depthwise conv, output
            # c*m+j reads input c, so channels stay independent instead of all sharing local index 0
            node.attrs["multiplier"] = values[0].shape[-1] // groups
            node.attrs["grouped_depthwise"] = True
            self._params(node, values, ["kernel"] + bias, ["weight"] + ["bias"] * len(bias), "depthwise",
                         [("kernel", -1, "out"), ("bias", 0, "out")])
        elif cls in CHANNELS_LAST_KERNELS:
            node.attrs["groups"] = groups
            self._params(node, values, ["kernel"] + bias, ["weight"] + ["bias"] * len(bias), "conv",
                         [("kernel", -1, "out"), ("kernel", -2, "in_local"), ("bias", 0, "out")])
        elif cls == "Dense":
            self._params(node, values, ["kernel"] + bias, ["weight"] + ["bias"] * len(bias), "dense",
                         [("kernel", 1, "out"), ("kernel", 0, "in"), ("bias", 0, "out")])
        elif cls in TRANSPOSE_KERNELS:
            node.attrs["macs_at"] = "input"
            self._params(node, values, ["kernel"] + bias, ["weight"] + ["bias"] * len(bias), "conv",
                         [("kernel", -2, "out"), ("kernel", -1, "in"), ("bias", 0, "out")])
        elif cls in DEPTHWISE:
            node.attrs["multiplier"] = int(cfg.get("depth_multiplier", 1))
            self._params(node, values, ["kernel"] + bias, ["weight"] + ["bias"] * len(bias), "depthwise",
                         [("kernel", -2, "in"), ("bias", 0, "out")])
        elif cls in SEPARABLE:
            node.attrs["multiplier"] = int(cfg.get("depth_multiplier", 1))
            self._params(node, values, ["depthwise_kernel", "pointwise_kernel"] + bias,
                         ["weight", "weight"] + ["bias"] * len(bias), "separable",
                         [("depthwise_kernel", -2, "in"), ("pointwise_kernel", -2, "mid"),
                          ("pointwise_kernel", -1, "out"), ("bias", 0, "out")])
        if cfg.get("lora_rank"):
            node.op = "unknown"
            node.attrs["reason"] = "LoRA-enabled layer"
        if node.op != "unknown" and node.op not in ("depthwise",):
            kernel = node.params["kernel" if "kernel" in node.params else "pointwise_kernel"].value
            count = kernel.shape[node.attrs["bind"][0][1]]
            node.attrs["out_channels"] = int(count)

    def _infer_shape(self, node: Node, cls: str, cfg: dict):
        """The output shape of a channels_last layer whose output no consumer recorded."""
        ins = [self.graph.tensors[t].shape for t in node.inputs]
        if not ins or ins[0] is None:
            return None
        return _output_shape(node, cls, cfg, list(ins[0]), ins)


def _keras_tensors(obj) -> List[dict]:
    """Every ``__keras_tensor__`` reference in a call's args/kwargs, in order."""
    found: List[dict] = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("class_name") == "__keras_tensor__":
                found.append(x)
                return
            for key in ("args", "kwargs") if ("args" in x or "kwargs" in x) else x.keys():
                if key in x:
                    walk(x[key])
        elif isinstance(x, (list, tuple)):
            for item in x:
                walk(item)
    walk(obj)
    return found


def _refs(value) -> List[list]:
    if not value:
        return []
    if isinstance(value[0], str):
        return [value]
    return list(value)


def read_keras_file(path: "os.PathLike[str] | str") -> Graph:
    """Read a ``.keras`` archive into a :class:`Graph` (no Keras import).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    KerasFileError (a ValueError)
        Not a zip, no ``config.json`` / ``model.weights.h5``, a malformed config.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "no such .keras file", path)
    h5py = _h5py()
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for required in ("config.json", "model.weights.h5"):
                if required not in names:
                    raise KerasFileError(f"{path}: not a Keras 3 .keras file (no {required} inside)")
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
            extras = {n: archive.read(n) for n in names if n not in ("config.json", "model.weights.h5")}
    except zipfile.BadZipFile as error:
        raise KerasFileError(f"{path}: not a .keras file (not a zip archive: {error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KerasFileError(f"{path}: config.json is not valid JSON ({error})") from None
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except OSError as error:
        raise KerasFileError(f"{path}: model.weights.h5 is not a readable HDF5 file ({error})") from None
    try:
        return _read(config, h5, weights, extras, path)
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise KerasFileError(f"{path}: malformed config.json ({type(error).__name__}: {error})") from None
    finally:
        h5.close()


def _read(config: dict, h5, weights: bytes, extras: dict, path: str) -> Graph:
    if not isinstance(config, dict) or config.get("class_name") not in NESTED:
        raise KerasFileError(f"{path}: the top-level object is {config.get('class_name')!r}, "
                             "not a Functional or Sequential model")
    reader = _Reader(config, h5)
    cfg = config["config"]
    if config["class_name"] == "Sequential":
        outputs = reader.sequential(cfg, "", "", None)
    else:
        outputs = reader.functional(cfg, "", "", None)
    reader.graph.outputs = outputs
    reader.graph.source.update({"weights": weights, "extras": extras, "path": path})
    return reader.graph


def write_keras_file(graph: Graph, surgery, path: "os.PathLike[str] | str") -> int:
    """Write the pruned model as a ``.keras`` file (atomically); returns its size in bytes."""
    h5py = _h5py()
    path = os.fspath(path)
    source = graph.source
    config = copy.deepcopy(source["config"])     # edited below; the graph keeps the original
    # Map the original layer dicts to their copies (same traversal order).
    originals: Dict[int, dict] = {}

    def pair(a, b):
        if isinstance(a, dict):
            originals[id(a)] = b
            for key in a:
                pair(a[key], b[key])
        elif isinstance(a, list):
            for x, y in zip(a, b):
                pair(x, y)
    pair(source["config"], config)

    new_shape = {t: surgery.new_shape(graph, t) for t in range(len(graph.tensors))}
    changed = {t for t in range(len(graph.tensors)) if new_shape[t] != graph.tensors[t].shape}
    for index, node in enumerate(graph.nodes):
        if not isinstance(node.source, dict) or "layer" not in node.source:
            continue
        layer = originals[id(node.source["layer"])]
        cfg = layer["config"]
        out = node.outputs[0]
        if out in changed and node.op in ("conv", "dense", "separable"):
            cfg["filters" if "filters" in cfg else "units"] = int(surgery.tensor_keep[out].sum())
        if node.attrs.get("grouped_depthwise") and out in changed:
            cfg["filters"] = int(surgery.tensor_keep[out].sum())
            cfg["groups"] = int(surgery.tensor_keep[node.inputs[0]].sum())
        if node.kind in CHANNEL_SCALES and node.op == "norm" and out in changed:
            cfg[CHANNEL_SCALES[node.kind]] = int(surgery.tensor_keep[out].sum())
        if node.op == "reshape" and out in changed:
            cfg["target_shape"] = list(new_shape[out][1:])
        if any(t in changed for t in node.inputs) and "build_config" in layer:
            shapes = [list(new_shape[t]) for t in node.inputs]
            if "input_shape" in layer["build_config"]:
                layer["build_config"]["input_shape"] = shapes[0] if len(shapes) == 1 and \
                    not isinstance(layer["build_config"]["input_shape"][0], list) else shapes
        if node.kind in NESTED and "build_input_shape" in cfg and node.inputs and node.inputs[0] in changed:
            cfg["build_input_shape"] = list(new_shape[node.inputs[0]])
    # A nested model records the shape it was built for.
    for layer, ins in source.get("nested", []):
        if any(t in changed for t in ins):
            copy_ = originals[id(layer)]
            shapes = [list(new_shape[t]) for t in ins]
            if "input_shape" in (copy_.get("build_config") or {}):
                copy_["build_config"]["input_shape"] = shapes[0] if len(shapes) == 1 else shapes
            if "build_input_shape" in copy_["config"]:
                copy_["config"]["build_input_shape"] = shapes[0] if len(shapes) == 1 else shapes
    # Recorded tensor shapes in calls, input layers and nested models.
    _update_call_shapes(graph, source, originals, new_shape, changed)
    for t, cfgs in source["input_layers"].items():
        if t in changed:
            for cfg in cfgs:
                for key in ("batch_shape", "batch_input_shape"):
                    if key in cfg:
                        originals[id(cfg)][key] = list(new_shape[t])

    # A fresh HDF5 file: deleting datasets in place would not give their space back.
    replace: Dict[str, np.ndarray] = {}
    for index, params in surgery.params.items():
        node = graph.nodes[index]
        for name, value in params.items():
            replace[f"/{node.source['h5']}/vars/{node.attrs['var_index'][name]}"] = value
    buffer = io.BytesIO()
    with h5py.File(io.BytesIO(source["weights"]), "r") as old, h5py.File(buffer, "w") as new:
        _copy_h5(h5py, old, new, replace)
    weights = buffer.getvalue()
    from .._atomic import atomic_file
    with atomic_file(path) as handle:       # beside the destination, fsynced, renamed over it
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for name, data in source["extras"].items():
                archive.writestr(name, data)
            archive.writestr("config.json", json.dumps(config))
            archive.writestr("model.weights.h5", weights)
    return os.path.getsize(path)


def _copy_h5(h5py, source, target, replace: Dict[str, np.ndarray]) -> None:
    """Copy an HDF5 group recursively, with the datasets named in ``replace`` swapped for new arrays."""
    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy_h5(h5py, item, target.create_group(name), replace)
        elif item.name in replace:
            dataset = target.create_dataset(name, data=np.asarray(replace[item.name], dtype=item.dtype))
            for key, value in item.attrs.items():
                dataset.attrs[key] = value
        else:
            source.copy(item, target, name=name)


def _update_call_shapes(graph: Graph, source, originals, new_shape, changed) -> None:
    # Every layer's inbound nodes record the shapes of the tensors they read.
    tensor_ids = source["tensor_ids"]

    def walk(layers: List[dict], scope: str) -> None:
        for layer in layers:
            cfg = layer.get("config", {})
            name = layer.get("name", cfg.get("name"))
            for call in layer.get("inbound_nodes", []) or []:
                for kt in _keras_tensors(call):
                    h = kt["config"]["keras_history"]
                    t = tensor_ids.get((scope, h[0], int(h[1]), int(h[2])))
                    if t is not None and t in changed:
                        originals[id(kt["config"])]["shape"] = list(new_shape[t])
            if layer.get("class_name") in NESTED and "layers" in cfg:
                walk(cfg["layers"], f"{scope}{cfg.get('name', name)}/")
    walk(source["config"]["config"]["layers"], "")


def _tuple(value, rank: int):
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)] * rank


def _spatial(n, k, s, d, padding):
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    return (n - d * (k - 1) - 1) // s + 1


def _output_shape(node: Node, cls: str, cfg: dict, shape: list, ins: list):
    """Keras's shape rules for the channels_last layers this module knows (None when unsure)."""
    rank = len(shape) - 2
    if node.op in ("conv", "separable", "depthwise") and rank >= 1:
        if node.op == "depthwise":
            channels = None if shape[-1] is None else shape[-1] * node.attrs.get("multiplier", 1)
        else:
            channels = node.attrs.get("out_channels")
        k = _tuple(cfg.get("kernel_size", 1), rank)
        st = _tuple(cfg.get("strides", 1), rank)
        dl = _tuple(cfg.get("dilation_rate", 1), rank)
        if cls in TRANSPOSE_KERNELS:
            if cfg.get("output_padding") is not None:
                return None
            dims = [None if n is None else (n * s if cfg.get("padding") == "same" else n * s + max(kk - s, 0))
                    for n, kk, s in zip(shape[1:-1], k, st)]
        else:
            dims = [_spatial(n, kk, s, d, cfg.get("padding", "valid")) for n, kk, s, d in zip(shape[1:-1], k, st, dl)]
        return tuple([shape[0]] + dims + [channels])
    if node.op == "dense":
        return tuple(shape[:-1] + [node.attrs.get("out_channels")])
    if cls.startswith("Global"):
        return tuple([shape[0]] + [1] * rank + [shape[-1]]) if cfg.get("keepdims") else (shape[0], shape[-1])
    if "Pooling" in cls:
        p = _tuple(cfg.get("pool_size", 2), rank)
        st = _tuple(cfg.get("strides") or p, rank)
        dims = [_spatial(n, kk, s, 1, cfg.get("padding", "valid")) for n, kk, s in zip(shape[1:-1], p, st)]
        return tuple([shape[0]] + dims + [shape[-1]])
    if cls.startswith("ZeroPadding") or cls.startswith("Cropping"):
        pads = cfg.get("padding", cfg.get("cropping", 1))
        pads = [p if isinstance(p, (list, tuple)) else [p, p] for p in (_tuple(pads, rank) if not isinstance(
            pads, (list, tuple)) else pads)]
        sign = 1 if cls.startswith("ZeroPadding") else -1
        dims = [None if n is None else n + sign * sum(p) for n, p in zip(shape[1:-1], pads)]
        return tuple([shape[0]] + dims + [shape[-1]])
    if cls.startswith("UpSampling"):
        size = _tuple(cfg.get("size", 2), rank)
        return tuple([shape[0]] + [None if n is None else n * f for n, f in zip(shape[1:-1], size)] + [shape[-1]])
    if cls == "Flatten":
        return (shape[0], int(np.prod(shape[1:]))) if all(d is not None for d in shape[1:]) else None
    if cls == "Reshape":
        target = list(cfg.get("target_shape", []))
        if -1 in target and all(d is not None for d in shape[1:]):
            known = int(np.prod([t for t in target if t != -1]))
            target[target.index(-1)] = int(np.prod(shape[1:])) // max(known, 1)
        return tuple([shape[0]] + target)
    if cls == "Concatenate":
        axis = cfg.get("axis", -1) % len(shape)
        if any(s is None or len(s) != len(shape) for s in ins):
            return None
        out = list(shape)
        out[axis] = None if any(s[axis] is None for s in ins) else sum(s[axis] for s in ins)
        return tuple(out)
    if node.op in ("passthrough", "norm", "layernorm"):
        return tuple(shape)
    if node.op == "elementwise":
        try:
            return tuple(np.broadcast_shapes(*[tuple(1 if d is None else d for d in s) for s in ins if s is not None]))
        except ValueError:
            return None
    return None
