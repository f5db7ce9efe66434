"""Calibration from an ONNX model run by onnxruntime.

Every ``MatMul`` / ``Gemm`` whose weight is a 2-D initializer and every
``Conv`` (2-D, ``group = 1``) whose weight is an initializer is a layer (float
``Constant`` nodes of rank >= 2 count as initializers, named by their output); its
input tensor is added to the graph's outputs, so one onnxruntime run per
batch returns the inputs of every layer at once. Layers are named by their
weight initializer (the names :meth:`OnnxCalibration.weights` returns).
``MatMul`` and ``Gemm(transB=0)`` weights are ``(in, out)`` ("keras"
layout), ``Gemm(transB=1)`` and ``Conv`` weights ``(out, in, ...)``
("torch"); conv inputs go through their im2col view.

Sequential mode runs only what changed: after a commit, the inputs of the
next layers are computed by a sub-model cut out of the graph, fed with the
tensors kept from the previous capture that the commits since have not
touched (in a transformer: the block input, the attention context, ...), so a
sequential pass over L layers runs each op about once per layer group instead
of running the whole model per group.

Needs ``onnx`` and ``onnxruntime`` (``pip install "swiftprune[onnx]"``).
"""
from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from .._onnx_model import load_onnx_model
from .._progress import progress as _progress
from .hessian import CalibrationWarning, HessianAccumulator
from .im2col import patches_nchw, same_padding
from .model_source import CapturedLayer, ModelCalibration, batches_of

__all__ = ["OnnxCalibration", "from_onnx"]


class _SubModel(NamedTuple):
    """What a sequential capture runs: node indices in graph order, the kept tensors and the model inputs fed."""

    nodes: list[int]
    kept: list[str]
    inputs: list[str]


def _import() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ImportError('ONNX calibration needs onnx and onnxruntime: pip install "swiftprune[onnx]"') from None
    return onnx, onnxruntime


