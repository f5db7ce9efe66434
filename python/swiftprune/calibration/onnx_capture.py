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

Needs ``onnx`` and ``onnxruntime`` (``pip install "swiftprune[onnx]"``).
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

from .._onnx_model import load_onnx_model
from .._progress import progress as _progress
from .hessian import CalibrationWarning, HessianAccumulator
from .im2col import patches_nchw, same_padding
from .model_source import CapturedLayer, ModelCalibration, batches_of

__all__ = ["OnnxCalibration", "from_onnx"]


def _import() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ImportError('ONNX calibration needs onnx and onnxruntime: pip install "swiftprune[onnx]"') from None
    return onnx, onnxruntime


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
        self._feeds = batches_of(inputs, self.input_names, "ONNX calibration") if inputs is not None else None
        super().__init__(self._layers_of(graph), mode)

    # --- graph analysis -----------------------------------------------------
    def _layers_of(self, graph: Any) -> list[CapturedLayer]:
        producer = {out: node for node in graph.node for out in node.output}
        uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                if name in self.initializers:
                    uses[name] = uses.get(name, 0) + 1

        def upstream(tensor: str) -> frozenset:
            seen, stack, found = set(), [tensor], set()
            while stack:
                t = stack.pop()
                if t in seen:
                    continue
                seen.add(t)
                if t in self.initializers:
                    found.add(t)
                node = producer.get(t)
                if node is not None:
                    stack.extend(node.input)
            return frozenset(found)

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
            layer.upstream = upstream(layer.input) - {weight_name}
            layers.append(layer)
        return layers

    # --- ModelCalibration ---------------------------------------------------
    def weights(self) -> dict[str, np.ndarray]:
        return {name: array for name, array in self.initializers.items() if array.dtype.kind == "f"}

    def _read_graph(self) -> Any:
        from ..graph.onnx_file import read_onnx

        return read_onnx(self.model)

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        pass  # committed weights replace the initializers in the next _session()

    def _session(self, outputs: Sequence[str]) -> Any:
        onnx, ort = _import()
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        graph = model.graph
        if self.committed:
            for i, tensor in enumerate(graph.initializer):
                if tensor.name in self.committed:
                    original = self.initializers[tensor.name]
                    value = np.asarray(self.committed[tensor.name], dtype=original.dtype).reshape(original.shape)
                    graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(value, tensor.name))
        existing = {o.name for o in graph.output}
        for name in outputs:
            if name not in existing and name not in self.input_names:
                graph.output.append(onnx.ValueInfoProto(name=name))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        if self._feeds is None:
            raise ValueError("ONNX calibration: no calibration inputs were given")
        wanted = list(dict.fromkeys(layer.input for layer in layers))
        fetched = [name for name in wanted if name not in self.input_names]
        session = self._session(fetched)
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name, layout=layer.layout)
               for layer in layers}
        for feed in _progress(self._feeds, total=len(self._feeds), description="capture", enabled=self.show):
            values = dict(zip(fetched, session.run(fetched, feed))) if fetched else {}
            values.update({name: feed[name] for name in wanted if name in feed})
            for layer in layers:
                x = np.asarray(values[layer.input])
                if x.dtype.kind != "f":
                    raise ValueError(f"layer {layer.name!r}: its input {layer.input!r} is {x.dtype}, not float")
                if layer.kind == "conv2d":
                    for rows in patches_nchw(x, **self._conv_geometry(layer, x.shape)):
                        out[layer.name].update(rows)
                else:
                    out[layer.name].update(x)
        return out

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
