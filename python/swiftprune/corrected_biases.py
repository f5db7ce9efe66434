"""Bias correction as a recipe stage option (``bias_correction: true`` on a
``quantize`` stage): each quantized layer's bias absorbs the shift of its
mean output, ``b + (W − Ŵ) E[x]`` (:func:`~swiftprune.activation_scaling.bias_correction`)."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Sequence

import numpy as np

__all__ = ["BiasCorrector"]


class BiasCorrector:
    """Finds each layer's bias (model graph, else tensor names), computes the
    correction when a ``bias_correction`` stage has quantized the layer, and
    applies it to the bias tensor when that goes through the pipeline (biases
    go last, see :meth:`order`)."""

    def __init__(self, names: Sequence[str], info: Callable[[str], tuple], get: Callable[[str], np.ndarray],
                 calibration: Any) -> None:
        self._info = info
        self._get = get
        self._calibration = calibration
        self._names = set(names)
        graph = calibration.graph() if hasattr(calibration, "graph") else None
        self._from_graph: Dict[str, str] | None = None
        if graph is not None:
            from .graph.layer_bias import layer_biases

            self._from_graph = layer_biases(graph, names)
        self.pending: Dict[str, np.ndarray] = {}

    def bias_of(self, weight: str, out_channels: int) -> str | None:
        if self._from_graph is not None:
            return self._from_graph.get(weight)
        from .graph.layer_bias import bias_by_name

        shapes = _ShapeLookup(self._names, self._info)
        return bias_by_name(weight, shapes, out_channels)

    def order(self, names: Sequence[str], weights: Sequence[str]) -> list[str]:
        """``names`` with the biases of ``weights`` moved after every other tensor."""
        biases = set()
        for weight in weights:
            shape = self._info(weight)[0]
            if len(shape) >= 2:
                for out in {shape[0], shape[-1]}:
                    bias = self.bias_of(weight, out)
                    if bias is not None:
                        biases.add(bias)
        return [n for n in names if n not in biases] + [n for n in names if n in biases]

    def view(self, stage: Any, track: Any, folds: Any) -> Any:
        """The calibration view of a tensor a non-calibrated stage quantized (None, with a warning, without data)."""
        try:
            view = self._calibration.lookup(track.name, track.original.shape)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
        if view is None:
            from .calibration.hessian import CalibrationWarning

            warnings.warn(f"{stage.where}: tensor {track.name!r} has no calibration data; quantized without bias "
                          "correction", CalibrationWarning, stacklevel=5)
            return None
        return folds.view(view, track.name) if folds is not None else view

    def after_stage(self, stage: Any, track: Any, view: Any) -> None:
        """Records the correction of ``track``'s bias after ``stage`` quantized it."""
        if view is None:
            return
        out, _ = view.matrix_shape
        bias = self.bias_of(track.name, out)
        if bias is None:
            from .calibration.hessian import CalibrationWarning

            warnings.warn(f"{stage.where}: tensor {track.name!r} has no bias to absorb the bias correction; "
                          "quantized without it", CalibrationWarning, stacklevel=5)
            return
        stats = view.statistics
        mean = stats.sum_ / max(stats.count_, 1)
        before = view.to_matrix(np.asarray(track.original, np.float64))
        after = view.to_matrix(np.asarray(track.dense, np.float64))
        correction = (before - after) @ mean
        original = np.asarray(self._get(bias))
        self.pending[bias] = correction
        if hasattr(self._calibration, "commit"):  # sequential sources capture later layers through it
            self._calibration.commit(bias, (original.astype(np.float64) + correction).astype(original.dtype))

    def apply(self, track: Any) -> None:
        """Adds the recorded correction to a bias tensor's values."""
        correction = self.pending.pop(track.name, None)
        if correction is None:
            return
        original = np.asarray(track.original)
        track.original = (original.astype(np.float64) + correction).astype(original.dtype)
        track.labels.append("bias-corrected")


class _ShapeLookup(dict):
    """``name -> shape`` for the tensors of a run, asked lazily."""

    def __init__(self, names: set, info: Callable[[str], tuple]) -> None:
        super().__init__()
        self._names, self._info = names, info

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> tuple:
        return tuple(self._info(name)[0])
