"""Recipe methods that need calibration data: ``quantize: gptq``, ``prune:
sparsegpt`` and ``prune: wanda``.

Each receives, besides the weight and its options, ``calibration=``: a
:class:`~swiftprune.calibration.arrays.LayerView` holding the layer's input
statistics (:class:`~swiftprune.calibration.HessianAccumulator`) and how the
weight maps onto them (``(out, in)`` for PyTorch, ``(in, out)`` kernels for
Keras and ONNX ``MatMul``; conv kernels through their im2col view). Results
come back in the tensor's own shape and layout.

Imported by :mod:`swiftprune._methods` (registration needs the registries).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ._methods import _bool, _int, _optional, _real
from ._validation import check_fraction
from .calibrated_pruning import sparsegpt, wanda_mask
from .calibration.arrays import LayerView
from .registry import REQUIRED, Method, OptionError, register_method
from .quantization import QuantizedTensor, gptq

__all__ = ["gptq_tensor", "sparsegpt_tensor", "wanda_tensor"]


def _damp(name: str, value: Any) -> float:
    value = _real(name, value)
    if not (value >= 0.0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def gptq_tensor(w: np.ndarray, *, calibration: LayerView, bits: int, symmetric: bool, group_size: Optional[int],
                damp: float, act_order: bool, static_groups: bool, mse: bool, block_size: int) -> QuantizedTensor:
    """GPTQ of one weight tensor against its layer's calibration statistics.

    The result is a :class:`QuantizedTensor` of the tensor's shape with one
    scale per output channel (axis 0 for ``(out, ...)`` weights, -1 for
    ``(..., out)`` kernels) and, with ``group_size``, groups of that many
    input features (a conv kernel: along input-channel x kernel, the layout
    ``quantize`` gives conv kernels too).
    """
    from .quantization import _core_scale_shape

    view = calibration
    q = gptq(view.to_matrix(w), view.statistics, bits, group_size, damp, symmetric=symmetric, act_order=act_order,
             static_groups=static_groups, mse=mse, block_size=block_size)
    values, scale, zero_point = q.values, q.scale, q.zero_point
    if view.layout == "torch":
        axis = 0
        values = values.reshape(view.shape)
    else:
        axis = len(view.shape) - 1
        values = view.from_matrix(values)
        scale, zero_point = np.ascontiguousarray(scale.T), np.ascontiguousarray(zero_point.T)
    scale_shape = _core_scale_shape(tuple(view.shape), axis, group_size)
    return QuantizedTensor._trusted(values, scale.reshape(scale_shape), zero_point.reshape(scale_shape), bits=bits,
                                    symmetric=symmetric, axis=axis, group_size=group_size, method="gptq")


def sparsegpt_tensor(w: np.ndarray, *, calibration: LayerView, sparsity: Optional[float], n: Optional[int], m: int,
                     block_size: int, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """SparseGPT of one weight tensor: ``(keep-mask, updated weights)`` in the tensor's shape."""
    view = calibration
    nm = None if n is None else (n, m)
    pruned = sparsegpt(view.to_matrix(w), view.statistics, None if nm else sparsity, nm=nm,
                       block_size=block_size, damp=damp)
    dense = view.from_matrix(pruned)
    # Pruned entries are exactly 0; a kept weight updated to exactly 0 counts as pruned.
    return dense != 0, dense


def wanda_tensor(w: np.ndarray, *, calibration: LayerView, sparsity: float) -> np.ndarray:
    """Wanda keep-mask of one weight tensor (``|w| · ‖x_j‖₂``, per output row)."""
    view = calibration
    return view.from_matrix(wanda_mask(view.to_matrix(w), view.statistics, sparsity))


def _check_sparsegpt(options: Mapping[str, Any]) -> None:
    n, sparsity = options.get("n"), options.get("sparsity")
    if n is None and sparsity is None:
        raise OptionError("sparsity", "give sparsity (unstructured) or n and m (N:M)")
    if n is not None:
        if not 1 <= n < options["m"]:
            raise OptionError("n", f"n must satisfy 1 <= n < m = {options['m']}, got n = {n}")
        if sparsity is not None and abs(sparsity - (1 - n / options["m"])) > 1e-6:
            raise OptionError("sparsity", f"sparsity = {sparsity} does not match n:m = {n}:{options['m']}; omit it")
        if options["block_size"] % options["m"]:
            raise OptionError("block_size", f"block_size = {options['block_size']} must be a multiple of m")


register_method(Method("quantize", "gptq", gptq_tensor, {
    "bits": (_int(2, 8), 4),
    "symmetric": (_bool, True),
    "group_size": (_optional(_int(1)), 128),
    "damp": (_damp, 0.01),
    "act_order": (_bool, False),
    "static_groups": (_bool, False),
    "mse": (_bool, False),
    "block_size": (_int(1), 128),
}, calibrated=True))
register_method(Method("prune", "sparsegpt", sparsegpt_tensor, {
    "sparsity": (_optional(check_fraction), None),
    "n": (_optional(_int(1)), None),
    "m": (_int(2), 4),
    "block_size": (_int(1), 128),
    "damp": (_damp, 0.01),
}, check=_check_sparsegpt, calibrated=True))
register_method(Method("prune", "wanda", wanda_tensor, {"sparsity": (check_fraction, REQUIRED)}, calibrated=True))
