"""The fused fast path of the most common recipe: N:M prune along the rows,
then minmax quantization of the kept values per row or per group of columns.

The staged pipeline runs it as a dozen passes over tensor-sized float32
temporaries (widen, mask, apply, quantize, dequantize for the report, error,
non-zeros, pack, compact). The Swift core's ``nm_quantize_encode`` reads the
original once, row by row, and writes what the compressed file stores (both
sparse layouts: the caller keeps the smaller) and the report's sums. The
stored bytes are identical to the staged path's; the path is taken only for
a tensor whose selected stages are exactly these two, with options the
kernel supports, on a 2-D float32/float16/bfloat16 weight, when the result
goes to a compressed file. Anything else — or a result the staged path
would refuse (larger than the pruned tensor) — goes the staged way.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Optional, Sequence

import numpy as np

from . import _core, _sparse_storage
from ._bitpack import packed_size

__all__ = ["EncodedQuantized", "FusedRecipe", "fused_recipe", "try_fused"]


class EncodedQuantized:
    """A quantized tensor as the compressed file stores it: its parts and
    attributes (the ``quantized`` codec's ``encode`` output), with the
    report's numbers of the pass that made it. ``dequantize()`` decodes it."""

    __slots__ = ("parts", "attrs", "nbytes", "nonzeros", "norm", "difference")

    def __init__(self, parts: dict[str, np.ndarray], attrs: dict[str, Any], nbytes: int, nonzeros: int,
                 norm: float, difference: float) -> None:
        self.parts, self.attrs, self.nbytes = parts, attrs, nbytes
        self.nonzeros, self.norm, self.difference = nonzeros, norm, difference

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.attrs["shape"])

    def decoded(self) -> Any:
        """The :class:`~swiftprune.quantization.QuantizedTensor` these parts hold."""
        from ._methods import _decode_quantized

        return _decode_quantized(self.parts, self.attrs)

    def dequantize(self) -> np.ndarray:
        return self.decoded().dequantize()

    def __repr__(self) -> str:
        return (f"EncodedQuantized(shape={self.shape}, bits={self.attrs['bits']}, layout={self.attrs['layout']!r}, "
                f"nbytes={self.nbytes})")


class FusedRecipe:
    """The two stages of a fusable recipe and their options."""

    def __init__(self, prune: Any, quantize: Any) -> None:
        self.prune, self.quantize = prune, quantize
        self.n, self.m, self.nm_axis = (prune.options[k] for k in ("n", "m", "axis"))
        self.bits, self.symmetric = quantize.options["bits"], quantize.options["symmetric"]
        self.axis, self.group_size = quantize.options["axis"], quantize.options["group_size"]


def _is_nm_prune(stage: Any) -> bool:
    from .pruning import nm_mask

    return (stage.stage == "prune" and stage.method.apply is nm_mask and stage.method.scope == "tensor"
            and set(stage.options) == {"n", "m", "axis"})


def _is_minmax_quantize(stage: Any) -> bool:
    from .quantization import quantize

    apply = stage.method.apply
    return (stage.stage == "quantize" and isinstance(apply, partial) and apply.func is quantize
            and apply.keywords == {"method": "minmax"} and not apply.args and stage.method.scope == "tensor"
            and set(stage.options) - {"scale_dtype"} == {"bits", "symmetric", "axis", "group_size"}
            and stage.options.get("scale_dtype", "float32") == "float32")  # (the fused kernel writes float32 scales)


def fused_recipe(stages: Sequence[Any]) -> Optional[FusedRecipe]:
    """The fusable pair when ``stages`` (those selecting one tensor, in order)
    are exactly an N:M prune then a minmax quantization; else ``None``."""
    if len(stages) != 2 or not _is_nm_prune(stages[0]) or not _is_minmax_quantize(stages[1]):
        return None
    recipe = FusedRecipe(*stages)
    if recipe.axis is None or not isinstance(recipe.axis, int) or recipe.axis not in (0, -2):
        return None  # per-tensor scales need the whole tensor first; axis 1 groups run down the columns
    if recipe.nm_axis not in (1, -1):
        return None  # runs along the rows only (contiguous)
    return recipe


_KINDS = {"float32": np.float32, "float16": np.float16}


def _weights(original: Any) -> Optional[np.ndarray]:
    """The 2-D original as the kernel reads it (bfloat16 as its bit patterns), or None."""
    dtype = str(getattr(original, "dtype", ""))
    if not isinstance(original, np.ndarray) or original.ndim != 2:
        return None
    if dtype == "bfloat16":
        return np.ascontiguousarray(original).view(np.uint16)
    if dtype in _KINDS:
        return np.ascontiguousarray(original)
    return None


def try_fused(recipe: FusedRecipe, track: Any) -> bool:
    """Runs the fused pass on ``track`` (fresh: no stage applied yet) and
    folds its result in as the two stages would; returns False, leaving the
    track untouched, when the staged path must run instead."""
    if track.form is not None or track.mask is not None or track.dense is not None:
        return False
    weights = _weights(track.original)
    if weights is None:
        return False
    shape = tuple(int(d) for d in weights.shape)
    rows, columns = shape
    prune, quantize = recipe.prune, recipe.quantize
    if prune.method.fits(shape, prune.options) is not None or quantize.method.fits(shape, quantize.options) is not None:
        return False  # the staged path applies the stage's on_unfit policy
    n, m, bits = recipe.n, recipe.m, recipe.bits
    group = recipe.group_size if recipe.group_size is not None else columns
    if columns == 0 or columns % m or columns % group:
        return False
    count = rows * columns
    stored = count // m * n
    index_bits = _sparse_storage.nm_index_bits(m)
    if packed_size(stored, bits) + packed_size(stored, index_bits) > packed_size(count, bits):
        return False  # the dense packed layout could win: the kernel does not write it
    try:
        scale, zero_point, nm_values, nm_positions, mask_bits, mask_values, nonzeros, norm, difference = \
            _core.nm_quantize_encode(weights, n, m, bits, recipe.symmetric, group)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{prune.where} on tensor {track.name!r}: {error}") from None
    kind, size = _sparse_storage.choose(count, nonzeros, bits, (n, m))
    after = size + scale.size * 4 + (0 if recipe.symmetric else zero_point.size)
    # The pruned tensor's stored size (PrunedTensor's nm layout: exactly n kept per run).
    before = 4 * stored + packed_size(stored, index_bits)
    if after > before or kind == "packed":
        return False  # the staged path runs the grow check and its on_unfit policy
    attrs: dict[str, Any] = {"shape": list(shape), "bits": bits, "symmetric": recipe.symmetric, "axis": recipe.axis,
                             "group_size": recipe.group_size, "method": "minmax", "packing": "bits", "layout": kind}
    if kind == "nm":
        parts = {"values": nm_values, "positions": nm_positions}
        attrs["nm"] = [n, m, recipe.nm_axis]
    else:
        parts = {"mask": mask_bits, "values": mask_values}
    parts["scale"] = scale
    if not recipe.symmetric:
        parts["zero_point"] = zero_point
    track.form = EncodedQuantized(parts, attrs, after, nonzeros, norm, difference)
    track.stored = after
    track.labels.extend([prune.label, quantize.label])
    return True
