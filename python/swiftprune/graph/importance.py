"""How much each removable channel (class) matters.

Scores are per class, summed over every weight slice bound to it, so a
residual channel is judged by all the convolutions that read and write it.
All work is vectorized NumPy: one reduction per weight, one ``bincount``.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Union

import numpy as np

from .groups import Dependencies

__all__ = ["IMPORTANCE", "class_scores"]

IMPORTANCE = ("l2", "l1", "bn", "user", "activation")


def _slice_norms(value: np.ndarray, axis: int, power: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(value, dtype=np.float64), axis, 0).reshape(value.shape[axis], -1)
    if power == 1:
        return np.abs(moved).sum(axis=1)
    return np.einsum("ij,ij->i", moved, moved)


def class_scores(deps: Dependencies, importance: str = "l2",
                 scores: Optional[Mapping[str, np.ndarray]] = None) -> np.ndarray:
    """One score per class (higher = more important).

    Parameters
    ----------
    deps : Dependencies
    importance : {"l2", "l1", "bn", "user", "activation"}
        ``"l2"``: square root of the sum of squares of every coupled weight
        slice (kernels in and out, normalization scales); ``"l1"``: sum of
        absolute values; ``"bn"``: sum of ``|gamma|`` of the coupled
        normalizations (falls back to L2 for classes without one);
        ``"user"`` / ``"activation"``: ``scores`` maps a tensor-producing
        node name to one score per output channel
        (:func:`swiftprune.graph.activation_scores` computes mean |activation|
        of Keras and ONNX models), summed over the class.
    scores : mapping of node name to 1-D array, for "user" / "activation"
    """
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    n = deps.n_classes
    graph = deps.graph
    if importance in ("user", "activation"):
        if not scores:
            raise ValueError(f"importance={importance!r} needs scores: a mapping of layer name to per-channel scores")
        total = np.zeros(n)
        seen = np.zeros(n, dtype=bool)
        names = {node.name: node for node in graph.nodes}
        for name, values in scores.items():
            if name not in names:
                raise ValueError(f"scores: no layer named {name!r} in the model")
            node = names[name]
            atoms = deps.tensor_atoms[node.outputs[0]] if node.outputs else None
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if atoms is None or values.size != atoms.size:
                raise ValueError(f"scores[{name!r}] has {values.size} values but the layer has "
                                 f"{None if atoms is None else atoms.size} output channels")
            if not np.isfinite(values).all():
                raise ValueError(f"scores[{name!r}] contains NaN or Inf")
            cls = deps.atom_class[atoms]
            total += np.bincount(cls, weights=values, minlength=n)
            seen[cls] = True
        fallback = class_scores(deps, "l2")
        # Classes without a user score rank by their L2 norm, scaled to the scored ones.
        if (~seen).any() and seen.any():
            scale = total[seen].mean() / max(fallback[seen].mean(), 1e-30)
            total[~seen] = fallback[~seen] * scale
        return total
    power = 1 if importance == "l1" else 2
    total = np.zeros(n)
    gamma_total = np.zeros(n)
    has_gamma = np.zeros(n, dtype=bool)
    for b in deps.bindings:
        param = graph.nodes[b.node].params[b.param]
        if param.role not in ("weight", "gamma"):
            continue
        cls = deps.atom_class[b.atoms]
        total += np.bincount(cls, weights=_slice_norms(param.value, b.axis, power), minlength=n)
        if param.role == "gamma":
            gamma_total += np.bincount(cls, weights=np.abs(param.value.astype(np.float64)), minlength=n)
            has_gamma[cls] = True
    if power == 2:
        total = np.sqrt(total)
    if importance == "bn":
        return np.where(has_gamma, gamma_total, total)
    return total
