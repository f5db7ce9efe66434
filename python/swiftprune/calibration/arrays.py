"""Calibration statistics given as arrays: ``{layer: inputs}`` or an ``.npz``.

:class:`Calibration` is also the interface every calibration source
implements for :func:`~swiftprune.compress`: it finds the statistics of a
weight tensor by name (:meth:`Calibration.lookup`), may reorder the tensors
(a model's forward order), and hears about each compressed tensor
(:meth:`Calibration.commit`, which sequential model sources use to recompute
the inputs of the layers after it).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from .hessian import LAYOUTS, HessianAccumulator, as_accumulator

__all__ = ["Calibration", "LayerView", "from_arrays", "load_calibration", "layer_candidates"]

# Final name components that name a layer's weight rather than the layer.
_WEIGHT_SUFFIXES = ("weight", "kernel", "kernel:0", "weight:0", "w")


def layer_candidates(tensor_name: str) -> list[str]:
    """The layer names a weight tensor may be calibrated under, most specific
    first: the tensor name itself, then without a final ``.weight`` /
    ``/kernel`` / ``:0`` component (``"fc1.weight"`` → ``"fc1"``,
    ``"dense/kernel"`` → ``"dense"``)."""
    names = [tensor_name]
    base = tensor_name[:-2] if tensor_name.endswith(":0") else tensor_name
    if base != tensor_name:
        names.append(base)
    for separator in (".", "/", "_"):
        head, sep, tail = base.rpartition(separator)
        if sep and head and tail in _WEIGHT_SUFFIXES:
            names.append(head)
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class LayerView:
    """How a weight tensor maps onto the ``(out, in)`` matrix its calibration
    statistics describe: ``"torch"`` weights are ``(out, ...)`` (flattened
    to ``(out, in)``), ``"keras"`` kernels ``(..., out)`` (flattened to
    ``(in, out)``, then transposed)."""

    name: str
    statistics: HessianAccumulator
    layout: str
    shape: tuple[int, ...]

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """``(out, in)``."""
        if self.layout == "torch":
            return self.shape[0], math.prod(self.shape[1:])
        return self.shape[-1], math.prod(self.shape[:-1])

    def to_matrix(self, w: np.ndarray) -> np.ndarray:
        """The ``(out, in)`` matrix of the weight ``w`` (C-contiguous)."""
        out, features = self.matrix_shape
        if self.layout == "torch":
            return np.ascontiguousarray(w.reshape(out, features))
        return np.ascontiguousarray(w.reshape(features, out).T)

    def from_matrix(self, m: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_matrix`: an ``(out, in)`` matrix back in the tensor's shape."""
        if self.layout == "torch":
            return np.ascontiguousarray(m).reshape(self.shape)
        return np.ascontiguousarray(m.T).reshape(self.shape)


class Calibration:
    """Per-layer calibration statistics, keyed by layer name.

    Parameters
    ----------
    layers : mapping of str to HessianAccumulator
        One accumulator per layer; its ``layout`` says how the layer's weight
        maps onto the inputs (see :class:`HessianAccumulator`).

    Use :func:`from_arrays` to build one from input arrays.
    """

    mode = "independent"

    def __init__(self, layers: Mapping[str, HessianAccumulator]) -> None:
        self._layers: dict[str, HessianAccumulator] = {}
        for name, acc in layers.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"calibration layer names must be non-empty strings, got {name!r}")
            if not isinstance(acc, HessianAccumulator):
                raise TypeError(f"layer {name!r}: expected a HessianAccumulator, got {type(acc).__name__}")
            self._layers[name] = acc

    # --- mapping-like -------------------------------------------------------
    def __getitem__(self, name: str) -> HessianAccumulator:
        return self._layers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    @property
    def layer_names(self) -> list[str]:
        return list(self._layers)

    # --- the interface compress() uses --------------------------------------
    def statistics(self, layer: str) -> HessianAccumulator:
        """The accumulated statistics of ``layer`` (model sources may compute them on demand)."""
        return self._layers[layer]

    def find_layer(self, tensor_name: str) -> Optional[str]:
        """The layer a weight tensor belongs to, or ``None`` (see :func:`layer_candidates`)."""
        for candidate in layer_candidates(tensor_name):
            if candidate in self:
                return candidate
        return None

    def lookup(self, tensor_name: str, shape: Sequence[int]) -> Optional[LayerView]:
        """The statistics of the weight ``tensor_name`` and the view mapping
        it onto them, or ``None`` when the tensor has no calibration data.

        Raises
        ------
        ValueError
            The tensor's shape does not fit the layer's input width.
        """
        layer = self.find_layer(tensor_name)
        if layer is None:
            return None
        acc = self.statistics(layer)
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            raise ValueError(f"tensor {tensor_name!r} has shape {shape}; calibrated methods need a weight of "
                             "rank >= 2 (a linear or conv weight)")
        view = LayerView(layer, acc, acc.layout, shape)
        out, features = view.matrix_shape
        if features != acc.features:
            expected = "(out, in) / (out, in, kh, kw)" if acc.layout == "torch" else "(in, out) / (kh, kw, in, out)"
            raise ValueError(f"tensor {tensor_name!r} of shape {shape} does not match the calibration inputs of "
                             f"layer {layer!r}: {acc.features} input features, but a {acc.layout} weight "
                             f"{expected} of that shape has {features}")
        return view

    def order(self, names: Sequence[str]) -> list[str]:
        """The order to compress ``names`` in (model sources: the forward order)."""
        return list(names)

    def commit(self, tensor_name: str, weights: np.ndarray) -> None:
        """Told the compressed (dense) weights of each tensor, in order; arrays ignore it."""

    def graph(self) -> Any:
        """The model graph, for folding activation scales (AWQ, SmoothQuant)
        into the ops before the layers: arrays carry none (``None``)."""
        return None

    def begin(self) -> None:
        """Called by ``compress()`` before a run: a sequential model source
        forgets the weights an earlier run committed (arrays have none), so
        compressing twice with one source gives the same result."""

    def save(self, path: Any) -> None:
        """Writes the statistics to an ``.npz`` (``<layer>::hessian``,
        ``::count``, ``::layout``, ``::sum``, ``::abs_sum``, ``::abs_max``)
        that :func:`load_calibration` reads."""
        from ..io import save_weights

        arrays: dict[str, np.ndarray] = {}
        for name, acc in self._layers.items():
            arrays[f"{name}::hessian"] = acc.hessian_
            arrays[f"{name}::count"] = np.array(acc.count_, np.int64)
            arrays[f"{name}::layout"] = np.array(LAYOUTS.index(acc.layout), np.int8)
            arrays[f"{name}::sum"] = acc.sum_
            arrays[f"{name}::abs_sum"] = acc.abs_sum_
            arrays[f"{name}::abs_max"] = acc.abs_max_
        save_weights(path, arrays)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} layers: {', '.join(list(self._layers)[:4])}{', ...' if len(self) > 4 else ''})"


