"""Export to the ``compressed-tensors`` checkpoint format (Hugging Face
transformers / vLLM): a ``model.safetensors`` plus ``config.json`` with the
``quantization_config`` that tells a loader how to decompress it.

Weights follow PyTorch's ``Linear`` layout ``(out_features, in_features)``
and are named ``<module>.weight`` (a ``state_dict``). Written without torch,
following compressed-tensors 0.20:

* quantized weights (``format: pack-quantized``; integer type, symmetric or
  asymmetric, strategy ``tensor`` for one scale, ``channel`` for ``axis=0``,
  ``group`` for ``axis=0, group_size=g``): ``<module>.weight_packed`` int32
  ``(out, ceil(in * bits / 32))`` (the values offset by ``2**(bits-1)`` to
  unsigned and packed densely, value ``i`` of a row at bits
  ``[i*bits, (i+1)*bits)`` of its little-endian words),
  ``<module>.weight_scale`` float32 (``(1,)``, ``(out, 1)`` or ``(out,
  in/g)``), ``<module>.weight_shape`` int64 ``[out, in]`` and, when
  asymmetric, ``<module>.weight_zero_point`` packed the same way along
  dimension 0;
* pruned float weights (``sparsity_config``, ``format: sparse-bitmask``):
  ``<name>.compressed`` (the non-zero values, row by row),
  ``<name>.bitmask`` uint8 ``(out, ceil(in / 8))`` (``np.packbits(...,
  bitorder="little")`` per row), ``<name>.row_offsets`` int64 and
  ``<name>.shape`` int64;
* everything else (biases, norms, tensors no stage touched, clustered or
  factorized weights as their dense float32 reconstruction) as dense tensors.

A quantized weight that was also pruned is written pack-quantized (its zeros
are stored as values: compressed-tensors has no sparse + quantized format
besides the retired 2:4 ones).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np

from .._bitpack import pack_bits
from ..io import SafetensorsWriter, atomic_path

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["to_compressed_tensors", "CompressedTensorsExport", "pack_to_int32"]

FORMAT_VERSION = "0.20.1"  # the compressed-tensors release whose layout this follows


@dataclass
class CompressedTensorsExport:
    """What :func:`to_compressed_tensors` wrote: the directory, the measured
    size of ``model.safetensors``, the ``quantization_config`` and per
    weight how it is stored."""

    directory: str
    nbytes: int
    quantization_config: dict[str, Any]
    weights: dict[str, str] = field(default_factory=dict)


def pack_to_int32(values: np.ndarray, bits: int, packed_dim: int = 1) -> np.ndarray:
    """compressed-tensors' dense int32 packing of signed ``bits``-bit values
    (a 2-D int array in ``[-2**(bits-1), 2**(bits-1) - 1]``): offset to
    unsigned, then each row (``packed_dim=1``; columns for 0) as a
    little-endian bit stream in ``ceil(len * bits / 32)`` int32 words."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"pack_to_int32 packs 2-D arrays, got shape {values.shape}")
    if packed_dim == 0:
        return pack_to_int32(values.T, bits).T.copy()
    rows, cols = values.shape
    offset = 1 << (bits - 1)
    codes = (values.astype(np.int16) + offset).astype(np.uint8)
    padded_cols = -(-cols // 32) * 32  # 32 values of b bits are exactly b words
    if padded_cols != cols:
        codes = np.concatenate([codes, np.zeros((rows, padded_cols - cols), np.uint8)], axis=1)
    words = pack_bits(codes, bits).view("<i4").reshape(rows, padded_cols // 32 * bits)
    return np.ascontiguousarray(words[:, :-(-cols * bits // 32)]).astype(np.int32)


def _strategy(q: Any, name: str) -> tuple[str, Optional[int]]:
    if q.values.ndim != 2:
        raise ValueError(f"{name}: compressed-tensors quantizes 2-D Linear weights (out, in), got shape {q.shape}")
    if q.axis is None:
        return "tensor", None
    if q.axis % 2 != 0:
        raise ValueError(f"{name}: compressed-tensors needs scales per output row (axis=0 for a PyTorch (out, in) "
                         f"weight), got axis={q.axis}")
    if q.group_size is None:
        return "channel", None
    return "group", int(q.group_size)


def _quantized_parts(q: Any, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    strategy, group = _strategy(q, name)
    offset = 1 << (q.bits - 1)
    signed = q.values.astype(np.int16) - (0 if q.symmetric else offset)  # compressed-tensors' signed integers
    prefix = name[: -len(".weight")] if name.endswith(".weight") else name
    parts = {f"{prefix}.weight_packed": pack_to_int32(signed, q.bits),
             f"{prefix}.weight_scale": np.ascontiguousarray(
                 q.scale.reshape(1) if strategy == "tensor" else q.scale, dtype=np.float32),
             f"{prefix}.weight_shape": np.array(q.shape, np.int64)}
    if not q.symmetric:
        zero = q.zero_point.astype(np.int16) - offset
        if strategy == "tensor":
            parts[f"{prefix}.weight_zero_point"] = zero.reshape(1).astype(np.int8)
        else:
            parts[f"{prefix}.weight_zero_point"] = pack_to_int32(zero.reshape(q.scale.shape), q.bits, packed_dim=0)
    args = {"num_bits": q.bits, "type": "int", "symmetric": bool(q.symmetric), "strategy": strategy,
            "group_size": group, "block_structure": None, "dynamic": False, "actorder": None,
            "observer": "minmax", "observer_kwargs": {}}
    return parts, args


def _bitmask_parts(dense: np.ndarray, name: str) -> dict[str, np.ndarray]:
    if dense.ndim != 2:
        raise ValueError(f"{name}: sparse-bitmask stores 2-D weights, got shape {dense.shape}")
    keep = dense != 0
    counts = keep.sum(axis=1)
    return {f"{name}.compressed": dense[keep].astype(dense.dtype),
            f"{name}.bitmask": np.packbits(keep, axis=-1, bitorder="little"),
            f"{name}.row_offsets": (np.cumsum(counts) - counts).astype(np.int64),
            f"{name}.shape": np.array(dense.shape, np.int64)}


def to_compressed_tensors(compressed: Any, directory: PathLike, *, config: Any = None,
                          ignore: tuple[str, ...] = ()) -> CompressedTensorsExport:
    """Writes a compressed-tensors checkpoint (``model.safetensors`` +
    ``config.json``) into ``directory``.

    Parameters
    ----------
    compressed : CompressionResult, str / os.PathLike or mapping
        A :func:`~swiftprune.compress` result of a PyTorch ``state_dict``
        (``(out, in)`` weights, quantized with ``axis=0``), the path of a
        compressed ``.safetensors`` it saved, or a mapping name → form.
    directory : str or os.PathLike
        Created if missing; ``model.safetensors`` and ``config.json`` are
        written atomically.
    config : mapping or path, optional
        The model's ``config.json`` (a dict or its path) to add the
        ``quantization_config`` to; default: a config holding only it.
    ignore : tuple of str
        Module names listed in the config's ``ignore``.

    Returns
    -------
    CompressedTensorsExport

    Raises
    ------
    ValueError
        A quantized weight that is not 2-D or whose scales are not per output
        row (``axis=0``) or per tensor.
    """
    from ..model import CompressionResult, PrunedTensor, load_compressed
    from ..quantization import QuantizedTensor
    from ..registry import codec_for

    if isinstance(compressed, (str, os.PathLike)):
        compressed = load_compressed(compressed)
    if isinstance(compressed, CompressionResult):
        compressed.check_no_inserted_ops("a compressed-tensors checkpoint")
    forms = dict(compressed.tensors) if isinstance(compressed, CompressionResult) else dict(compressed)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if config is None:
        config_data: dict[str, Any] = {}
    elif isinstance(config, Mapping):
        config_data = dict(config)
    else:
        with open(os.fspath(config), encoding="utf-8") as f:
            config_data = json.load(f)

    groups: dict[str, dict[str, Any]] = {}
    sparse_targets: list[str] = []
    report: dict[str, str] = {}
    total = zeros = 0
    path = os.path.join(directory, "model.safetensors")
    with SafetensorsWriter(path, header_reserve=0) as writer:
        for name, form in forms.items():
            if isinstance(form, QuantizedTensor):
                parts, args = _quantized_parts(form, name)
                key = json.dumps(args, sort_keys=True)
                group = groups.setdefault(key, {"targets": [], "weights": args, "input_activations": None,
                                                "output_activations": None, "format": "pack-quantized"})
                group["targets"].append(name[: -len(".weight")] if name.endswith(".weight") else name)
                report[name] = f"pack-quantized int{form.bits} {args['strategy']}" + (
                    f" {args['group_size']}" if args["group_size"] else "")
            elif isinstance(form, PrunedTensor) and form.mask.ndim == 2:
                dense = form.to_dense()
                parts = _bitmask_parts(dense, name)
                sparse_targets.append(name)
                total += dense.size
                zeros += dense.size - int(np.count_nonzero(dense))
                report[name] = "sparse-bitmask"
            else:
                array = form if isinstance(form, np.ndarray) else np.asarray(codec_for(form).dense(form), np.float32)
                parts = {name: array}
                if not isinstance(form, np.ndarray):
                    report[name] = f"dense float32 ({type(form).__name__})"
            for key, array in parts.items():
                writer.add(key, np.ascontiguousarray(array))
    quantization_config: dict[str, Any] = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized" if groups else "dense",
        "quantization_status": "compressed",
        "config_groups": {f"group_{i}": group for i, group in enumerate(groups.values())},
        "ignore": list(ignore),
        "kv_cache_scheme": None,
        "version": FORMAT_VERSION,
    }
    if sparse_targets:
        quantization_config["sparsity_config"] = {
            "format": "sparse-bitmask", "global_sparsity": zeros / total if total else 0.0,
            "sparsity_structure": "unstructured", "targets": sparse_targets, "ignore": []}
    config_data["quantization_config"] = quantization_config
    with atomic_path(os.path.join(directory, "config.json")) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(config_data, f, indent=2, sort_keys=True)
    return CompressedTensorsExport(directory, os.path.getsize(path), quantization_config, report)
