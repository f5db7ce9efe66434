"""Export compressed weights into an ONNX model that onnxruntime runs.

Every quantized weight becomes integer initializers plus its scales:

* ``MatMulNBits`` (``com.microsoft``, onnxruntime's int4 kernel): a 4-bit
  weight with groups along K (a MatMul ``B`` of shape ``(K, N)`` quantized
  with ``axis=-1, group_size=g``, ``g`` a power of two >= 16) whose consumers
  are all ``MatMul`` nodes: each one is replaced by ``MatMulNBits``;
* otherwise ``DequantizeLinear`` feeding the original consumers: per tensor
  (opset >= 10), per channel (``axis``, opset >= 13), blocked groups
  (``block_size``, opset >= 21); values of 2..4 bits are stored as ``INT4`` /
  ``UINT4`` (two per byte, opset >= 21), 5..8 bits as ``INT8`` / ``UINT8``.
  A model of a lower opset is converted with ``onnx.version_converter`` when
  a weight needs it (``ValueError`` naming the weight when that fails).

Plain float arrays whose values differ from the model's (the LayerNorms and
layers that absorbed AWQ / SmoothQuant scales) replace their initializers.
AWQ / SmoothQuant scales that no op could absorb (recipe option
``insert_scale: true``; ``CompressionResult.inserted_scales``) become a
``Mul`` by the constant ``1/s`` on the edges into the scaled layers only.
Layers whose inputs a recipe rotates (``rotate_input: hadamard``;
``CompressionResult.input_rotations``) get the rotation ``x ↦ x R`` on their
input edge, in the Kronecker form (``Shape``, ``Reshape`` to ``(rows, blocks,
a, b)``, ``MatMul`` by ``H_b``, ``MatMul`` by ``H_aᵀ`` from the left,
``Reshape`` back: ``a + b`` multiply-adds per element; shared by the layers
reading one tensor with the same rotation).
Pruned float weights (no quantization) become ``sparse_initializer`` s
(values + int64 indices) when that is smaller than dense; other compressed
forms (clusters, low-rank factors) are written as their dense float32
reconstruction, and the returned :class:`OnnxExport` says so per weight.

Weights are the model's float initializers and its float ``Constant`` nodes
of rank >= 2 (exporters such as paddle2onnx put weights there); they are named
by the initializer / the Constant's output. Needs ``pip install
"swiftprune[onnx]"`` (onnx; onnxruntime to run the result).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np

from .._bitpack import pack_bits
from .._onnx_model import load_onnx_model
from ..io import atomic_path

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["to_onnx", "OnnxExport", "float_weights"]

_MS_DOMAIN = "com.microsoft"


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "swiftprune[onnx]"') from None
    return onnx


@dataclass
class OnnxExport:
    """What :func:`to_onnx` wrote.

    Attributes
    ----------
    path : str
        The ``.onnx`` file.
    nbytes : int
        Its size in bytes (measured after writing).
    opset : int
        The default-domain opset of the written model.
    weights : dict of str to str
        Per exported weight, how it is stored, e.g. ``"MatMulNBits int4
        block 128"``, ``"DequantizeLinear int8 axis 1"``, ``"sparse float32"``,
        ``"dense float32 (clustered)"``.
    """

    path: str
    nbytes: int
    opset: int
    weights: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per weight, then the file size."""
        width = max((len(n) for n in self.weights), default=0)
        lines = [f"{name.ljust(width)}  {how}" for name, how in self.weights.items()]
        lines.append(f"{self.path}: {self.nbytes:,} bytes, opset {self.opset}")
        return "\n".join(lines)


def _opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _lift_constants(model: Any) -> None:
    """Float Constant nodes of rank >= 2 in the main graph become initializers."""
    onnx = _import_onnx()
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE) \
                    and len(tensor.dims) >= 2:
                lifted = onnx.TensorProto()
                lifted.CopyFrom(tensor)
                lifted.name = node.output[0]
                graph.initializer.append(lifted)
                continue
        keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _load(model: Any) -> Any:
    return load_onnx_model(model, _import_onnx(), copy=True)