def from_arrays(inputs: Mapping[str, Any], *, layout: str = "torch") -> Calibration:
    """Calibration statistics from each layer's inputs.

    Parameters
    ----------
    inputs : mapping of str to array_like or HessianAccumulator
        Layer name → its inputs ``(samples, in)`` (or ``(..., in)``: batch and
        sequence dimensions are flattened), or an accumulator. A layer name
        is the weight tensor's name or that name without its final
        ``.weight`` / ``/kernel`` (``"fc1"`` calibrates ``"fc1.weight"``).
    layout : {"torch", "keras"}
        How arrays' layers hold their weights: ``(out, in)`` (``"torch"``) or
        ``(in, out)`` (``"keras"``); accumulators keep their own.

    Raises
    ------
    TypeError, ValueError
        Not a mapping, non-float or NaN/Inf inputs, bad shapes (naming the layer).
    """
    if not isinstance(inputs, Mapping):
        raise TypeError(f"calibration inputs must be a mapping layer name -> (samples, in) array, "
                        f"got {type(inputs).__name__}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'torch' or 'keras', got {layout!r}")
    return Calibration({name: as_accumulator(value, name, layout) for name, value in inputs.items()})


def load_calibration(path: Any, *, layout: str = "torch") -> Calibration:
    """Reads calibration data from an ``.npz`` or ``.safetensors`` file:
    either per-layer inputs (``{layer: (samples, in)}``, as :func:`from_arrays`)
    or the statistics written by :meth:`Calibration.save`."""
    from ..io import load_weights

    path = os.fspath(path)
    arrays = load_weights(path)
    saved = {key.rpartition("::")[0] for key in arrays if key.endswith("::hessian")}
    if saved:
        layers: dict[str, HessianAccumulator] = {}
        for name in saved:
            try:
                hessian = np.asarray(arrays[f"{name}::hessian"], np.float64)
                count = int(arrays[f"{name}::count"])
                layer_layout = LAYOUTS[int(arrays[f"{name}::layout"])]
            except (KeyError, IndexError, TypeError, ValueError):
                raise ValueError(f"{path}: layer {name!r} lacks its ::count or ::layout entry") from None
            if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1] or not np.isfinite(hessian).all():
                raise ValueError(f"{path}: layer {name!r} has a malformed Hessian {hessian.shape}")
            acc = HessianAccumulator(hessian.shape[0], name=name, layout=layer_layout)
            acc._hessian[...] = hessian
            acc.count_ = count
            for part in ("sum", "abs_sum", "abs_max"):  # first-order statistics (absent in older files)
                if f"{name}::{part}" in arrays:
                    getattr(acc, part + "_")[...] = np.asarray(arrays[f"{name}::{part}"], np.float64)
            layers[name] = acc
        return Calibration(layers)
    return from_arrays(arrays, layout=layout)
