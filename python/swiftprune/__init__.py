"""swiftprune: compress trained neural-network weights with a fast Swift core.

Plain NumPy arrays in, NumPy arrays out: weights from Keras
(``model.get_weights()``), PyTorch (``state_dict()`` → ``.numpy()``), JAX or a
weight file are compressed without the framework that trained them.

See ``DESIGN.md`` in the source tree for the full contract.
"""
# (No `from __future__ import annotations` here: it would put `annotations` in the namespace.)
from ._version import __version__
from .threads import get_num_threads, set_num_threads

# Pruning
from .pruning import (
    block_mask,
    global_magnitude_masks,
    magnitude_mask,
    nm_mask,
    prune_magnitude,
    random_mask,
    structured_mask,
)
from .calibrated_pruning import sparsegpt, sparsegpt_quantize, wanda_mask
from .schedules import ConstantSparsity, GradualPruner, PolynomialDecay, PruningSchedule
from .structured import prune_channels

# Quantization
from .clustering import ClusteredTensor, cluster
from .quantization import QuantizedTensor, cast, gptq, quantize, relative_error, sqnr_db
from .activation_scaling import awq, bias_correction, smoothquant
from .head_rotation import head_rotation_matrix, rotate_heads
from .online_rotation import OnlineHadamard
from . import calibration

# Low-rank factorization
from .factorization import LowRankFactors, low_rank, randomized_svd, svd

# Tensor core
from .linalg import matmul
from .sparse import CSRMatrix, NMSparseMatrix, quantized_matmul

# Whole models, files
from .io import load_weights, save_weights
from .model import CompressionResult, PrunedTensor, Report, compress, compress_file, load_compressed

# Budgeted compression: swiftprune.sensitivity(...) and swiftprune.plan(...) are callable modules
from . import plan, sensitivity
from .candidates import Candidate, parse_candidate
from .half_precision import HalfPrecisionTensor
from .plan import Plan
from .sensitivity import Sensitivity

__all__ = [
    "__version__",
    "get_num_threads",
    "set_num_threads",
    # Pruning
    "magnitude_mask",
    "prune_magnitude",
    "global_magnitude_masks",
    "random_mask",
    "structured_mask",
    "nm_mask",
    "block_mask",
    "wanda_mask",
    "sparsegpt",
    "sparsegpt_quantize",
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "GradualPruner",
    "prune_channels",
    # Quantization
    "ClusteredTensor",
    "QuantizedTensor",
    "cast",
    "cluster",
    "gptq",
    "awq",
    "smoothquant",
    "bias_correction",
    "rotate_heads",
    "head_rotation_matrix",
    "OnlineHadamard",
    "quantize",
    "relative_error",
    "sqnr_db",
    # Low-rank factorization
    "LowRankFactors",
    "low_rank",
    "randomized_svd",
    "svd",
    # Tensor core
    "matmul",
    "CSRMatrix",
    "NMSparseMatrix",
    "quantized_matmul",
    # Whole models, files
    "load_weights",
    "save_weights",
    "compress",
    "compress_file",
    "load_compressed",
    "CompressionResult",
    "PrunedTensor",
    "Report",
    # Budgeted compression
    "sensitivity",
    "plan",
    "Sensitivity",
    "Plan",
    "Candidate",
    "parse_candidate",
    "HalfPrecisionTensor",
]

# Submodules that are API in their own right (``swiftprune.keras.PruningCallback``,
# ``swiftprune.model.register_method``, ...). The others (pruning, quantization, ...)
# are how the package is organized: their functions are listed in ``__all__``.
_API_MODULES = ("cli", "io", "keras", "model", "registry", "graph", "calibration", "plan", "export", "distributed")


# API submodules that import on first use (``sp.graph``), so that ``import swiftprune``
# stays light; they import their optional dependencies (onnx, h5py, keras) only when called.
_LAZY_MODULES = ("graph", "export", "distributed")


def __getattr__(name: str):
    """``swiftprune.graph`` and the other lazy API submodules, imported on first access."""
    if name in _LAZY_MODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """Only the API: ``__all__`` and the API submodules that are imported."""
    return sorted(set(__all__) | {name for name in _API_MODULES if name in globals()})