def float_weights(model: Any) -> dict[str, np.ndarray]:
    """The float weights of an ONNX model (a path or ``ModelProto``) as
    name → array: initializers and ``Constant`` nodes of rank >= 2, as
    :func:`to_onnx` sees them. Compress these with :func:`swiftprune.compress`."""
    onnx = _import_onnx()
    from onnx import numpy_helper

    proto = _load(model)
    _lift_constants(proto)
    out = {}
    for init in proto.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            out[init.name] = numpy_helper.to_array(init)
    return out


def _consumers(graph: Any, name: str) -> list[tuple[Any, int]]:
    return [(node, i) for node in graph.node for i, x in enumerate(node.input) if x == name]


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _matmul_nbits_ok(q: Any, shape: tuple[int, ...], consumers: list[tuple[Any, int]]) -> bool:
    return (q.bits <= 4 and len(shape) == 2 and q.axis is not None and q.axis % 2 == 1
            and q.group_size is not None and q.group_size >= 16 and _is_pow2(q.group_size)
            and bool(consumers)
            and all(node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and i == 1
                    for node, i in consumers))


def _needed_opset(q: Any) -> int:
    if q.bits <= 4 or q.group_size is not None:
        return 21
    if q.axis is not None:
        return 13
    return 10


def _int_tensor(onnx: Any, name: str, values: np.ndarray, bits: int, symmetric: bool) -> Any:
    """An INT4/UINT4 (bits <= 4; packed two per byte) or INT8/UINT8 initializer."""
    values = np.ascontiguousarray(values)
    if bits <= 4:
        kind = onnx.TensorProto.INT4 if symmetric else onnx.TensorProto.UINT4
        return onnx.helper.make_tensor(name, kind, list(values.shape), pack_bits(values, 4).tobytes(), raw=True)
    kind = onnx.TensorProto.INT8 if symmetric else onnx.TensorProto.UINT8
    return onnx.helper.make_tensor(name, kind, list(values.shape), values.view(np.uint8).tobytes(), raw=True)


def _dequantize_linear(onnx: Any, graph: Any, name: str, q: Any, dtype: np.dtype) -> str:
    """Replaces initializer `name` by integer values + DequantizeLinear (whose output
    takes the scale's dtype: the weight's own); returns the description."""
    from onnx import numpy_helper

    shape = tuple(q.values.shape)
    attributes: dict[str, Any] = {}
    if q.axis is None:
        scale = q.scale.reshape(())
        zero_point = q.zero_point.reshape(())
        how = "per tensor"
    elif q.group_size is None:
        axis = q.axis % len(shape)
        scale = q.scale.reshape(-1)
        zero_point = q.zero_point.reshape(-1)
        attributes["axis"] = axis
        how = f"axis {axis}"
    else:  # groups along the other dimension of a 2-D weight: ONNX blocked quantization on that axis
        other = 1 - q.axis % 2
        scale, zero_point = q.scale, q.zero_point
        attributes["axis"] = other
        attributes["block_size"] = int(q.group_size)
        how = f"axis {other} block {q.group_size}"
    bits = 4 if q.bits <= 4 else 8
    graph.initializer.append(_int_tensor(onnx, f"{name}::q", q.values, q.bits, q.symmetric))
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(scale, dtype=dtype), f"{name}::scale"))
    graph.initializer.append(_int_tensor(onnx, f"{name}::zero_point", zero_point, q.bits, q.symmetric))
    node = onnx.helper.make_node("DequantizeLinear", [f"{name}::q", f"{name}::scale", f"{name}::zero_point"],
                                 [name], name=f"{name}::dequantize", **attributes)
    graph.node.insert(0, node)
    kind = ("int" if q.symmetric else "uint") + str(bits)
    stored = f" ({q.bits}-bit values)" if q.bits not in (4, 8) else ""
    return f"DequantizeLinear {kind} {how}{stored}"


