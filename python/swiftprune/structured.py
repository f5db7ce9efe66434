"""Physical channel pruning: smaller Dense/Conv layers, not just masked ones."""
from __future__ import annotations

import numbers
from typing import Any, Dict, List, Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from .pruning import structured_keep

__all__ = ["prune_channels"]

# (output-channel axis, input-channel axis) of a kernel, per layout.
_AXES = {"keras": (-1, -2), "torch": (0, 1)}


def _vector(name: str, value: ArrayLike, length: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {array.shape}")
    return array


def prune_channels(
    layers: Sequence[Mapping[str, Any]],
    amount: Union[float, Sequence[float]],
    layout: str = "keras",
    norm: float = 2,
) -> List[Dict[str, Any]]:
    """Remove output channels (units, filters) along a chain of layers.

    For every layer but the last, the ``round(amount * out_channels)``
    output channels whose kernel slices have the smallest L\\ ``norm`` norm
    are removed (ties: the lower index first, as :func:`structured_mask`),
    together with the matching bias and BatchNorm entries and the matching
    input channels of the next layer's kernel. The arrays returned are
    really smaller, so the pruned model runs faster with no sparse kernels.
    Layers are processed first to last; a layer's channels are scored after
    its input channels were reduced. The last layer keeps its outputs (the
    model's outputs).

    Parameters
    ----------
    layers : sequence of mappings
        One per layer, in forward order, each with:

        - ``"kernel"``: Keras Dense ``(in, out)`` / Conv ``(kh, kw, in, out)``
          (``layout="keras"``), or PyTorch Linear ``(out, in)`` / Conv2d
          ``(out, in, kh, kw)`` (``layout="torch"``). Conv1d/3d work alike.
        - ``"bias"`` (optional): ``(out,)``.
        - ``"batchnorm"`` (optional): the following BatchNorm's per-channel
          vectors, a sequence (e.g. ``[gamma, beta, mean, var]``) or a
          mapping of name to ``(out,)`` vector.

        Other keys are passed through unchanged. Layer ``i + 1``'s input
        channels must be layer ``i``'s output channels (no Flatten or
        grouped convolution in between).
    amount : float in [0, 1], or one per layer except the last
        The fraction of output channels to remove.
    layout : {"keras", "torch"}
    norm : {1, 2, inf}
        The norm that scores a channel's kernel slice.

    Returns
    -------
    list of dict
        One per layer, with the same keys and smaller arrays (dtypes kept:
        this is slicing, not a conversion), plus ``"kept"``: the indices of
        the output channels kept (``int64``).

    Raises
    ------
    TypeError
        ``layers`` is not a sequence of mappings; arrays are not floating.
    ValueError
        Unknown ``layout``; bad ``amount``/``norm``; kernels of rank < 2;
        channel counts that do not chain; vectors of the wrong length; NaN/Inf.

    Examples
    --------
    >>> small = prune_channels([{"kernel": k1, "bias": b1}, {"kernel": k2, "bias": b2}], 0.5)  # doctest: +SKIP
    """
    if layout not in _AXES:
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    out_axis, in_axis = _AXES[layout]
    if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a sequence of mappings, got {type(layers).__name__}")
    count = len(layers)
    if isinstance(amount, numbers.Real) and not isinstance(amount, (bool, np.bool_)):
        amounts = [amount] * max(0, count - 1)
    elif isinstance(amount, Sequence) and not isinstance(amount, (str, bytes)):
        amounts = list(amount)
        if len(amounts) != max(0, count - 1):
            raise ValueError(f"amount must be a number or one per layer except the last ({max(0, count - 1)}), "
                             f"got {len(amounts)} values")
    else:
        raise TypeError(f"amount must be a number in [0, 1] or a sequence of them, got {amount!r}")

    result: List[Dict[str, Any]] = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or "kernel" not in layer:
            raise TypeError(f"layers[{index}] must be a mapping with a 'kernel' entry")
        result.append(dict(layer))
    kernels = []
    for index, layer in enumerate(result):
        kernel = np.asarray(layer["kernel"])
        if kernel.dtype.kind != "f" or kernel.dtype.itemsize not in (2, 4, 8):  # any byte order
            raise TypeError(f"layers[{index}]['kernel'] must be a real floating-point array, got dtype {kernel.dtype}")
        if kernel.ndim < 2:
            raise ValueError(f"layers[{index}]['kernel'] must have at least 2 dimensions, got shape {kernel.shape}")
        if index > 0 and kernel.shape[in_axis] != kernels[-1].shape[out_axis]:
            raise ValueError(
                f"layers[{index}]['kernel'] has {kernel.shape[in_axis]} input channels but layers[{index - 1}] has "
                f"{kernels[-1].shape[out_axis]} output channels ({layout} layout)")
        kernels.append(kernel)
    if count and kernels[-1].size and not np.isfinite(kernels[-1]).all():
        raise ValueError(f"layers[{count - 1}]['kernel'] contains NaN or Inf values")

    for index, layer in enumerate(result):
        kernel = kernels[index]
        out_channels = kernel.shape[out_axis]
        if index == count - 1:
            kept = np.arange(out_channels, dtype=np.int64)
        else:
            keep = structured_keep(kernel, amounts[index], axis=out_axis, norm=norm)
            kept = np.flatnonzero(keep).astype(np.int64)
            kernels[index + 1] = np.take(kernels[index + 1], kept, axis=in_axis)
        kernel = np.take(kernel, kept, axis=out_axis)
        kernels[index] = kernel
        layer["kernel"] = kernel
        if layer.get("bias") is not None:
            layer["bias"] = _vector(f"layers[{index}]['bias']", layer["bias"], out_channels)[kept]
        batchnorm = layer.get("batchnorm")
        if batchnorm is not None:
            name = f"layers[{index}]['batchnorm']"
            if isinstance(batchnorm, Mapping):
                layer["batchnorm"] = {k: _vector(f"{name}[{k!r}]", v, out_channels)[kept] for k, v in batchnorm.items()}
            elif isinstance(batchnorm, Sequence) and not isinstance(batchnorm, (str, bytes)):
                layer["batchnorm"] = [_vector(f"{name}[{i}]", v, out_channels)[kept] for i, v in enumerate(batchnorm)]
            else:
                raise TypeError(f"{name} must be a sequence or mapping of vectors, got {type(batchnorm).__name__}")
        layer["kept"] = kept
    return result
