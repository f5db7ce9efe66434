"""Calibration from a Keras 3 model.

Every ``Dense`` and ``Conv2D`` (``groups = 1``, channels-last) layer of the
model's top level is a layer; its inputs are captured by a functional
sub-model from the model's inputs to the layer inputs (one call per batch for
all layers), conv inputs through their im2col view. Layers are named by
their kernel variable's path (``"fc/kernel"``), as :meth:`weights` names the
tensors; kernels are ``(in, out)`` / ``(kh, kw, in, out)`` ("keras" layout).

Sequential mode works on a clone of the model (the caller's model is never
changed): each compressed kernel is assigned to the clone, and the layers
after it are captured again through it. Only what changed runs: a capture
after a commit runs a functional sub-model from the tensors kept by the
previous captures that the commits since have not touched (the inputs of the
layers captured last, within :attr:`KerasCalibration.kept_bytes_limit`) and
the model inputs it still needs, to the next layers' inputs; so a sequential
pass over L layers runs each layer about once per capture instead of running
the model from its inputs L times. It falls back to running the model from
its inputs when the graph cannot be cut there: a tensor on the way has no
Keras history (a tensor made outside the functional graph), the way back
reaches an ``Input`` that is not one of the model's, or Keras refuses the
sub-model (``keras.Model(kept tensors, layer inputs)`` raises). Layers
reading the very same symbolic tensor (q/k/v after one norm, gate/up) share
their captures: one sub-model call per batch for the group, and a sibling's
commit does not reach the others (it is not upstream of their input).

Needs Keras 3 (``pip install "swiftprune[keras]"``).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Optional, Sequence

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
        shapes = {name: tuple(t.shape) for name, t in zip(self.input_names, model.inputs)}
        self._feeds = batches_of(inputs, self.input_names, "Keras calibration", shapes,
                                                trailing_one=True) if inputs is not None else None
        self._variables = {v.path: v for v in model.weights}
        self._original = {path: np.asarray(v.numpy()) for path, v in self._variables.items()
                          if np.dtype(v.dtype).kind == "f"}
        self._model_inputs = {id(t): t for t in model.inputs}  # the clone's, in sequential mode
        self._upstream_memo: dict[int, Optional[frozenset]] = {}
        self._inputs: dict[str, Any] = {}  # kernel path -> the layer's input tensor (filled by _layers_of)
        super().__init__(self._layers_of(model, keras), mode)

    #: Bytes of activations a sequential capture may keep for the next one
    #: (beyond it, later captures run the model from its inputs).
    kept_bytes_limit: int = 2 << 30

    def _layers_of(self, model: Any, keras: Any) -> list[CapturedLayer]:
        layers: list[CapturedLayer] = []
        seen: set[str] = set()
        for layer in model.layers:
            earlier = frozenset(seen)  # functional layers are topologically ordered
            seen.update(v.path for v in layer.weights)
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
            # Layers reading the very same symbolic tensor (q/k/v, gate/up) share an input key: a sequential
            # capture takes them together, one sub-model for the group.
            captured.input = _tensor_key(layer.input, layer.name)
            self._inputs[captured.name] = layer.input
            # The variables whose values reach this layer's input (biases and folded scales too: any of
            # them may be committed). A graph that cannot be walked: every variable of the layers before.
            upstream = self._upstream(layer.input)
            captured.upstream = upstream if upstream is not None else earlier
            layers.append(captured)
        return layers

    # --- graph walking ----------------------------------------------------------
    @staticmethod
    def _producer(tensor: Any) -> Optional[tuple[Any, list]]:
        """The operation computing ``tensor`` and the tensors it reads, or None when ``tensor`` has no
        Keras history (the graph cannot be walked through it)."""
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        operation = history.operation
        nodes = getattr(operation, "_inbound_nodes", None)
        if not nodes or history.node_index >= len(nodes):
            return None
        return operation, list(nodes[history.node_index].input_tensors)

    def _upstream(self, tensor: Any) -> Optional[frozenset]:
        """The paths of the variables whose values reach ``tensor``; None when the walk fails."""
        key = id(tensor)
        if key not in self._upstream_memo:
            found: set[str] = set()
            seen: set[int] = set()
            stack = [tensor]
            result: Optional[frozenset] = None
            while stack:
                t = stack.pop()
                if id(t) in seen or id(t) in self._model_inputs:
                    continue
                seen.add(id(t))
                produced = self._producer(t)
                if produced is None:
                    break
                operation, inputs = produced
                found.update(v.path for v in getattr(operation, "weights", ()))  # (a keras.ops op has none)
                stack.extend(inputs)
            else:
                result = frozenset(found)
            self._upstream_memo[key] = result
        return self._upstream_memo[key]

    def _reaches(self, variable: str, tensor: Any) -> bool:
        """Whether ``variable``'s value may reach ``tensor`` (yes when the graph cannot be walked)."""
        upstream = self._upstream(tensor)
        return upstream is None or variable in upstream

    def _cut(self, targets: Sequence[Any]) -> Optional[tuple[list[Any], list[Any]]]:
        """The kept tensors and the model inputs from which ``targets`` are computed (walking back from
        them, stopping at kept tensors); None when the walk reaches a tensor without history or an
        ``Input`` that is not the model's."""
        kept: dict[int, Any] = {}
        inputs: dict[int, Any] = {}
        seen: set[int] = set()
        stack = list(targets)
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            if id(t) in self._kept:
                kept[id(t)] = t
            elif id(t) in self._model_inputs:
                inputs[id(t)] = t
            else:
                produced = self._producer(t)
                if produced is None or not produced[1]:
                    return None  # no history, or a source (an Input) that is not one of the model's
                stack.extend(produced[1])
        return list(kept.values()), [t for t in self._model_inputs.values() if id(t) in inputs]

    def weights(self) -> dict[str, np.ndarray]:
        """The model's original float weights by variable path."""
        return dict(self._original)

    def _read_graph(self) -> Any:
        from ..graph.keras_live import read_keras_model

        return read_keras_model(self.model)

    _commit_words = ("Keras calibration", "model",
                    "variable of that path (calibration.weights() gives the names compress() must use)")

    def _tensor_shapes(self) -> dict[str, tuple]:
        # every variable, not only the float ones weights() gives: a commit of any of them is applied
        return {path: tuple(variable.shape) for path, variable in self._variables.items()}

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        variable = self._variables[name]  # (commit refused the paths the model does not hold)
        variable.assign(np.asarray(weights, dtype=np.dtype(variable.dtype)).reshape(variable.shape))
        # kept tensors computed through the old value are stale now
        self._kept = {key: entry for key, entry in self._kept.items() if not self._reaches(name, entry[0])}

    def _sub_model(self, keras: Any, targets: Sequence[Any]) -> tuple[Any, list[Any], list[str]]:
        """The model computing ``targets``, the kept tensors it is fed and the model inputs it is fed:
        a sub-model cut at the kept tensors when the graph allows, else the model from its inputs."""
        if self._kept:
            cut = self._cut(targets)
            if cut is not None:
                kept, inputs = cut
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # Keras names the cloned inputs; nothing to act on
                        sub = keras.Model(kept + inputs, list(targets))
                except (ValueError, TypeError, KeyError, AttributeError):
                    pass  # Keras could not rebuild the graph from there: run from the model inputs
                else:
                    names = [self.input_names[list(self._model_inputs).index(id(t))] for t in inputs]
                    return sub, kept, names
        return keras.Model(self.model.inputs, list(targets)), [], list(self.input_names)

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        keras = _import()
        if self._feeds is None:
            raise ValueError("Keras calibration: no calibration inputs were given")
        tensors = {layer.name: self._inputs[layer.name] for layer in layers}
        # A layer reading a model input takes it from the feed; the others are computed.
        targets = list({id(t): t for t in tensors.values() if id(t) not in self._model_inputs}.values())
        fed = {id(t): (name, t) for t, name in zip(self._model_inputs.values(), self.input_names)
               if any(id(t) == id(x) for x in tensors.values())}
        # Sequential captures after a commit run from the kept tensors and keep what they compute for the
        # next one; the first capture (all layers at once) and independent captures run the whole model.
        incremental = self.mode == "sequential" and bool(self.committed)
        if not targets:
            sub, kept, input_names = None, [], []
        elif incremental:
            sub, kept, input_names = self._sub_model(keras, targets)
        else:
            sub, kept, input_names = keras.Model(self.model.inputs, targets), [], list(self.input_names)
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name, layout=layer.layout)
               for layer in layers}
        fresh: dict[int, list[np.ndarray]] = {id(t): [] for t in targets}
        for b, feed in enumerate(_progress(self._feeds, total=len(self._feeds), description="capture",
                                           enabled=self.show)):
            arrays = {key: _as_model_sees(feed[name], tensor) for key, (name, tensor) in fed.items()}
            if sub is not None:
                args = [self._kept[id(t)][1][b] for t in kept] + [feed[name] for name in input_names]
                values = sub(args, training=False)
                if len(targets) == 1:
                    values = [values]
                arrays.update((id(t), np.asarray(keras.ops.convert_to_numpy(v))) for t, v in zip(targets, values))
            if incremental:
                for key in fresh:
                    fresh[key].append(arrays[key])
            for layer in layers:
                x = arrays[id(tensors[layer.name])]
                if layer.kind == "conv2d":
                    c = layer.conv
                    for rows in patches_nhwc(x, c["kernel"], c["strides"], c["padding"], c["dilations"]):
                        out[layer.name].update(rows)
                else:
                    out[layer.name].update(x)
        if incremental:
            self._keep({key: (t, fresh[key]) for key, t in ((id(t), t) for t in targets)}, kept)
        return out

    def _keep(self, fresh: dict[int, tuple[Any, list[np.ndarray]]], used: Sequence[Any]) -> None:
        """Keeps this capture's outputs and the kept tensors it was fed (the next cut is likely to start
        from them), within ``kept_bytes_limit``."""
        kept: dict[int, tuple[Any, list[np.ndarray]]] = {}
        total = 0
        for key, entry in list(fresh.items()) + [(id(t), self._kept[id(t)]) for t in used]:
            size = sum(a.nbytes for a in entry[1])
            if key not in kept and total + size <= self.kept_bytes_limit:
                kept[key] = entry
                total += size
        self._kept = kept


def _tensor_key(tensor: Any, fallback: str) -> str:
    """A symbolic tensor's name in the graph: the operation making it, which call of it (node) and which of
    its outputs (``"ln:0:0"``); ``fallback`` (the reading layer's name: grouped with nothing) when the tensor
    has no Keras history."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return fallback
    return f"{history.operation.name}:{history.node_index}:{history.tensor_index}"


def _as_model_sees(array: np.ndarray, tensor: Any) -> np.ndarray:
    """A model input as the model passes it on: in the ``Input``'s dtype, with a size-1 last axis added or
    dropped to the ``Input``'s rank (what a Keras functional model does with its inputs)."""
    x = np.asarray(array, dtype=tensor.dtype)
    shape = tuple(tensor.shape)
    if x.ndim == len(shape) - 1 and shape and shape[-1] == 1:
        return x[..., None]
    if x.ndim == len(shape) + 1 and x.shape[-1] == 1:
        return x[..., 0]
    return x


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