def _matmul_nbits(onnx: Any, graph: Any, name: str, q: Any, consumers: list[tuple[Any, int]], dtype: np.dtype) -> str:
    """Replaces every MatMul reading weight `name` (K, N) by MatMulNBits; returns the description."""
    from onnx import numpy_helper

    k, n = q.values.shape
    g = int(q.group_size)
    blocks = k // g
    # MatMulNBits holds B transposed, (N, K), as unsigned 4-bit codes, low nibble first,
    # blocked along K: (N, blocks, g / 2) bytes. Symmetric codes are shifted by the default zero point 8.
    codes = q.values.T.astype(np.int16) + (8 if q.symmetric else 0)
    packed = pack_bits(codes.astype(np.uint8), 4).reshape(n, blocks, g // 2)
    scales = np.ascontiguousarray(q.scale.T, dtype=dtype).reshape(-1)  # (N * blocks), n-major, A's dtype
    inputs = [f"{name}::nbits", f"{name}::scales"]
    graph.initializer.append(numpy_helper.from_array(packed, inputs[0]))
    graph.initializer.append(numpy_helper.from_array(scales, inputs[1]))
    if not q.symmetric:
        zero = np.ascontiguousarray(q.zero_point.T, dtype=np.uint8)  # (N, blocks), packed per column
        per_column = (blocks + 1) // 2
        zp = np.zeros((n, per_column), np.uint8)
        for j in range(n):
            zp[j] = pack_bits(zero[j], 4)
        inputs.append(f"{name}::zero_points")
        graph.initializer.append(numpy_helper.from_array(zp.reshape(-1), inputs[2]))
    nodes = list(graph.node)
    for node, _ in consumers:
        replacement = onnx.helper.make_node(
            "MatMulNBits", [node.input[0], *inputs], list(node.output), name=(node.name or name) + "::nbits",
            domain=_MS_DOMAIN, K=int(k), N=int(n), bits=4, block_size=g)
        nodes[nodes.index(node)] = replacement
    del graph.node[:]
    graph.node.extend(nodes)
    return f"MatMulNBits {'int4' if q.symmetric else 'uint4'} block {g}"


def _sparse_initializer(onnx: Any, graph: Any, name: str, dense: np.ndarray) -> Optional[str]:
    """A pruned float weight as a sparse_initializer when smaller; None otherwise."""
    from onnx import numpy_helper

    flat = dense.reshape(-1)
    kept = np.flatnonzero(flat)
    if kept.size * (4 + 8) >= flat.size * 4:
        return None
    values = numpy_helper.from_array(flat[kept].astype(np.float32), name)
    indices = numpy_helper.from_array(kept.astype(np.int64), f"{name}::indices")
    graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, list(dense.shape)))
    return "sparse float32 (values + int64 indices)"


def _compressed_forms(compressed: Any, recipe: Any, weights: Mapping[str, np.ndarray],
                      progress: bool) -> tuple[dict[str, Any], list, dict]:
    """The compressed form per weight name, the scales to insert as Mul ops and the input rotations."""
    from ..model import CompressionResult, compress, load_compressed

    if recipe is not None:
        if compressed is not None:
            raise ValueError("give either a compression result or a recipe, not both")
        result = compress(weights, recipe, progress=progress)
        return dict(result.tensors), list(result.inserted_scales), dict(result.input_rotations)
    if compressed is None:
        raise ValueError("give a compression result (or the path of a compressed .safetensors) or a recipe")
    if isinstance(compressed, (str, os.PathLike)):
        compressed = load_compressed(compressed)
    if isinstance(compressed, CompressionResult):
        return dict(compressed.tensors), list(compressed.inserted_scales), dict(compressed.input_rotations)
    if isinstance(compressed, Mapping):
        return dict(compressed), [], {}
    raise TypeError(f"compressed must be a CompressionResult, a path or a mapping name -> compressed tensor, "
                    f"got {type(compressed).__name__}")


