"""The built-in recipe operations and compressed-file codecs.

Every operation a recipe stage can name is one :class:`~swiftprune.registry.Method`
entry here: the function it calls and a validator and default per option
(option names are the keyword arguments of that function). Every compressed
type has one :class:`~swiftprune.registry.Codec`: what is stored in a
``.safetensors`` file and how the object is rebuilt from it, exactly.

Imported by :mod:`swiftprune.model` once its registries exist.
"""
from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any, Callable, Mapping, Optional

import numpy as np

from . import _core, _sparse_storage
from ._bitpack import pack_bits, unpack_bits
from ._fused import EncodedQuantized
from ._validation import check_fraction, check_int
from .clustering import _INITS as _CLUSTER_INITS
from .clustering import ClusteredTensor, cluster
from .factorization import LowRankFactors, low_rank
from .registry import REQUIRED, Codec, Method, OptionError, register_codec, register_method
from .pruning import block_mask, global_magnitude_masks, magnitude_mask, nm_mask, random_mask, structured_mask
from .quantization import QuantizedTensor, _group_matrix, quantize

Validator = Callable[[str, Any], Any]

# --------------------------------------------------------------------------- #
# Option validators: (name, value) -> checked value, TypeError / ValueError naming the option
# --------------------------------------------------------------------------- #


def _int(minimum: Optional[int] = None, maximum: Optional[int] = None) -> Validator:
    return lambda name, value: check_int(name, value, minimum=minimum, maximum=maximum)