def _declared_shape(value_info: Any) -> Optional[tuple]:
    """A graph input's declared shape (None for a symbolic or unknown size), or None when it declares none."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)


def _in_declared_dtypes(feeds: list[dict[str, np.ndarray]], declared: dict[str, Any], onnx: Any) -> list[dict[str, np.ndarray]]:
    """The feeds in the dtypes the graph inputs declare (onnxruntime takes no other): float arrays cast to a
    float input's type (float64 NumPy into a float32 model, as Keras casts), anything else must match."""
    wanted = {}
    for name, value_info in declared.items():
        elem_type = value_info.type.tensor_type.elem_type
        if elem_type:
            wanted[name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    out = []
    for i, feed in enumerate(feeds):
        converted = dict(feed)
        for name, dtype in wanted.items():
            array = feed[name]
            if array.dtype == dtype:
                continue
            if array.dtype.kind == "f" and dtype.kind == "f":
                converted[name] = array.astype(dtype)
            else:
                raise ValueError(f"ONNX calibration: calibration input {name!r} of batch {i} is {array.dtype}; the "
                                 f"model expects {dtype}")
        out.append(converted)
    return out


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxCalibration(ModelCalibration):
    """An ONNX model and calibration inputs (see :func:`from_onnx`)."""

    def __init__(self, model: Any, inputs: Any, mode: str = "sequential", *, show: bool = False) -> None:
        onnx, _ = _import()
        model = load_onnx_model(model, onnx)
        if any(node.op_type == "Constant" for node in model.graph.node):
            from ..export.onnx import _lift_constants

            lifted = onnx.ModelProto()
            lifted.CopyFrom(model)
            _lift_constants(lifted)  # weights held by Constant nodes (paddle2onnx exports) become initializers
            model = lifted
        self.model = model
        self.show = show
        graph = model.graph
        self.initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        fed = {i.name for i in graph.input} - set(self.initializers)
        self.input_names = [i.name for i in graph.input if i.name in fed]
        shapes = {i.name: _declared_shape(i) for i in graph.input if i.name in fed}
        self._feeds = batches_of(inputs, self.input_names, "ONNX calibration", shapes) if inputs is not None else None
        if self._feeds is not None:
            self._feeds = _in_declared_dtypes(self._feeds, {i.name: i for i in graph.input if i.name in fed}, onnx)
        self._producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
        self._upstream_memo: dict[str, frozenset] = {}
        super().__init__(self._layers_of(graph), mode)

    #: Bytes of activations a sequential capture may keep for the next one
    #: (beyond it, later captures recompute from the model inputs).
    kept_bytes_limit: int = 2 << 30

    # --- graph analysis -----------------------------------------------------
    def _layers_of(self, graph: Any) -> list[CapturedLayer]:
        uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                if name in self.initializers:
                    uses[name] = uses.get(name, 0) + 1

        layers: list[CapturedLayer] = []
        for node in graph.node:
            if len(node.input) < 2 or node.input[1] not in self.initializers:
                continue
            weight_name = node.input[1]
            w = self.initializers[weight_name]
            if w.dtype.kind != "f":
                continue
            attrs = _attributes(node)
            layer: Optional[CapturedLayer] = None
            if node.op_type == "MatMul" and w.ndim == 2:
                layer = CapturedLayer(weight_name, weight_name, node.input[0], "keras", w.shape[0])
            elif node.op_type == "Gemm" and w.ndim == 2 and not attrs.get("transA", 0):
                trans = bool(attrs.get("transB", 0))
                layer = CapturedLayer(weight_name, weight_name, node.input[0], "torch" if trans else "keras",
                                      w.shape[1] if trans else w.shape[0])
            elif node.op_type == "Conv" and w.ndim == 4:
                if attrs.get("group", 1) != 1:
                    continue  # grouped / depthwise: not one linear map over all inputs
                kh, kw = w.shape[2:]
                auto = attrs.get("auto_pad", b"NOTSET")
                auto = auto.decode() if isinstance(auto, bytes) else auto
                if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
                    continue
                layer = CapturedLayer(weight_name, weight_name, node.input[0], "torch", w.shape[1] * kh * kw,
                                      kind="conv2d", conv={
                                          "kernel": (kh, kw), "strides": tuple(attrs.get("strides", (1, 1))),
                                          "pads": tuple(attrs.get("pads", (0, 0, 0, 0))),
                                          "dilations": tuple(attrs.get("dilations", (1, 1))), "auto_pad": auto})
            if layer is None:
                continue
            if uses.get(weight_name, 0) != 1:
                warnings.warn(f"ONNX calibration: weight {weight_name!r} is used by {uses[weight_name]} nodes; "
                              "its inputs are not captured", CalibrationWarning, stacklevel=3)
                continue
            layer.upstream = self._upstream(layer.input) - {weight_name}
            layers.append(layer)
        return layers

    def _upstream(self, tensor: str) -> frozenset:
        """The initializers whose values reach ``tensor``."""
        if tensor not in self._upstream_memo:
            nodes = self.model.graph.node
            seen, stack, found = set(), [tensor], set()
            while stack:
                t = stack.pop()
                if t in seen:
                    continue
                seen.add(t)
                if t in self.initializers:
                    found.add(t)
                index = self._producer.get(t)
                if index is not None:
                    stack.extend(nodes[index].input)
            self._upstream_memo[tensor] = frozenset(found)
        return self._upstream_memo[tensor]

    # --- ModelCalibration ---------------------------------------------------
    def weights(self) -> dict[str, np.ndarray]:
        return {name: array for name, array in self.initializers.items() if array.dtype.kind == "f"}

    def _read_graph(self) -> Any:
        from ..graph.onnx_file import read_onnx

        return read_onnx(self.model)

    _commit_words = ("ONNX calibration", "model",
                    "initializer of that name (calibration.weights() gives the names compress() must use)")

    def _tensor_shapes(self) -> dict[str, tuple]:
        # every initializer, not only the float ones weights() gives: a commit of any of them is applied
        return {name: array.shape for name, array in self.initializers.items()}

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        # committed weights replace the initializers in the next capture's model (commit refused the names
        # the model does not hold); kept tensors computed through the old value are stale now
        self._kept = {t: v for t, v in self._kept.items() if name not in self._upstream(t)}

    def _initializer(self, onnx: Any, tensor: Any) -> Any:
        """The initializer ``tensor`` as the next capture runs it: its committed value if any."""
        if tensor.name not in self.committed:
            return tensor
        original = self.initializers[tensor.name]
        value = np.asarray(self.committed[tensor.name], dtype=original.dtype).reshape(original.shape)
        return onnx.numpy_helper.from_array(value, tensor.name)

    def _cut(self, targets: Sequence[str]) -> Optional[_SubModel]:
        """The nodes that compute ``targets`` from the model inputs and the kept tensors (nodes in graph
        order, kept tensors used, model inputs used); None when a node holds a subgraph (its outer-scope
        reads are not listed as inputs), so only the whole model is safe."""
        onnx, _ = _import()
        nodes = self.model.graph.node
        fed = set(self.input_names)
        needed: set[int] = set()
        kept: set[str] = set()
        inputs: set[str] = set()
        seen: set[str] = set()
        stack = list(targets)
        while stack:
            t = stack.pop()
            if t in seen or not t:
                continue
            seen.add(t)
            if t in self._kept:
                kept.add(t)
            elif t in fed:
                inputs.add(t)
            elif t in self._producer and t not in self.initializers:
                index = self._producer[t]
                if index in needed:
                    continue
                node = nodes[index]
                if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                    return None
                needed.add(index)
                stack.extend(node.input)
        return _SubModel(sorted(needed), sorted(kept), [n for n in self.input_names if n in inputs])

    def _session(self, outputs: Sequence[str], cut: Optional[_SubModel] = None) -> Any:
        """An onnxruntime session returning ``outputs``: of the whole model, or of the sub-model ``cut``
        (its nodes, fed with kept tensors and model inputs), with the committed weights."""
        onnx, ort = _import()
        if cut is None:
            model = onnx.ModelProto()
            model.CopyFrom(self.model)
            graph = model.graph
            for i, tensor in enumerate(graph.initializer):
                if tensor.name in self.committed:
                    graph.initializer[i].CopyFrom(self._initializer(onnx, tensor))
            existing = {o.name for o in graph.output}
            for name in outputs:
                if name not in existing and name not in self.input_names:
                    graph.output.append(onnx.ValueInfoProto(name=name))
        else:
            source = self.model.graph
            nodes = [source.node[i] for i in cut.nodes]
            read = {name for node in nodes for name in node.input}
            declared = {i.name: i for i in source.input}
            graph_inputs = [declared[name] for name in cut.inputs] + [
                onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(self._kept[name][0].dtype),
                                                   None) for name in cut.kept]
            graph = onnx.helper.make_graph(
                nodes, f"{source.name}_capture", graph_inputs, [onnx.ValueInfoProto(name=name) for name in outputs],
                initializer=[self._initializer(onnx, t) for t in source.initializer if t.name in read])
            model = onnx.helper.make_model(graph, opset_imports=self.model.opset_import,
                                           ir_version=self.model.ir_version)
            model.functions.extend(self.model.functions)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.mode == "sequential":
            # No graph rewrites: fusions differ between the whole model and a sub-model cut from it, and
            # the inputs captured by both must be the same numbers.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        if self._feeds is None:
            raise ValueError("ONNX calibration: no calibration inputs were given")
        wanted = list(dict.fromkeys(layer.input for layer in layers))
        # Sequential captures after a commit run the sub-model from the kept tensors, and keep what they
        # fetch for the next one; the first (all layers at once) and independent captures run the model.
        incremental = self.mode == "sequential" and bool(self.committed)
        fetched = [name for name in wanted if name not in self.input_names and name not in self._kept]
        cut = self._cut(fetched) if incremental and fetched else None
        if cut is None and fetched:
            self._kept.clear()  # the whole model runs: nothing kept is fed to it, so fetch every wanted tensor
            fetched = [name for name in wanted if name not in self.input_names]
        session = self._session(fetched, cut) if fetched else None
        feed_names = set(cut.kept) | set(cut.inputs) if cut is not None else set(self.input_names)
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name, layout=layer.layout)
               for layer in layers}
        fresh: dict[str, list[np.ndarray]] = {name: [] for name in fetched}
        for b, feed in enumerate(_progress(self._feeds, total=len(self._feeds), description="capture",
                                           enabled=self.show)):
            values = {name: feed[name] for name in wanted if name in feed}
            values.update({name: self._kept[name][b] for name in wanted if name in self._kept})
            if session is not None:
                run_feed = {name: (feed[name] if name in feed else self._kept[name][b]) for name in feed_names}
                values.update(zip(fetched, session.run(fetched, run_feed)))
            if cut is not None:
                for name in fetched:
                    fresh[name].append(values[name])
            for layer in layers:
                x = np.asarray(values[layer.input])
                if x.dtype.kind != "f":
                    raise ValueError(f"layer {layer.name!r}: its input {layer.input!r} is {x.dtype}, not float")
                if layer.kind == "conv2d":
                    for rows in patches_nchw(x, **self._conv_geometry(layer, x.shape)):
                        out[layer.name].update(rows)
                else:
                    out[layer.name].update(x)
        if cut is not None:
            self._keep(fresh, cut.kept)
        return out

    def _keep(self, fresh: dict[str, list[np.ndarray]], used: Sequence[str]) -> None:
        """Keeps this capture's fetched tensors and the kept ones it was fed with (the next cut is likely
        to start from them: the residual stream and the layer inputs), within ``kept_bytes_limit``."""
        kept: dict[str, list[np.ndarray]] = {}
        total = 0
        for name, arrays in list(fresh.items()) + [(name, self._kept[name]) for name in used]:
            size = sum(a.nbytes for a in arrays)
            if name not in kept and total + size <= self.kept_bytes_limit:
                kept[name] = arrays
                total += size
        self._kept = kept

    @staticmethod
    def _conv_geometry(layer: CapturedLayer, shape: tuple[int, ...]) -> dict[str, Any]:
        conv = layer.conv
        kernel, strides, dilations = conv["kernel"], conv["strides"], conv["dilations"]
        pads = conv["pads"]
        if conv["auto_pad"] == "VALID":
            pads = (0, 0, 0, 0)
        elif conv["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            (t, b), (l, r) = (same_padding(shape[2], kernel[0], strides[0], dilations[0]),
                              same_padding(shape[3], kernel[1], strides[1], dilations[1]))
            if conv["auto_pad"] == "SAME_LOWER":
                (t, b), (l, r) = (b, t), (r, l)
            pads = (t, l, b, r)
        return {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}


def from_onnx(model: Any, inputs: Any, *, mode: str = "sequential", progress: bool = False) -> OnnxCalibration:
    """Calibration statistics captured from an ONNX model by onnxruntime.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
    inputs : mapping, list of mappings, array or list of arrays
        Calibration batches: ``{input name: array}`` per batch (an array per
        batch for a one-input model). ``None`` only to read :meth:`weights`.
    mode : {"sequential", "independent"}
        ``"sequential"`` (default; the GPTQ paper's and llm-compressor's):
        once a weight is compressed, the inputs of every layer downstream of
        it are recomputed through the compressed model. ``"independent"``: all
        layers' inputs from the original model, in one pass.
    progress : bool
        A progress bar over the batches of each capture.

    Returns
    -------
    OnnxCalibration
        Pass it to ``compress(calibration.weights(), recipe, calibration=it)``.

    Raises
    ------
    ImportError
        onnx / onnxruntime missing.
    ValueError
        Missing model inputs, NaN/Inf in the inputs, a bad ``mode``.
    """
    return OnnxCalibration(model, inputs, mode, show=progress)