def _insert_scales(onnx: Any, graph: Any, inserted: Any, weights: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Puts a ``Mul`` by each :class:`~swiftprune.activation_folding.InsertedScale`'s
    ``1/s`` on the edges from its tensor into the nodes that read one of its
    consumer weights (other readers keep the tensor); returns report lines."""
    from onnx import numpy_helper

    report: dict[str, str] = {}
    taken = {init.name for init in graph.initializer} | {o for node in graph.node for o in node.output}
    for index, item in enumerate(inserted):
        consumers = set(item.consumers)
        nodes = [node for node in graph.node if item.tensor in node.input and consumers & set(node.input)]
        if not nodes:
            raise ValueError(f"inserted scale: no node reads {item.tensor!r} together with one of the weights "
                             f"{sorted(consumers)} (was the result computed for another model?)")
        dtype = weights[next(iter(consumers))].dtype if next(iter(consumers)) in weights else np.dtype(np.float32)
        base = f"{item.tensor}::inverse_scale"
        name = base if base not in taken else f"{base}_{index}"
        taken.update((name, f"{name}::out"))
        graph.initializer.append(numpy_helper.from_array(np.asarray(item.inverse, dtype=dtype).reshape(-1), name))
        mul = onnx.helper.make_node("Mul", [item.tensor, name], [f"{name}::out"], name=f"{name}::mul")
        for node in nodes:
            node.input[list(node.input).index(item.tensor)] = f"{name}::out"
        position = min(list(graph.node).index(node) for node in nodes)  # after the producer, before every reader
        graph.node.insert(position, mul)
        report[name] = (f"Mul inserted before {', '.join(n.op_type + ' ' + repr(n.name or n.output[0]) for n in nodes)} "
                        f"({len(item.inverse)} channels; the activation scale no op could absorb)")
    return report


def _transposed(node: Any, attribute: str) -> bool:
    """Whether a Gemm ``node`` sets ``transA`` / ``transB`` (absent: 0, as ONNX defines them)."""
    return bool(next((a.i for a in node.attribute if a.name == attribute), 0))


def _rotated_input(node: Any, weight: str) -> Optional[str]:
    """The input a MatMul / Gemm ``node`` multiplies by the (in, out) / (out, in) `weight`, or None when the
    node does not read `weight` as such a layer (the rotation's axis: in for MatMul B and Gemm B, transB=0 (in,
    out); Gemm transB=1 (out, in))."""
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] != weight:
        return None
    if node.op_type == "MatMul":
        return node.input[0]
    if node.op_type == "Gemm":
        return None if _transposed(node, "transA") else node.input[0]
    return None


def _gemm_layout(node: Any) -> str:
    """The layout of a layer node's weight: ``"torch"`` for Gemm with transB=1, else ``"keras"`` (in, out)."""
    return "torch" if node.op_type == "Gemm" and _transposed(node, "transB") else "keras"


