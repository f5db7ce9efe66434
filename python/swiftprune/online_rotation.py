"""Online Hadamard rotation of a layer's input: an op added to the model at run time.

A linear layer computes ``W x = (W R)(Rᵀ x)`` for any orthogonal ``R``. With
``R`` a block-diagonal normalized Hadamard matrix, ``W R`` spreads every input
channel over its block, so a channel with large inputs (a few FFN-output
channels of an encoder) no longer dominates its quantization group, and GPTQ of
``W R`` on the Hessian of the rotated inputs, ``Rᵀ H R`` (exact, no
re-capture), loses less (QuaRot's ``down_proj`` rotation). Unlike
:func:`~swiftprune.rotate_heads`, nothing in the model absorbs ``R``: the
deployed model must compute ``x R`` (row vectors) before the layer, an extra op.

That op is cheap in the Kronecker form: a normalized Hadamard block of ``n =
a · b`` is ``H_a ⊗ H_b`` (Sylvester's matrices split that way, and ``H_12 ⊗
H_{2^k}`` is how :func:`~swiftprune.head_rotation_matrix` builds ``12 · 2^k``),
so ``v (H_a ⊗ H_b) = H_aᵀ V H_b`` with ``V`` the block reshaped to ``(a, b)``:
two small matrix products, ``a + b`` multiply-adds per input element instead of
``n`` (1024-blocks: 32 + 32 = 64 instead of 1024).

:class:`OnlineHadamard` is the rotation (apply it to inputs, weights,
statistics by hand); the recipe stage field ``rotate_input: hadamard`` (with
``rotate_block_size``) on a ``quantize: gptq`` stage applies it inside
:func:`~swiftprune.compress`, whose result lists the rotated layers in
``CompressionResult.input_rotations``; :func:`swiftprune.export.onnx.to_onnx`
inserts the op before them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import check_int
from .calibration.arrays import LayerView
from .calibration.hessian import HessianAccumulator
from .head_rotation import head_rotation_matrix

__all__ = ["OnlineHadamard", "RotatedLayer", "RotationPlan", "plan_rotations", "hadamard_size", "default_block_size"]

LAYOUTS = ("torch", "keras")


def hadamard_size(n: int) -> bool:
    """Whether a normalized Hadamard matrix of size ``n`` is built here: ``2^k`` or ``12 · 2^k``."""
    power = n >= 1 and n & (n - 1) == 0
    return power or (n % 12 == 0 and (n // 12) & (n // 12 - 1) == 0)


def default_block_size(features: int) -> int:
    """The largest power of two dividing ``features`` (3072 → 1024, 768 → 256)."""
    return features & -features


def _kronecker_split(n: int) -> Tuple[int, int]:
    """``(a, b)`` with ``a · b = n``, ``b`` a power of two and ``a`` a Hadamard size, least ``a + b``."""
    base = 12 if n % 12 == 0 else 1
    k = (n // base).bit_length() - 1
    return min(((base << j, 1 << (k - j)) for j in range(k + 1)), key=lambda ab: (ab[0] + ab[1], ab[0]))


@dataclass(frozen=True)
class OnlineHadamard:
    """A block-diagonal normalized Hadamard rotation ``R`` of ``features`` inputs.

    ``R`` holds ``features / block_size`` copies of the normalized Hadamard
    matrix :func:`~swiftprune.head_rotation_matrix` ``(block_size)`` on its
    diagonal (every entry ``±1/√block_size``; orthogonal, ``R Rᵀ = I``).

    Parameters
    ----------
    features : int
        The layer's input width.
    block_size : int, optional
        ``2^k`` or ``12 · 2^k``, dividing ``features``; default
        :func:`default_block_size` (the largest power of two dividing it;
        an odd width has none but 1, which would rotate nothing: ValueError).

    Attributes
    ----------
    factors : (int, int)
        ``(a, b)``: the block is ``H_a ⊗ H_b`` (normalized), applied as two
        products of ``a`` and ``b`` multiply-adds per element.

    Notes
    -----
    Run-time cost per token: ``features · (a + b)`` multiply-adds (3072 inputs
    in blocks of 1024: 3072 · 64 = 196,608, 8% of a 3072 → 768 layer's
    2,359,296); a dense ``R`` would cost ``features · block_size``.
    """

    features: int
    block_size: Optional[int] = None

    def __post_init__(self) -> None:
        features = check_int("features", self.features, minimum=1)
        block = default_block_size(features) if self.block_size is None else check_int(
            "block_size", self.block_size, minimum=1)
        if self.block_size is None and block == 1:
            raise ValueError(f"{features} input features are odd: no Hadamard block but 1 (no rotation) divides them")
        if not hadamard_size(block):
            raise ValueError(f"block_size must be a power of two or 12 times one (a Hadamard size built here), "
                             f"got {block}")
        if features % block:
            raise ValueError(f"block_size {block} does not divide the {features} input features")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "block_size", block)

    @property
    def factors(self) -> Tuple[int, int]:
        return _kronecker_split(int(self.block_size))  # type: ignore[arg-type]

    @property
    def macs_per_element(self) -> int:
        """Multiply-adds per input element at run time (``a + b``)."""
        a, b = self.factors
        return a + b

    def factor_matrices(self) -> Tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(H_a, H_b)``, normalized, float64, with ``H_a ⊗ H_b`` the block."""
        a, b = self.factors
        return head_rotation_matrix(a), head_rotation_matrix(b)

    def block(self) -> NDArray[np.float64]:
        """The ``block_size × block_size`` normalized Hadamard matrix (float64)."""
        return head_rotation_matrix(int(self.block_size))  # type: ignore[arg-type]

    def matrix(self) -> NDArray[np.float64]:
        """The dense ``features × features`` matrix ``R`` (float64; for checks and small layers)."""
        return np.kron(np.eye(self.features // int(self.block_size)), self.block())  # type: ignore[arg-type]

    def apply(self, x: ArrayLike, *, transpose: bool = False) -> np.ndarray:
        """``x R`` along the last axis (``x Rᵀ`` with ``transpose``), in the Kronecker form.

        Float inputs keep their dtype (float32 in, float32 products, as a
        runtime computes them); other inputs are computed in float64. The
        last axis must have ``features`` entries.
        """
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        if x.ndim < 1 or x.shape[-1] != self.features:
            raise ValueError(f"the last axis must have {self.features} entries (the rotated inputs), got shape "
                             f"{x.shape}")
        a, b = self.factors
        ha, hb = (m.astype(x.dtype) for m in self.factor_matrices())
        if transpose:  # Rᵀ = ⊕ (H_aᵀ ⊗ H_bᵀ)
            ha, hb = ha.T, hb.T
        blocks = x.reshape(*x.shape[:-1], self.features // int(self.block_size), a, b)  # type: ignore[arg-type]
        return np.matmul(ha.T, blocks @ hb).reshape(x.shape)  # v (H_a ⊗ H_b) = H_aᵀ V H_b per block

    def rotate_weight(self, w: ArrayLike, layout: str = "torch") -> np.ndarray:
        """The weight that reads rotated inputs: ``W R`` for a torch ``(out, in)``
        weight, ``Rᵀ K`` for a Keras / ONNX ``MatMul`` ``(in, out)`` kernel
        (computed in float64, returned in the input's float dtype)."""
        return self._weight(w, layout, transpose=False)

    def unrotate_weight(self, w: ArrayLike, layout: str = "torch") -> np.ndarray:
        """The inverse of :meth:`rotate_weight`: the weight of the same layer for
        unrotated inputs (``W' Rᵀ``, ``R K'``): what a model without the op needs."""
        return self._weight(w, layout, transpose=True)

    def _weight(self, w: ArrayLike, layout: str, *, transpose: bool) -> np.ndarray:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"an input rotation needs a 2-D (linear) weight, got shape {w.shape}")
        dtype = w.dtype if w.dtype.kind == "f" else np.dtype(np.float64)
        # torch rows are inputs along axis 1 (W R: each row v ↦ v R); a keras kernel's columns along axis 0
        # (Rᵀ K = (Kᵀ R)ᵀ)
        matrix = w.astype(np.float64) if layout == "torch" else w.T.astype(np.float64)
        rotated = self.apply(matrix, transpose=transpose)
        return (rotated if layout == "torch" else rotated.T).astype(dtype)

    def rotate_statistics(self, acc: HessianAccumulator) -> HessianAccumulator:
        """The statistics of the rotated inputs ``x R``, from those of ``x``: the
        Hessian ``Rᵀ H R`` and the sum ``Σx R`` exactly. ``|x R|`` is not a
        function of them: ``abs_sum_`` and ``abs_max_`` are NaN (the methods
        that read them, AWQ and SmoothQuant, do not combine with a rotation)."""
        if not isinstance(acc, HessianAccumulator):
            raise TypeError(f"expected a HessianAccumulator, got {type(acc).__name__}")
        if acc.features != self.features:
            raise ValueError(f"statistics of {acc.features} features, the rotation has {self.features}")
        out = HessianAccumulator(acc.features, name=acc.name, layout=acc.layout)
        h = self.apply(acc.hessian_.astype(np.float64))  # H R
        out._hessian[...] = self.apply(np.ascontiguousarray(h.T))  # (H R)ᵀ R = Rᵀ H R
        out.count_ = acc.count_
        out.sum_[...] = self.apply(acc.sum_.astype(np.float64))
        out.abs_sum_[...] = np.nan
        out.abs_max_[...] = np.nan
        return out


@dataclass(frozen=True)
class RotatedLayer:
    """A layer whose input is rotated at run time (``CompressionResult.input_rotations``).

    Attributes
    ----------
    rotation : OnlineHadamard
        ``R``: the deployed model computes ``x R`` before the layer.
    layout : {"torch", "keras"}
        The weight's layout: ``(out, in)`` (holds ``W R``) or ``(in, out)`` (holds ``Rᵀ K``).
    """

    rotation: OnlineHadamard
    layout: str

    def model_weight(self, dense: ArrayLike) -> np.ndarray:
        """The weight for unrotated inputs (``dense Rᵀ`` / ``R dense``): a model without the op."""
        return self.rotation.unrotate_weight(dense, self.layout)


@dataclass
class RotationPlan:
    """The input rotations of a :func:`~swiftprune.compress` run.

    Attributes
    ----------
    layers : dict of str to RotatedLayer
        Per rotated weight, its input rotation and layout (from its calibration view).
    """

    layers: Dict[str, RotatedLayer]

    def wrap(self, get: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        """``get`` returning ``W R`` (in the weight's layout) for rotated weights."""
        def rotated(name: str) -> np.ndarray:
            w = get(name)
            if name not in self.layers:
                return w
            return self.layers[name].rotation.rotate_weight(w, self.layers[name].layout)
        return rotated

    def view(self, view: Optional[LayerView], name: str) -> Optional[LayerView]:
        """``view`` with the statistics of the rotated inputs, for a rotated weight."""
        if view is None or name not in self.layers:
            return view
        return LayerView(view.name, self.layers[name].rotation.rotate_statistics(view.statistics), view.layout,
                         view.shape)

    def model_weight(self, name: str, dense: np.ndarray) -> np.ndarray:
        """The weight a model without the inserted op needs to compute what the
        rotated layer computes (:meth:`RotatedLayer.model_weight`), else ``dense``."""
        return dense if name not in self.layers else self.layers[name].model_weight(dense)


def plan_rotations(stages: Sequence[Any], selected: Mapping[int, set], names: Sequence[str],
                   info: Callable[[str], Tuple[Tuple[int, ...], np.dtype]], calibration: Any) -> RotationPlan:
    """The weights whose inputs the recipe's ``rotate_input`` stages rotate.

    Raises
    ------
    ValueError
        A rotated weight that is not 2-D, whose input width the block size
        does not divide, that another stage prunes, or that two rotating
        stages select (the message names the stage and the tensor).
    """
    layers: Dict[str, RotatedLayer] = {}
    pruned = {n for stage in stages if stage.stage == "prune" for n in selected[stage.index]}
    for stage in stages:
        if stage.rotate_input is None:
            continue
        for name in names:
            if name not in selected[stage.index]:
                continue
            shape = tuple(info(name)[0])
            if len(shape) != 2:
                raise ValueError(f"{stage.where}, field 'rotate_input': tensor {name!r} has shape {shape}; an input "
                                 "rotation needs a 2-D (linear) weight (exclude the others)")
            if name in pruned:
                raise ValueError(f"{stage.where}, field 'rotate_input': tensor {name!r} is also pruned; a rotated "
                                 "weight W R is dense, so its zeros would not survive (prune or rotate a tensor, "
                                 "not both)")
            if name in layers:
                raise ValueError(f"{stage.where}, field 'rotate_input': tensor {name!r} is already rotated by an "
                                 "earlier stage")
            try:
                view = calibration.lookup(name, shape)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{stage.where} on tensor {name!r}: {error}") from None
            if view is None:
                continue  # no calibration data: the stage skips it (with its warning), unrotated
            features = view.matrix_shape[1]
            try:
                rotation = OnlineHadamard(features, stage.rotate_input["block_size"])
            except ValueError as error:
                raise ValueError(f"{stage.where}, field 'rotate_block_size' on tensor {name!r} "
                                 f"({features} inputs): {error}") from None
            layers[name] = RotatedLayer(rotation, view.layout)
    return RotationPlan(layers)
