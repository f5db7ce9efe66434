"""Export compressed weights into a Keras 3 ``.keras`` file with Keras' own
quantized layers.

For each layer whose kernel was quantized, the layer is switched to Keras'
quantized form with ``layer.quantize(mode)`` (so the saved config carries
Keras' ``QuantizedDTypePolicy`` and ``keras.saving.load_model`` rebuilds it),
and its quantized variables are then overwritten with swiftprune's integers
and scales (Keras dequantizes as ``kernel / kernel_scale``, so
``kernel_scale = 1 / scale``):

* ``Dense`` and ``EinsumDense``, symmetric values of 5..8 bits: mode
  ``"int8"`` (Keras' default int8 config, which also quantizes the layer's
  inputs on the fly);
* ``Dense``, symmetric values of 2..4 bits: mode ``"int4"`` per output
  channel (Keras packs two per byte);
* the scale must be per tensor or per output channel (``axis=-1`` for a
  Keras ``(in, out)`` kernel): Keras' int8 layers have one scale per output.

Other compressed kernels (Keras 3 has no quantized ``Conv`` layers, group-wise
scales, affine values, pruned, clustered or factorized weights) are written as
their dense float reconstruction; :class:`KerasExport` lists how each weight
was stored. Needs ``pip install "swiftprune[keras]"``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["to_keras", "KerasExport", "float_weights"]


def _import_keras() -> Any:
    try:
        import keras
    except ImportError:
        raise ImportError('Keras export needs Keras 3: pip install "swiftprune[keras]"') from None
    if not str(getattr(keras, "__version__", "0")).startswith("3"):
        raise ImportError(f"Keras export needs Keras 3, found {keras.__version__}")
    return keras


@dataclass
class KerasExport:
    """What :func:`to_keras` wrote: ``path``, its measured ``nbytes`` and,
    per weight (variable path), how it is stored."""

    path: str
    nbytes: int
    weights: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        width = max((len(n) for n in self.weights), default=0)
        lines = [f"{name.ljust(width)}  {how}" for name, how in self.weights.items()]
        lines.append(f"{self.path}: {self.nbytes:,} bytes")
        return "\n".join(lines)


def _load_model(model: Any) -> Any:
    """A private copy of the model (a live model is saved and reloaded, never changed)."""
    keras = _import_keras()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Keras model not found: {path}")
        return keras.saving.load_model(path, compile=False)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a .keras path or a keras.Model, got {type(model).__name__}")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        return keras.saving.load_model(path, compile=False)


def float_weights(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as variable path → array (e.g. ``"dense/kernel"``),
    the names :func:`to_keras` matches compressed tensors by."""
    model = _load_model(model)
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def _layer_of(model: Any, variable: Any) -> Any:
    for layer in model._flatten_layers(include_self=False):
        if any(v is variable for v in layer._trainable_variables + layer._non_trainable_variables):
            return layer
    return None


