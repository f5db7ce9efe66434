"""Runtime formats for compressed models.

* :func:`to_onnx` (:mod:`swiftprune.export.onnx`): an ``.onnx`` model whose
  quantized weights are int8/int4 initializers behind ``DequantizeLinear``
  (per tensor, per channel, or blocked int4 groups) or ``MatMulNBits``
  (int4 blocks feeding a MatMul); onnxruntime runs it. Needs
  ``pip install "swiftprune[onnx]"``.
* :func:`to_keras` (:mod:`swiftprune.export.keras`): a ``.keras`` file whose
  Dense / EinsumDense / Conv layers hold Keras 3's own int8 (and int4)
  quantized variables, for ``keras.saving.load_model``. Needs
  ``pip install "swiftprune[keras]"``.
* :func:`to_compressed_tensors` (:mod:`swiftprune.export.compressed_tensors`):
  a Hugging Face / vLLM ``compressed-tensors`` checkpoint (``pack-quantized``
  int4/int8 with group scales, ``sparse-bitmask``) plus its
  ``quantization_config``. Needs nothing beyond NumPy.

Each exporter imports its optional dependency only when called.
"""
from __future__ import annotations

from typing import Any

__all__ = ["to_onnx", "to_keras", "to_compressed_tensors"]


def to_onnx(*args: Any, **kwargs: Any) -> Any:
    """See :func:`swiftprune.export.onnx.to_onnx`."""
    from .onnx import to_onnx as run

    return run(*args, **kwargs)


def to_keras(*args: Any, **kwargs: Any) -> Any:
    """See :func:`swiftprune.export.keras.to_keras`."""
    from .keras import to_keras as run

    return run(*args, **kwargs)


def to_compressed_tensors(*args: Any, **kwargs: Any) -> Any:
    """See :func:`swiftprune.export.compressed_tensors.to_compressed_tensors`."""
    from .compressed_tensors import to_compressed_tensors as run

    return run(*args, **kwargs)
