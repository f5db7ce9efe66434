"""swiftprune: compress trained neural-network weights with a fast Swift core.

Plain NumPy arrays in, NumPy arrays out: weights from Keras
(``model.get_weights()``), PyTorch (``state_dict()`` → ``.numpy()``), JAX or a
weight file are compressed without the framework that trained them.

See ``DESIGN.md`` in the source tree for the full contract.
"""
from __future__ import annotations

from ._version import __version__
from .threads import get_num_threads, set_num_threads

# Pruning
from .pruning import magnitude_mask, prune_magnitude

# Quantization

# Low-rank factorization

# Tensor core
from .sparse import CSRMatrix, NMSparseMatrix, quantized_matmul

# Whole models, files

__all__ = [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    # Pruning
    "magnitude_mask",
    "prune_magnitude",
    # Quantization
    # Low-rank factorization
    # Tensor core
    "CSRMatrix",
    "NMSparseMatrix",
    "quantized_matmul",
    # Whole models, files
]