def _keras_scale(q: Any, kernel_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> np.ndarray | None:
    """``1 / scale`` in the shape of Keras' ``kernel_scale`` (which keeps the
    kernel's rank with 1s on reduced axes, or drops them for Dense), or None
    when swiftprune's scales vary along an axis Keras reduces."""
    scale = np.broadcast_to(q.scale, q.scale.shape)
    rank = len(kernel_shape)
    if len(target_shape) == rank:
        keep = tuple(target_shape)
    elif len(target_shape) == 1 and rank == 2:  # Dense: (out,)
        keep = (1, target_shape[0])
    else:
        return None
    for axis in range(rank):
        if keep[axis] == 1 and scale.shape[axis] != 1:
            return None
    full = np.broadcast_to(scale, keep)
    return (np.float32(1.0) / full.astype(np.float32)).reshape(target_shape).astype(np.float32)


def to_keras(model: Any, output: PathLike, compressed: Any = None, *, recipe: Any = None,
             progress: bool = False) -> KerasExport:
    """Writes ``model`` as a ``.keras`` file with its compressed weights.

    Parameters
    ----------
    model : str, os.PathLike or keras.Model
        The float model (a live model is not modified).
    output : str or os.PathLike
        The ``.keras`` file to write (atomically).
    compressed : CompressionResult, str / os.PathLike or mapping, optional
        Compressed tensors named by variable path (see :func:`float_weights`)
        or, for a result of ``compress(model.get_weights(), ...)``, by the
        index in ``model.weights`` ("0", "1", ...); or a compressed
        ``.safetensors`` file.
    recipe : list of stages or a YAML/JSON path, optional
        Instead of ``compressed``: compress :func:`float_weights` with it.
    progress : bool, default False

    Returns
    -------
    KerasExport

    Raises
    ------
    FileNotFoundError, TypeError, ValueError
        A missing model, a bad output name (it must end in ``.keras``), a
        compressed tensor naming no variable or of another shape.
    ImportError
        Keras 3 is missing.
    """
    keras = _import_keras()
    from ..model import CompressionResult, PrunedTensor, compress, load_compressed
    from ..registry import codec_for as _codec_for
    from ..quantization import QuantizedTensor

    path = os.fspath(output)
    if not path.endswith(".keras"):
        raise ValueError(f"output must be a .keras file, got {path!r}")
    model = _load_model(model)
    variables = list(model.weights)
    by_path = {v.path: v for v in variables}
    if recipe is not None:
        if compressed is not None:
            raise ValueError("give either a compression result or a recipe, not both")
        compressed = compress({v.path: np.asarray(v.numpy()) for v in variables}, recipe, progress=progress)
    if compressed is None:
        raise ValueError("give a compression result (or the path of a compressed .safetensors) or a recipe")
    if isinstance(compressed, (str, os.PathLike)):
        compressed = load_compressed(compressed)
    if isinstance(compressed, CompressionResult):
        compressed.check_no_inserted_ops("a Keras model written by to_keras")
    forms = dict(compressed.tensors) if isinstance(compressed, CompressionResult) else dict(compressed)
    sequence = isinstance(compressed, CompressionResult) and compressed.container == "sequence"

    targets: dict[str, tuple[Any, Any]] = {}
    for name, form in forms.items():
        if sequence or (name.isdigit() and name not in by_path):
            index = int(name)
            if not 0 <= index < len(variables):
                raise ValueError(f"compressed tensor {name!r}: the model has {len(variables)} weights")
            variable = variables[index]
        elif name in by_path:
            variable = by_path[name]
        else:
            raise ValueError(f"compressed tensor {name!r} names no variable of the model "
                             f"(variables: {', '.join(list(by_path)[:8])}, ...)")
        shape = tuple(getattr(form, "shape", np.shape(form)))
        if shape != tuple(variable.shape):
            raise ValueError(f"compressed tensor {name!r} has shape {shape}, variable {variable.path!r} "
                             f"{tuple(variable.shape)}")
        targets[variable.path] = (variable, form)

    report: dict[str, str] = {}
    for var_path, (variable, form) in targets.items():
        if isinstance(form, np.ndarray):
            # A changed plain array (a layer that absorbed AWQ / SmoothQuant scales) is assigned.
            if not np.array_equal(form, np.asarray(variable.numpy())):
                variable.assign(np.asarray(form).astype(variable.dtype))
                report[var_path] = f"dense {variable.dtype} (new values: absorbed activation scales)"
            continue
        layer = _layer_of(model, variable)
        how = None
        if (isinstance(form, QuantizedTensor) and layer is not None and form.symmetric and form.group_size is None
                and variable is getattr(layer, "_kernel", None)):
            how = _quantize_layer(keras, layer, form)
        if how is None:
            dense = np.asarray(_codec_for(form).dense(form), dtype=np.float32)
            variable.assign(dense.astype(variable.dtype))
            why = type(form).__name__
            if isinstance(form, QuantizedTensor):
                why += ": no Keras quantized form for " + (
                    f"{type(layer).__name__} layers" if type(layer).__name__ not in ("Dense", "EinsumDense")
                    else "this scale layout")
            how = f"dense {variable.dtype} ({why})"
        report[var_path] = how

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as directory:
        staged = os.path.join(directory, "model.keras")
        model.save(staged)
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        shutil.move(staged, path)
    return KerasExport(path, os.path.getsize(path), report)


def _quantize_layer(keras: Any, layer: Any, q: Any) -> str | None:
    """Switches `layer` to Keras' int8/int4 form holding `q`; None when Keras has no matching form."""
    kind = type(layer).__name__
    if kind not in ("Dense", "EinsumDense") or layer.dtype_policy.quantization_mode is not None:
        return None
    kernel_shape = tuple(layer._kernel.shape)
    if q.bits > 4 or kind == "EinsumDense":
        mode, config = "int8", None
    else:
        from keras.quantizers import Int4QuantizationConfig

        mode, config = "int4", Int4QuantizationConfig(block_size=-1)
    if kind == "Dense" and q.axis is not None and q.axis % 2 != 1:
        return None  # Keras' Dense has one scale per output (the kernel's last axis)
    layer.quantize(mode, config=config)
    scale = _keras_scale(q, kernel_shape, tuple(layer.kernel_scale.shape))
    if scale is None:
        raise ValueError(f"layer {layer.name!r}: Keras' {mode} {kind} has kernel_scale of shape "
                         f"{tuple(layer.kernel_scale.shape)}, which swiftprune's scales of shape {q.scale.shape} "
                         "do not fit; quantize this kernel per output channel")
    values = q.values.astype(np.int8)
    if mode == "int4":
        from keras.quantizers import pack_int4

        packed, _, _ = pack_int4(values, axis=-1)
        values = np.asarray(packed)
    if tuple(layer._kernel.shape) != values.shape:
        raise ValueError(f"layer {layer.name!r}: Keras' {mode} kernel has shape {tuple(layer._kernel.shape)}, "
                         f"swiftprune's values {values.shape}")
    layer._kernel.assign(values)
    layer.kernel_scale.assign(scale)
    return f"{kind} {mode} ({'per tensor' if q.axis is None else 'per output channel'}, {q.bits}-bit values)"