def _optional(validator: Validator) -> Validator:
    return lambda name, value: None if value is None else validator(name, value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _choice(*choices: str) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    return check


def _real(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _percentile(name: str, value: Any) -> float:
    value = _real(name, value)
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be in [0, 100], got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    value = _real(name, value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _norm(name: str, value: Any) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "infinity"):
        return math.inf
    value = _real(name, value) if not isinstance(value, str) else value
    if value not in (1.0, 2.0, math.inf):
        raise ValueError(f"{name} must be 1, 2 or inf, got {value!r}")
    return value


def _block(name: str, value: Any) -> tuple[int, int]:
    """A pair of ints; also "RxC" (as the command line writes it)."""
    if isinstance(value, str):
        rows, sep, columns = value.lower().partition("x")
        if not sep or not rows.strip().isdigit() or not columns.strip().isdigit():
            raise ValueError(f"{name} must be a pair [rows, columns] or 'RxC' such as '1x4', got {value!r}")
        value = (int(rows), int(columns))
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair [rows, columns], got {value!r}")
    return (check_int(f"{name}[0]", value[0], minimum=1), check_int(f"{name}[1]", value[1], minimum=1))


_SEED = _int(0, 2**64 - 1)


# --------------------------------------------------------------------------- #
# Prune
# --------------------------------------------------------------------------- #


def _check_nm(options: Mapping[str, Any]) -> None:
    if not 1 <= options["n"] < options["m"]:
        raise OptionError("n", f"n must satisfy 1 <= n < m = {options['m']}, got n = {options['n']}")


def _axis_reason(shape: tuple[int, ...], axis: int) -> Optional[str]:
    if not -len(shape) <= axis < len(shape):
        return f"it has no axis {axis} (shape {shape})"
    return None


def _nm_fits(shape: tuple[int, ...], options: Mapping[str, Any]) -> Optional[str]:
    axis, m = options["axis"], options["m"]
    reason = _axis_reason(shape, axis)
    if reason is None and shape[axis] % m:
        reason = f"axis {axis} has {shape[axis]} entries, not a multiple of m = {m} (shape {shape})"
    return reason


def _structured_fits(shape: tuple[int, ...], options: Mapping[str, Any]) -> Optional[str]:
    return _axis_reason(shape, options["axis"])


def _global_magnitude(weights: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    return global_magnitude_masks(weights, sparsity)


register_method(Method("prune", "magnitude", magnitude_mask, {"sparsity": (check_fraction, REQUIRED)}), default=True)
register_method(Method("prune", "global_magnitude", _global_magnitude, {"sparsity": (check_fraction, REQUIRED)},
                       scope="model"))
register_method(Method("prune", "random", random_mask,
                       {"sparsity": (check_fraction, REQUIRED), "seed": (_SEED, 0)}))
register_method(Method("prune", "structured", structured_mask,
                       {"amount": (check_fraction, REQUIRED), "axis": (_int(), 0), "norm": (_norm, 2.0)},
                       fits=_structured_fits))
register_method(Method("prune", "nm", nm_mask, {"n": (_int(1), 2), "m": (_int(2), 4), "axis": (_int(), -1)},
                       check=_check_nm, fits=_nm_fits))
register_method(Method("prune", "block", block_mask,
                       {"sparsity": (check_fraction, REQUIRED), "block": (_block, (1, 4))}))

# --------------------------------------------------------------------------- #
# Quantize
# --------------------------------------------------------------------------- #


def _check_quantize(options: Mapping[str, Any]) -> None:
    if options.get("group_size") is not None and options.get("axis") is None:
        raise OptionError("group_size", "group_size needs an axis (the channel axis of a 2-D weight or conv kernel: 0 for "
                                        "PyTorch (out, in), -1 for Keras (in, out)), got axis=None")


def _quantize_fits(shape: tuple[int, ...], options: Mapping[str, Any]) -> Optional[str]:
    axis, group = options.get("axis"), options.get("group_size")
    if axis is None:
        return None
    reason = _axis_reason(shape, axis)
    if reason is not None or group is None:
        return reason
    # Conv kernels are grouped along their input-channel x kernel dimension (quantization._group_matrix).
    try:
        rows, columns, channel_axis = _group_matrix(tuple(shape), axis % len(shape), group)
    except ValueError as error:
        return str(error)
    grouped = columns if channel_axis == 0 else rows
    if grouped % group:
        return (f"group_size {group} does not divide the {grouped} entries per channel of shape {shape} "
                f"(channel axis {axis})")
    return None


_QUANTIZE_OPTIONS = {
    "bits": (_int(2, 8), 8),
    "symmetric": (_bool, True),
    "axis": (_optional(_int()), None),
    "group_size": (_optional(_int(1)), None),
    "scale_dtype": (_choice("float32", "float16"), "float32"),
}

for _name in ("minmax", "percentile", "mse"):
    _options = dict(_QUANTIZE_OPTIONS)
    if _name == "percentile":
        _options["percentile"] = (_percentile, 99.99)
    register_method(Method("quantize", _name, partial(quantize, method=_name), _options, check=_check_quantize,
                           fits=_quantize_fits), default=_name == "minmax")

# --------------------------------------------------------------------------- #
# Cluster
# --------------------------------------------------------------------------- #


def _cluster(w: np.ndarray, *, mask: Optional[np.ndarray] = None, n_clusters: int, init: str, max_iter: int,
             seed: int, axis: Optional[int] = None, group_size: Optional[int] = None) -> ClusteredTensor:
    """k-means; on pruned weights (``mask`` given, some entries pruned) the
    kept values get ``n_clusters - 1`` centroids and the pruned entries a
    centroid of exactly 0, so they stay zero without storing the mask.
    Per-channel palettes (``axis``) are fitted on all values; if a pruned
    entry then lands off zero the pipeline stores the keep-mask with them."""
    if axis is not None:
        return cluster(w, n_clusters, init=init, max_iter=max_iter, seed=seed, axis=axis, group_size=group_size)
    if mask is None or mask.all() or n_clusters < 2:
        return cluster(w, n_clusters, init=init, max_iter=max_iter, seed=seed)
    kept = w[mask]
    dtype = np.uint8 if n_clusters <= 256 else np.uint16
    if kept.size == 0:
        return ClusteredTensor(np.zeros(w.shape, dtype), np.zeros(1, np.float32))
    fitted = cluster(kept, n_clusters - 1, init=init, max_iter=max_iter, seed=seed)
    zero = int(np.searchsorted(fitted.centroids, 0.0))
    centroids = np.insert(fitted.centroids, zero, np.float32(0.0))
    indices = np.full(w.shape, zero, dtype=dtype)
    kept_indices = fitted.indices.astype(dtype)
    kept_indices[kept_indices >= zero] += 1
    indices[mask] = kept_indices
    return ClusteredTensor(indices, centroids, fitted.iterations)


def _check_cluster(options: Mapping[str, Any]) -> None:
    if options.get("group_size") is not None and options.get("axis") is None:
        raise OptionError("group_size", "group_size needs an axis (the channel axis the palettes run along: 0 "
                                        "for PyTorch/ONNX (out, ...), -1 for Keras (..., out)), got axis=None")


register_method(Method("cluster", "kmeans", _cluster, {
    "n_clusters": (_int(1, 65536), 16),
    "init": (_choice(*_CLUSTER_INITS), "linear"),
    "max_iter": (_int(0), 100),
    "seed": (_SEED, 0),
    "axis": (_optional(_int()), None),
    "group_size": (_optional(_int(1)), None),
}, masked=True, check=_check_cluster), default=True)

# --------------------------------------------------------------------------- #
# Low rank
# --------------------------------------------------------------------------- #


def _check_low_rank(options: Mapping[str, Any]) -> None:
    given = [key for key in ("rank", "energy", "ratio") if options.get(key) is not None]
    if len(given) != 1:
        raise OptionError(given[1] if len(given) > 1 else "rank",
                          f"give exactly one of 'rank', 'energy' or 'ratio', got {', '.join(given) or 'none'}")


for _name in ("auto", "svd", "randomized"):
    register_method(Method("low_rank", _name, partial(low_rank, method=_name), {
        "rank": (_optional(_int(0)), None),
        "energy": (_optional(check_fraction), None),
        "ratio": (_optional(_positive), None),
        "layout": (_choice("keras", "torch"), "keras"),
        "seed": (_SEED, 0),
    }, check=_check_low_rank, accepts_pruned=False,
        fits=lambda shape, options: None if len(shape) >= 2 else f"low_rank needs 2 or more dimensions, got shape {shape}"),
        default=_name == "auto")

# --------------------------------------------------------------------------- #
# Codecs
# --------------------------------------------------------------------------- #


def _array(parts: Mapping[str, Any], key: str, dtype: Any, ndim: Optional[int] = None) -> np.ndarray:
    array = np.asarray(parts[key])
    if array.dtype != dtype or (ndim is not None and array.ndim != ndim):
        raise ValueError(f"stored part {key!r} must be {np.dtype(dtype).name}"
                         f"{f' of rank {ndim}' if ndim is not None else ''}, got {array.dtype} {array.shape}")
    return array


def _shape(attrs: Mapping[str, Any]) -> tuple[int, ...]:
    shape = attrs["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ValueError(f"shape must be a list of sizes, got {shape!r}")
    return tuple(shape)


def _quantized_layout(q: QuantizedTensor) -> tuple[str, int, Optional[np.ndarray]]:
    """The storage layout of `q`'s values (see ``_sparse_storage``), its bytes, and the non-zero mask."""
    count = q.values.size
    nonzero = q.nonzero_mask()
    nm = None
    if q.nm is not None and _sparse_storage.nm_fits(nonzero, q.nm[0], q.nm[1], q.nm[2]):
        nm = (q.nm[0], q.nm[1])
    kind, size = _sparse_storage.choose(count, int(np.count_nonzero(nonzero)), q.bits, nm)
    return kind, size, nonzero


def _quantized_nbytes(q: QuantizedTensor) -> int:
    """Exactly the bytes the file stores for `q`: values in their layout, scales, affine zero points."""
    return _quantized_layout(q)[1] + q.scale_nbytes + (0 if q.symmetric else q.zero_point.size)


def _encode_quantized(q: QuantizedTensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    kind, _, nonzero = _quantized_layout(q)
    attrs: dict[str, Any] = {"shape": list(q.shape), "bits": q.bits, "symmetric": q.symmetric, "axis": q.axis,
                             "group_size": q.group_size, "method": q.method, "packing": "bits", "layout": kind}
    if kind == "packed":
        parts = {"values": q.packed()}
    elif kind == "bitmask":
        parts = {"mask": _sparse_storage.pack_mask(nonzero),
                 "values": pack_bits(_sparse_storage.masked_values(q.values, nonzero), q.bits)}
    else:
        n, m, axis = q.nm
        stored, positions = _sparse_storage.nm_select(q.values, nonzero, n, m, axis)
        parts = {"values": pack_bits(stored, q.bits),
                 "positions": pack_bits(positions, _sparse_storage.nm_index_bits(m))}
        attrs["nm"] = [n, m, axis]
    if q.scale_dtype == "float16":  # the values are float16 ones: the conversion is exact
        parts["scale"] = q.scale.astype(np.float16)
        attrs["scale_dtype"] = "float16"
    else:
        parts["scale"] = q.scale
    if not q.symmetric:  # symmetric zero points are all 0: not stored
        parts["zero_point"] = q.zero_point
    return parts, attrs


def _legacy_values(packed: np.ndarray, shape: tuple[int, ...], bits: int, symmetric: bool) -> np.ndarray:
    """Values from files of swiftprune <= 0.1.0: 2..4 bits as nibbles, 5..8 bits one per byte.
    (Nibbles, two per byte, low first, are the 4-bit stream of :func:`unpack_bits`.)"""
    count = math.prod(shape)
    if bits <= 4:
        return unpack_bits(packed, count, 4, symmetric).reshape(shape)
    if packed.size != count:
        raise ValueError(f"{count} values need {count} bytes, got {packed.size}")
    return packed.view(np.int8 if symmetric else np.uint8).reshape(shape).copy()


def _decode_quantized(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> QuantizedTensor:
    shape = _shape(attrs)
    bits, symmetric = attrs["bits"], attrs["symmetric"]
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits!r}")
    scale_dtype = attrs.get("scale_dtype", "float32")
    if scale_dtype not in ("float32", "float16"):
        raise ValueError(f"scale_dtype must be 'float32' or 'float16', got {scale_dtype!r}")
    scale = _array(parts, "scale", np.dtype(scale_dtype)).astype(np.float32)
    dtype = np.int8 if symmetric else np.uint8
    zero_point = np.zeros(scale.shape, dtype) if symmetric else _array(parts, "zero_point", dtype)
    packed = _array(parts, "values", np.uint8, 1)
    layout = attrs.get("layout", "packed")
    count = math.prod(shape)
    if attrs.get("packing") != "bits":
        values = _legacy_values(packed, shape, bits, symmetric)
    elif layout == "packed":
        values = QuantizedTensor.unpack(packed, shape, bits, symmetric)
    else:
        # The zeros: each value's zero point (the scale layout is checked by the constructor first).
        blank = QuantizedTensor(np.zeros(shape, dtype), scale, zero_point, bits=bits, symmetric=symmetric,
                                axis=attrs["axis"], group_size=attrs["group_size"])
        fill = np.array(blank.zero_points_full(), dtype=dtype)
        if layout == "bitmask":
            mask = _sparse_storage.unpack_mask(_array(parts, "mask", np.uint8, 1), shape)
            fill[mask] = unpack_bits(packed, int(np.count_nonzero(mask)), bits, symmetric)
            values = fill
        elif layout == "nm":
            n, m, axis = _sparse_storage.nm_attr(attrs, shape)
            stored = count // m * n
            positions = unpack_bits(_array(parts, "positions", np.uint8, 1), stored, _sparse_storage.nm_index_bits(m))
            values = np.ascontiguousarray(_sparse_storage.nm_scatter(
                fill, unpack_bits(packed, stored, bits, symmetric), positions, n, m, axis))
        else:
            raise ValueError(f"unknown layout {layout!r}")
    q = QuantizedTensor(values, scale, zero_point, bits=bits, symmetric=symmetric, axis=attrs["axis"],
                        group_size=attrs["group_size"], method=str(attrs.get("method", "minmax")),
                        scale_dtype=scale_dtype)
    if layout == "nm":
        q.nm = _sparse_storage.nm_attr(attrs, shape)
    return q


# A fused prune + quantize pass (swiftprune._fused) hands over its tensor already encoded.
register_codec(Codec(kind="quantized", type=(QuantizedTensor, EncodedQuantized), dense=lambda q: q.dequantize(),
                     nbytes=lambda q: q.nbytes if isinstance(q, EncodedQuantized) else _quantized_nbytes(q),
                     encode=lambda q: ((dict(q.parts), dict(q.attrs)) if isinstance(q, EncodedQuantized)
                                       else _encode_quantized(q)),
                     decode=_decode_quantized))


def index_bits(n_clusters: int) -> int:
    """Bits per stored cluster index (as ``ClusteredTensor.nbytes`` counts them)."""
    return max(1, math.ceil(math.log2(n_clusters))) if n_clusters > 1 else 1


_CHUNK = 1 << 20  # indices per step of the bit (un)packing: bounded temporary memory


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Indices as a little-endian bit stream of ``bits`` bits each (1-D uint8,
    ``ceil(size * bits / 8)`` bytes); up to 8 bits are packed by the Swift core."""
    flat = np.ascontiguousarray(indices).reshape(-1)
    if bits <= 8:
        return pack_bits(flat.astype(np.uint8, copy=False), bits)
    if bits == 16:
        return flat.astype(f"<u{bits // 8}").view(np.uint8).copy()
    out = np.empty((flat.size * bits + 7) // 8, np.uint8)
    step = _CHUNK  # a multiple of 8, so every chunk starts on a byte boundary
    for start in range(0, flat.size, step):
        chunk = flat[start:start + step].astype("<u2").view(np.uint8).reshape(-1, 2)
        stream = np.unpackbits(chunk, axis=1, bitorder="little")[:, :bits]
        packed = np.packbits(stream.reshape(-1), bitorder="little")
        begin = start * bits // 8
        out[begin:begin + packed.size] = packed
    return out


def unpack_indices(packed: np.ndarray, count: int, bits: int, dtype: Any) -> np.ndarray:
    """The inverse of :func:`pack_indices`: ``count`` indices of ``dtype``."""
    need = (count * bits + 7) // 8
    if packed.size != need:
        raise ValueError(f"{count} indices of {bits} bits need {need} packed bytes, got {packed.size}")
    if bits <= 8:
        return unpack_bits(packed, count, bits).astype(dtype, copy=False)
    if bits == 16:
        return packed.view(f"<u{bits // 8}").astype(dtype)
    out = np.empty(count, dtype)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        begin = start * bits // 8
        stream = np.unpackbits(packed[begin:begin + (n * bits + 7) // 8], count=n * bits, bitorder="little")
        wide = np.zeros((n, 16), np.uint8)
        wide[:, :bits] = stream.reshape(n, bits)
        out[start:start + n] = np.packbits(wide, axis=1, bitorder="little").view("<u2").reshape(-1)
    return out


def _encode_clustered(c: ClusteredTensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    bits = index_bits(c.n_clusters)
    return ({"indices": pack_indices(c.indices, bits), "centroids": c.centroids},
            {"shape": list(c.shape), "index_bits": bits, "index_dtype": c.indices.dtype.name,
             "iterations": c.iterations, "axis": c.axis, "group_size": c.group_size})


def _decode_clustered(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> ClusteredTensor:
    shape = _shape(attrs)
    axis, group_size = attrs.get("axis"), attrs.get("group_size")
    centroids = _array(parts, "centroids", np.float32, 1 if axis is None else 2)
    bits = attrs["index_bits"]
    if centroids.size == 0 or bits != index_bits(centroids.shape[-1]):
        raise ValueError(f"{centroids.shape[-1]} centroids do not take {bits}-bit indices")
    if attrs["index_dtype"] not in ("uint8", "uint16"):
        raise ValueError(f"index_dtype must be uint8 or uint16, got {attrs['index_dtype']!r}")
    indices = unpack_indices(_array(parts, "indices", np.uint8, 1), math.prod(shape), bits,
                             np.dtype(attrs["index_dtype"]))
    return ClusteredTensor(indices.reshape(shape), centroids, int(attrs.get("iterations", 0)), axis=axis,
                           group_size=group_size)


register_codec(Codec(kind="clustered", type=ClusteredTensor, dense=lambda c: c.dequantize(),
                     nbytes=lambda c: c.nbytes, encode=_encode_clustered, decode=_decode_clustered))


def _factor_shape(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """The 2-D matrix a weight of `shape` is factorized as (see ``low_rank``)."""
    if len(shape) < 2:
        raise ValueError(f"factorized weights have at least 2 dimensions, got shape {shape}")
    if len(shape) == 2:
        return shape[0], shape[1]
    if layout == "keras":
        return math.prod(shape[:-1]), shape[-1]
    return shape[0], math.prod(shape[1:])


def _encode_low_rank(f: LowRankFactors) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return {"a": f.a, "b": f.b}, {"shape": list(f.shape), "layout": f.layout}


def _decode_low_rank(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> LowRankFactors:
    shape, layout = _shape(attrs), attrs["layout"]
    if layout not in ("keras", "torch"):
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    a, b = _array(parts, "a", np.float32, 2), _array(parts, "b", np.float32, 2)
    rows, columns = _factor_shape(shape, layout)
    if a.shape[0] != rows or b.shape[1] != columns or a.shape[1] != b.shape[0]:
        raise ValueError(f"factors {a.shape} and {b.shape} do not multiply to the ({rows}, {columns}) matrix "
                         f"of a {layout} weight of shape {shape}")
    return LowRankFactors(a, b, shape, layout)


register_codec(Codec(kind="low_rank", type=LowRankFactors, dense=lambda f: f.reconstruct(),
                     nbytes=lambda f: f.nbytes, encode=_encode_low_rank, decode=_decode_low_rank))


# --------------------------------------------------------------------------- #
# Float16 storage ("keep float16")
# --------------------------------------------------------------------------- #

from . import half_precision as _half  # noqa: E402

register_method(Method("quantize", "float16", _half.to_float16, {}))
register_codec(Codec(kind="float16", type=_half.HalfPrecisionTensor, dense=lambda t: t.dequantize(),
                     nbytes=lambda t: t.nbytes, encode=_half._encode, decode=_half._decode))

from . import calibrated_methods  # noqa: E402,F401  (gptq, sparsegpt, wanda: registered once the built-ins are)
