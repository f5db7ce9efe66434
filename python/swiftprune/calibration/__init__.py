"""Calibration data for GPTQ, SparseGPT and Wanda: layer inputs and their Hessians.

Sources, one per module, all giving per-layer :class:`HessianAccumulator`
statistics (``xᵀx`` and a count) keyed by layer name:

- :mod:`~swiftprune.calibration.arrays`: ``{layer: (samples, in) array or
  HessianAccumulator}`` given directly (:func:`from_arrays`), or an ``.npz``;
- :mod:`~swiftprune.calibration.keras_capture`: a Keras 3 model plus input
  batches (functional sub-models; conv layers through their im2col view);
- :mod:`~swiftprune.calibration.onnx_capture`: an ONNX model plus inputs, run
  by onnxruntime with the layer inputs exposed as outputs;
- :mod:`~swiftprune.calibration.torch_capture`: a PyTorch module plus input
  batches, through forward hooks (optional: needs torch).

Model sources run in ``"independent"`` mode (every layer's inputs from the
original model) or ``"sequential"`` mode (the GPTQ paper's: layer *i* is
compressed first, then the inputs of layer *i + 1* are recomputed through the
compressed layers). Pass any of them to ``compress(weights, recipe,
calibration=...)`` with a calibrated method in the recipe (``quantize:
{method: gptq}``, ``prune: {method: sparsegpt}``, ``prune: {method: wanda}``).
"""
from __future__ import annotations

from .arrays import Calibration, from_arrays, load_calibration
from .hessian import CalibrationWarning, HessianAccumulator

__all__ = ["HessianAccumulator", "CalibrationWarning", "Calibration", "from_arrays", "load_calibration",
           "from_keras", "from_onnx", "from_torch"]


def from_keras(*args, **kwargs):  # noqa: D401 - thin lazy re-export
    """See :func:`swiftprune.calibration.keras_capture.from_keras` (imports Keras)."""
    from .keras_capture import from_keras as impl
    return impl(*args, **kwargs)


def from_onnx(*args, **kwargs):
    """See :func:`swiftprune.calibration.onnx_capture.from_onnx` (imports onnx and onnxruntime)."""
    from .onnx_capture import from_onnx as impl
    return impl(*args, **kwargs)


def from_torch(*args, **kwargs):
    """See :func:`swiftprune.calibration.torch_capture.from_torch` (imports torch)."""
    from .torch_capture import from_torch as impl
    return impl(*args, **kwargs)