def _insert_rotations(onnx: Any, graph: Any, rotations: Mapping[str, Any], weights: Mapping[str, np.ndarray]
                      ) -> dict[str, str]:
    """Puts each weight's input rotation (a :class:`~swiftprune.online_rotation.RotatedLayer`, or an
    ``OnlineHadamard`` whose layout the node gives) on the input edge of the MatMul / Gemm nodes reading it
    (one set of ops per input tensor and rotation, right after the tensor's producer); returns report lines."""
    from onnx import numpy_helper

    from ..online_rotation import OnlineHadamard, RotatedLayer

    report: dict[str, str] = {}
    taken = {init.name for init in graph.initializer} | {o for node in graph.node for o in node.output}
    done: dict[tuple, str] = {}  # (input tensor, features, block) -> rotated tensor
    for weight, entry in rotations.items():
        if not isinstance(entry, (RotatedLayer, OnlineHadamard)):
            raise TypeError(f"input rotation of {weight!r}: expected a RotatedLayer or OnlineHadamard, got "
                            f"{type(entry).__name__}")
        rotation = entry.rotation if isinstance(entry, RotatedLayer) else entry
        nodes = [(node, x) for node in graph.node if (x := _rotated_input(node, weight)) is not None]
        if not nodes or weight not in weights:
            raise ValueError(f"input rotation of {weight!r}: no MatMul or Gemm reads it as its weight (was the result "
                             "computed for another model?)")
        for node, _ in nodes:
            layout = _gemm_layout(node)
            if isinstance(entry, RotatedLayer) and entry.layout != layout:
                raise ValueError(f"input rotation of {weight!r}: the result holds a {entry.layout}-layout weight, but "
                                 f"{node.op_type} {node.name or node.output[0]!r} reads it in {layout} layout")
            k = weights[weight].shape[1 if layout == "torch" else 0]
            if k != rotation.features:
                raise ValueError(f"input rotation of {weight!r} has {rotation.features} features, but "
                                 f"{node.op_type} {node.name or node.output[0]!r} reads {k}")
        dtype = weights[weight].dtype
        for node, x in nodes:
            key = (x, rotation.features, rotation.block_size)
            if key not in done:
                a, b = rotation.factors
                ha, hb = rotation.factor_matrices()
                base = f"{x}::hadamard{rotation.block_size}"
                name = base if base not in taken else f"{base}_{len(done)}"
                parts = {p: f"{name}::{p}" for p in ("shape", "blocks", "blocks_shape", "h_b", "h_a_t", "right",
                                                     "left", "out")}
                taken.update(parts.values())
                graph.initializer.extend([
                    numpy_helper.from_array(np.array([-1, rotation.features // rotation.block_size, a, b], np.int64),
                                            parts["blocks_shape"]),
                    numpy_helper.from_array(hb.astype(dtype), parts["h_b"]),
                    numpy_helper.from_array(np.ascontiguousarray(ha.T).astype(dtype), parts["h_a_t"])])
                ops = [  # x R = reshape(H_aᵀ · (V · H_b)), V each block as an (a, b) matrix
                    onnx.helper.make_node("Shape", [x], [parts["shape"]], name=f"{name}::Shape"),
                    onnx.helper.make_node("Reshape", [x, parts["blocks_shape"]], [parts["blocks"]],
                                          name=f"{name}::Reshape"),
                    onnx.helper.make_node("MatMul", [parts["blocks"], parts["h_b"]], [parts["right"]],
                                          name=f"{name}::MatMul_b"),
                    onnx.helper.make_node("MatMul", [parts["h_a_t"], parts["right"]], [parts["left"]],
                                          name=f"{name}::MatMul_a"),
                    onnx.helper.make_node("Reshape", [parts["left"], parts["shape"]], [parts["out"]],
                                          name=f"{name}::Reshape_back")]
                # right after x's producer (before every reader, also those rotated for another weight)
                position = next((i + 1 for i, n in enumerate(graph.node) if x in n.output), 0)
                for offset, op in enumerate(ops):
                    graph.node.insert(position + offset, op)
                done[key] = parts["out"]
                report[name] = (f"Hadamard rotation ({rotation.features} inputs, blocks of {rotation.block_size} = "
                                f"{a} x {b}; {a + b} multiply-adds per element) inserted before "
                                f"{node.op_type} {node.name or node.output[0]!r}")
            node.input[0] = done[key]
    return report


def to_onnx(model: Any, output: PathLike, compressed: Any = None, *, recipe: Any = None,
            matmul_nbits: bool = True, progress: bool = False, inserted_scales: Any = None,
            input_rotations: Any = None) -> OnnxExport:
    """Writes ``model`` with its weights replaced by their compressed forms.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
        The float model.
    output : str or os.PathLike
        The ``.onnx`` file to write (atomically).
    compressed : CompressionResult, str / os.PathLike or mapping, optional
        The compressed weights, named as :func:`float_weights` names them: a
        :func:`~swiftprune.compress` result, a compressed ``.safetensors``
        written by ``result.save``, or a mapping name → compressed tensor.
    recipe : list of stages or a YAML/JSON path, optional
        Instead of ``compressed``: compress :func:`float_weights(model)
        <float_weights>` with this recipe first.
    matmul_nbits : bool, default True
        Use ``MatMulNBits`` for int4 groups feeding MatMul (faster in
        onnxruntime); ``False`` keeps ``DequantizeLinear`` everywhere.
    progress : bool, default False
        Progress bar while compressing with ``recipe``.
    inserted_scales : list of InsertedScale, optional
        ``Mul`` ops by ``1/s`` to put before AWQ / SmoothQuant layers whose
        input no op could absorb the scale (``insert_scale: true``); taken
        from ``compressed`` when it is a :class:`CompressionResult` (or from
        the result of ``recipe``). Each is inserted only on the edges into
        its layers.
    input_rotations : mapping of str to OnlineHadamard, optional
        Per layer weight, the Hadamard rotation to apply to its input
        (``rotate_input: hadamard``); taken from ``compressed`` when it is a
        :class:`CompressionResult` (or from the result of ``recipe``). Inserted
        before each MatMul / Gemm reading that weight.

    Returns
    -------
    OnnxExport
        The path, the measured file size, the opset and how each weight is stored.

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        A missing or invalid model, a compressed tensor naming no weight of
        the model or of another shape, an opset conversion that fails.
    ImportError
        The onnx package is missing.
    """
    onnx = _import_onnx()
    from onnx import numpy_helper

    from ..model import PrunedTensor
    from ..quantization import QuantizedTensor

    proto = _load(model)
    _lift_constants(proto)
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    weights = {name: numpy_helper.to_array(init) for name, init in initializers.items()
               if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)}
    forms, found, found_rotations = _compressed_forms(compressed, recipe, weights, progress)
    inserted = list(found if inserted_scales is None else inserted_scales)
    rotations = dict(found_rotations if input_rotations is None else input_rotations)
    for name, form in forms.items():
        if name not in weights:
            known = ", ".join(list(weights)[:8])
            raise ValueError(f"compressed tensor {name!r} is not a float weight of the model (weights: {known}, ...)")
        shape = tuple(getattr(form, "shape", np.shape(form)))
        if shape != weights[name].shape:
            raise ValueError(f"compressed tensor {name!r} has shape {shape}, the model's weight {weights[name].shape}")

    quantized = {n: f for n, f in forms.items() if isinstance(f, QuantizedTensor)}
    uses_nbits = {n for n, q in quantized.items()
                  if matmul_nbits and _matmul_nbits_ok(q, q.shape, _consumers(graph, n))}
    needed = max((_needed_opset(q) for n, q in quantized.items() if n not in uses_nbits), default=0)
    if needed > _opset(proto):
        from onnx import version_converter

        old = _opset(proto)
        try:
            proto = version_converter.convert_version(proto, needed)
        except Exception as error:
            why = next(f"weight {n!r} ({q.bits}-bit{', groups' if q.group_size else ''})"
                       for n, q in quantized.items() if n not in uses_nbits and _needed_opset(q) == needed)
            raise ValueError(f"{why} needs DequantizeLinear of opset {needed}, and converting the model from opset "
                             f"{old} failed ({type(error).__name__}: {error}); quantize to int8 per channel "
                             "(opset 13) or use int4 groups on MatMul weights (MatMulNBits)") from None
        graph = proto.graph

    report: dict[str, str] = _insert_scales(onnx, graph, inserted, weights)
    report.update(_insert_rotations(onnx, graph, rotations, weights))
    remove = set()
    for name, form in forms.items():
        if isinstance(form, np.ndarray):
            # Untouched tensors come back as they were; a changed one (a LayerNorm or
            # layer that absorbed AWQ / SmoothQuant scales) replaces the initializer.
            if not np.array_equal(form, weights[name]):
                _replace_initializer(graph, numpy_helper.from_array(form.astype(weights[name].dtype), name))
                report[name] = f"dense {weights[name].dtype} (new values: absorbed activation scales)"
            continue
        if isinstance(form, QuantizedTensor):
            if name in uses_nbits:
                report[name] = _matmul_nbits(onnx, graph, name, form, _consumers(graph, name), weights[name].dtype)
            else:
                report[name] = _dequantize_linear(onnx, graph, name, form, weights[name].dtype)
            remove.add(name)
            continue
        dense = np.asarray(form.to_dense() if isinstance(form, PrunedTensor) else _dense_of(form), np.float32)
        if isinstance(form, PrunedTensor):
            how = _sparse_initializer(onnx, graph, name, dense)
            if how is not None:
                report[name] = how
                remove.add(name)
                continue
        _replace_initializer(graph, numpy_helper.from_array(dense.astype(weights[name].dtype), name))
        report[name] = f"dense {weights[name].dtype} ({type(form).__name__})"
    kept = [init for init in graph.initializer if init.name not in remove]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [i for i in graph.input if i.name not in remove]  # old IRs list initializers as inputs too
    del graph.input[:]
    graph.input.extend(inputs)
    if uses_nbits and not any(o.domain == _MS_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(_MS_DOMAIN, 1))

    path = os.fspath(output)
    with atomic_path(path) as temporary:
        onnx.save(proto, temporary)
    return OnnxExport(path, os.path.getsize(path), _opset(proto), report)


def _replace_initializer(graph: Any, replacement: Any) -> None:
    for i, init in enumerate(graph.initializer):
        if init.name == replacement.name:
            graph.initializer[i].CopyFrom(replacement)


def _dense_of(form: Any) -> np.ndarray:
    from ..registry import codec_for as _codec_for

    return _codec_for(form).dense(form)
