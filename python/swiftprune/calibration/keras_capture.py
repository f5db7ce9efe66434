"""Calibration from a Keras 3 model.

Every ``Dense`` and ``Conv2D`` (``groups = 1``, channels-last) layer of the
model's top level is a layer; its inputs are captured by a functional
sub-model from the model's inputs to the layer inputs (one call per batch for
all layers), conv inputs through their im2col view. Layers are named by
their kernel variable's path (``"fc/kernel"``), as :meth:`weights` names the
tensors; kernels are ``(in, out)`` / ``(kh, kw, in, out)`` ("keras" layout).

Sequential mode works on a clone of the model (the caller's model is never
changed): each compressed kernel is assigned to the clone, and the layers
after it are captured again through it.

Needs Keras 3 (``pip install "swiftprune[keras]"``).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .._progress import progress as _progress
from .hessian import HessianAccumulator
from .im2col import patches_nhwc
from .model_source import CapturedLayer, ModelCalibration, batches_of

__all__ = ["KerasCalibration", "from_keras"]


def _import() -> Any:
    try:
        import keras
    except ImportError:
        raise ImportError('Keras calibration needs Keras 3: pip install "swiftprune[keras]"') from None
    if not hasattr(keras, "ops"):
        raise ImportError("Keras calibration needs Keras 3 (keras.ops); found an older Keras")
    return keras


class KerasCalibration(ModelCalibration):
    """A Keras 3 model and calibration inputs (see :func:`from_keras`)."""

    def __init__(self, model: Any, inputs: Any, mode: str = "sequential", *, show: bool = False) -> None:
        keras = _import()
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if not os.path.exists(path):
                raise FileNotFoundError(2, "No such file", path)
            model = keras.saving.load_model(path, compile=False)
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model or a .keras path, got {type(model).__name__}")
        try:
            model_inputs = list(model.inputs)
        except (AttributeError, ValueError):
            model_inputs = []
        if not model_inputs:
            raise ValueError("Keras calibration needs a functional or Sequential model built with keras.Input "
                             "(subclassed models have no graph to take layer inputs from)")
        if mode == "sequential":
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
            model = clone
        self.model = model
        self.show = show
        self.input_names = [t._keras_history.operation.name for t in model_inputs]
        self._feeds = batches_of(inputs, self.input_names, "Keras calibration") if inputs is not None else None
        self._variables = {v.path: v for v in model.weights}
        self._original = {path: np.asarray(v.numpy()) for path, v in self._variables.items()
                          if np.dtype(v.dtype).kind == "f"}
        super().__init__(self._layers_of(model, keras), mode)

    def _layers_of(self, model: Any, keras: Any) -> list[CapturedLayer]:
        layers: list[CapturedLayer] = []
        seen: set[str] = set()
        for layer in model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is None or len(getattr(layer, "_inbound_nodes", [])) != 1:
                continue
            if isinstance(layer, keras.layers.Dense) and len(kernel.shape) == 2:
                captured = CapturedLayer(kernel.path, kernel.path, layer.name, "keras", int(kernel.shape[0]))
            elif (isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) == 1
                  and layer.data_format == "channels_last" and len(kernel.shape) == 4):
                kh, kw, c, _ = (int(d) for d in kernel.shape)
                captured = CapturedLayer(kernel.path, kernel.path, layer.name, "keras", kh * kw * c, kind="conv2d",
                                         conv={"kernel": (kh, kw), "strides": tuple(layer.strides),
                                               "padding": layer.padding, "dilations": tuple(layer.dilation_rate)})
            else:
                continue
            # Functional layers are topologically ordered: every kernel before this one may be upstream.
            captured.upstream = frozenset(seen)
            seen.add(kernel.path)
            layers.append(captured)
        return layers

    def weights(self) -> dict[str, np.ndarray]:
        """The model's original float weights by variable path."""
        return dict(self._original)

    def _read_graph(self) -> Any:
        from ..graph.keras_live import read_keras_model

        return read_keras_model(self.model)

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        variable = self._variables.get(name)
        if variable is not None:
            variable.assign(np.asarray(weights, dtype=np.dtype(variable.dtype)).reshape(variable.shape))

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        keras = _import()
        if self._feeds is None:
            raise ValueError("Keras calibration: no calibration inputs were given")
        sub = keras.Model(self.model.inputs, [self.model.get_layer(layer.input).input for layer in layers])
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name, layout=layer.layout)
               for layer in layers}
        for feed in _progress(self._feeds, total=len(self._feeds), description="capture", enabled=self.show):
            args = [feed[name] for name in self.input_names]
            values = sub(args, training=False)
            if len(layers) == 1:
                values = [values]
            for layer, value in zip(layers, values):
                x = np.asarray(keras.ops.convert_to_numpy(value))
                if layer.kind == "conv2d":
                    c = layer.conv
                    for rows in patches_nhwc(x, c["kernel"], c["strides"], c["padding"], c["dilations"]):
                        out[layer.name].update(rows)
                else:
                    out[layer.name].update(x)
        return out


def from_keras(model: Any, inputs: Any, *, mode: str = "sequential", progress: bool = False) -> KerasCalibration:
    """Calibration statistics captured from a Keras 3 model.

    Parameters
    ----------
    model : keras.Model or str
        A functional or Sequential model (or a ``.keras`` file).
    inputs : array, list of arrays, mapping or list of mappings
        Calibration batches: an array per batch for a one-input model, else
        ``{input layer name: array}`` per batch. ``None`` only to read
        :meth:`~KerasCalibration.weights`.
    mode : {"sequential", "independent"}
        As :func:`~swiftprune.calibration.from_onnx`; sequential mode works on
        a clone of ``model``.
    progress : bool
        A progress bar over the batches of each capture.

    Returns
    -------
    KerasCalibration
        Pass it to ``compress(calibration.weights(), recipe, calibration=it)``;
        the result's weights are keyed by variable path.
    """
    return KerasCalibration(model, inputs, mode, show=progress)
