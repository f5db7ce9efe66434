"""Recipe methods that need calibration data: ``quantize: gptq``, ``quantize:
awq``, ``quantize: smoothquant``, ``prune: sparsegpt`` and ``prune: wanda``.

Each receives, besides the weight and its options, ``calibration=``: a
:class:`~swiftprune.calibration.arrays.LayerView` holding the layer's input
statistics (:class:`~swiftprune.calibration.HessianAccumulator`) and how the
weight maps onto them (``(out, in)`` for PyTorch, ``(in, out)`` kernels for
Keras and ONNX ``MatMul``; conv kernels through their im2col view). Results
come back in the tensor's own shape and layout.

Imported by :mod:`swiftprune._methods` (registration needs the registries).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from ._methods import _bool, _choice, _int, _optional, _real
from ._validation import check_fraction
from .calibrated_pruning import sparsegpt, sparsegpt_quantize, wanda_mask
from .calibration.arrays import LayerView
from .registry import REQUIRED, Fallback, Method, OptionError, register_method
from .activation_folding import awq_input_scales, smoothquant_input_scales
from .quantization import QuantizedTensor, gptq, quantize

__all__ = ["gptq_tensor", "scaled_rtn_tensor", "sparsegpt_tensor", "wanda_tensor"]


def _damp(name: str, value: Any) -> float:
    value = _real(name, value)
    if not (value >= 0.0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _min_samples(name: str, value: Any) -> float:
    return _damp(name, value)  # a finite number >= 0 (0: GPTQ whatever the sample count)


def gptq_tensor(w: np.ndarray, *, calibration: LayerView, bits: int, symmetric: bool, group_size: Optional[int],
                damp: float, act_order: bool, static_groups: bool, mse: bool, block_size: int,
                min_samples: float = 2.0, scale_dtype: str = "float32", center: bool = False,
                no_samples: str = "error") -> Any:
    """GPTQ of one weight tensor against its layer's calibration statistics.

    A layer that received no calibration sample at all (the model never ran
    it on the calibration inputs, or its arrays are empty) is an error
    naming the layer; with ``no_samples="rtn"`` it is rounded to nearest
    instead, with a :class:`~swiftprune.calibration.CalibrationWarning`.
    With some, but fewer than ``min_samples`` x inputs, samples (a layer
    after a global pooling sees one per image) the layer is rounded to
    nearest (``mse``: the MSE-searched scales), with a warning naming the
    layer; the report's stage then reads ``quantize.gptq(fallback minmax)``.

    The result is a :class:`QuantizedTensor` of the tensor's shape with one
    scale per output channel (axis 0 for ``(out, ...)`` weights, -1 for
    ``(..., out)`` kernels) and, with ``group_size``, groups of that many
    input features (a conv kernel: along input-channel x kernel, the layout
    ``quantize`` gives conv kernels too).
    """
    view = calibration
    stats = view.statistics

    def rounded(reason: str) -> Fallback:
        q = quantize(view.to_matrix(w), bits, symmetric=symmetric, axis=0, group_size=group_size,
                     method="mse" if mse else "minmax", scale_dtype=scale_dtype)
        return Fallback(_in_tensor_layout(q, view, group_size), q.method, reason)

    if stats.count_ == 0 and stats.features > 0:
        # Not a weak calibration but a missing one (a module the forward pass never reached, a branch the
        # inputs do not take, an empty array): rounding it silently would hide the mistake.
        reason = (f"layer {view.name!r} received 0 calibration samples (the model never ran it on the calibration "
                  "inputs — an unused module or a branch they do not take — or its calibration arrays are empty)")
        if no_samples == "error":
            raise ValueError(f"{reason}, so GPTQ has nothing to fit: check the calibration inputs, leave the tensor "
                             "out of the stage (exclude), or set the stage option no_samples: rtn to round such "
                             "layers to nearest")
        return rounded(f"{reason}; no_samples = rtn: rounded to nearest")
    if stats.count_ < min_samples * stats.features:
        # A Hessian from fewer samples than (twice) its inputs fits those samples, not the layer
        # (squeeze-excite convs after a global pool see one sample per image): round to nearest.
        needed = math.ceil(min_samples * stats.features)
        return rounded(f"layer {view.name!r}: {stats.count_} calibration samples for {stats.features} inputs: GPTQ "
                       f"needs at least {needed} here (min_samples = {min_samples:g} x inputs; from fewer it fits "
                       f"those samples, not the layer), so this tensor is rounded to nearest; give at least {needed} "
                       "samples (tokens or positions) or lower the option min_samples (0: GPTQ whatever the count)")
    q = gptq(view.to_matrix(w), stats, bits, group_size, damp, symmetric=symmetric, act_order=act_order,
             static_groups=static_groups, mse=mse, block_size=block_size, center=center)
    return _in_tensor_layout(q, view, group_size).with_scale_dtype(scale_dtype)


def _in_tensor_layout(q: QuantizedTensor, view: LayerView, group_size: Optional[int]) -> QuantizedTensor:
    """A quantized ``(out, in)`` matrix of a layer as a QuantizedTensor of the layer's own weight shape
    (a conv kernel's groups run along its input-channel x kernel dimension, as ``quantize`` lays them out)."""
    from .quantization import _core_scale_shape

    values, scale, zero_point = q.values, q.scale, q.zero_point
    if view.layout == "torch":
        axis = 0
        values = values.reshape(view.shape)
    else:
        axis = len(view.shape) - 1
        values = view.from_matrix(values)
        scale, zero_point = np.ascontiguousarray(scale.T), np.ascontiguousarray(zero_point.T)
    scale_shape = _core_scale_shape(tuple(view.shape), axis, group_size)
    out = QuantizedTensor._trusted(values, scale.reshape(scale_shape), zero_point.reshape(scale_shape), bits=q.bits,
                                   symmetric=q.symmetric, axis=axis, group_size=group_size, method=q.method)
    out.scale_dtype = q.scale_dtype  # (the same scale values, moved)
    return out


def scaled_rtn_tensor(w: np.ndarray, *, calibration: LayerView, bits: int, symmetric: bool,
                      group_size: Optional[int], **_: Any) -> QuantizedTensor:
    """Round-to-nearest of an AWQ / SmoothQuant layer whose weight the fold
    pass already scaled (``W · diag(s)``; ``1/s`` is in the op before it):
    one scale per output channel and groups of ``group_size`` input features,
    in the tensor's own layout (as :func:`gptq_tensor`)."""
    view = calibration
    q = quantize(view.to_matrix(w), bits, symmetric=symmetric, axis=0, group_size=group_size)
    return _in_tensor_layout(q, view, group_size)


def sparsegpt_tensor(w: np.ndarray, *, calibration: LayerView, sparsity: Optional[float], n: Optional[int], m: int,
                     block_size: int, damp: float, bits: Optional[int], group_size: Optional[int],
                     symmetric: bool) -> tuple[np.ndarray, Any]:
    """SparseGPT of one weight tensor: ``(keep-mask, updated weights)`` in the tensor's shape; with ``bits``, the
    joint sparsification and quantization: ``(keep-mask, QuantizedTensor)`` (zeros where pruned)."""
    view = calibration
    nm = None if n is None else (n, m)
    if bits is not None:
        if group_size is not None and len(view.shape) != 2:
            raise ValueError(f"group_size = {group_size} needs a 2-D weight, got shape {view.shape} (a conv kernel: "
                             "use group_size: null, one scale per output channel)")
        q = sparsegpt_quantize(view.to_matrix(w), view.statistics, None if nm else sparsity, nm=nm, bits=bits,
                               group_size=group_size, symmetric=symmetric, block_size=block_size, damp=damp)
        q = _in_tensor_layout(q, view, group_size)
        return q.dequantize() != 0, q
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
    "min_samples": (_min_samples, 2.0),
    "scale_dtype": (_choice("float32", "float16"), "float32"),
    "center": (_bool, False),  # the centred Hessian; the stage must have bias_correction: true (recipe.py)
    "no_samples": (_choice("error", "rtn"), "error"),  # a layer no calibration sample reached
}, calibrated=True))
register_method(Method("quantize", "awq", scaled_rtn_tensor, {
    "bits": (_int(2, 8), 4),
    "symmetric": (_bool, False),  # AWQ's default: affine (zero point) groups
    "group_size": (_optional(_int(1)), 128),
    "n_grid": (_int(1), 20),
    "insert_scale": (_bool, False),  # a Mul by 1/s where no op can absorb it (ONNX; adds ops, so opt-in)
}, calibrated=True, input_scales=awq_input_scales))
register_method(Method("quantize", "smoothquant", scaled_rtn_tensor, {
    "alpha": (check_fraction, 0.5),
    "bits": (_int(2, 8), 8),
    "symmetric": (_bool, True),
    "group_size": (_optional(_int(1)), None),  # W8A8: one scale per output channel
    "insert_scale": (_bool, False),
}, calibrated=True, input_scales=smoothquant_input_scales))
register_method(Method("prune", "sparsegpt", sparsegpt_tensor, {
    "sparsity": (_optional(check_fraction), None),
    "n": (_optional(_int(1)), None),
    "m": (_int(2), 4),
    "block_size": (_int(1), 128),
    "damp": (_damp, 0.01),
    "bits": (_optional(_int(2, 8)), None),  # joint quantization of the kept weights (SparseGPT section 3.5)
    "group_size": (_optional(_int(1)), 128),
    "symmetric": (_bool, True),
}, check=_check_sparsegpt, calibrated=True))
register_method(Method("prune", "wanda", wanda_tensor, {"sparsity": (check_fraction, REQUIRED)}, calibrated=True))
