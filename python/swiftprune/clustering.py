"""Weight clustering (weight sharing / palettization): every weight replaced
by the nearest of a few shared values, ``w ≈ centroids[indices]``.

The Swift core runs 1-D k-means on the values: they are radix-sorted once;
with prefix sums a cluster is a contiguous range of the sorted values, so a
Lloyd iteration costs O(k log n) instead of O(n k). Iterations stop when the
assignment no longer changes (an exact fixed point) or after ``max_iter``.

Per-channel and grouped-channel palettization (``axis=``, ``group_size=``)
fit one codebook per output channel or per group of ``group_size``
consecutive channels: the channels are gathered into rows (the channel axis
moved first, each group's values in C order) and the Swift core clusters all
rows in one call, spread over its threads. ``centroids`` then has shape
``(n_palettes, n_clusters)`` and ``indices`` keeps the weight's shape.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_int

_INITS = {"linear": 0, "kmeans++": 1, "optimal": 2}


class ClusteredTensor:
    """A clustered weight: ``indices`` (``uint8`` for up to 256 clusters, else
    ``uint16``; the weight's shape) into ``centroids`` (float32, ascending).

    :meth:`to_config` / :meth:`from_config` round-trip it through plain arrays.
    """

    __slots__ = ("indices", "centroids", "iterations", "axis", "group_size")

    def __init__(self, indices: NDArray[Any], centroids: NDArray[np.float32], iterations: int = 0, *,
                 axis: Optional[int] = None, group_size: Optional[int] = None) -> None:
        """``axis=None``: one 1-D codebook ``centroids``; with ``axis``, one row of
        the 2-D ``centroids`` per channel (``group_size=None``) or per group of
        ``group_size`` consecutive channels along ``axis``."""
        indices = np.asarray(indices)
        if indices.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"indices must be uint8 or uint16, got {indices.dtype}")
        centroids = np.asarray(centroids, dtype=np.float32)
        if axis is None:
            if group_size is not None:
                raise ValueError("group_size needs an axis (the channel axis the palettes run along)")
            if centroids.ndim != 1 or centroids.size == 0:
                raise ValueError(f"centroids must be a non-empty 1-D array, got shape {centroids.shape}")
        else:
            axis = check_int("axis", axis)
            if not -indices.ndim <= axis < indices.ndim:
                raise ValueError(f"axis {axis} is out of range for indices of rank {indices.ndim}")
            palettes = _palette_count(indices.shape, axis % indices.ndim, group_size)
            if centroids.ndim != 2 or centroids.shape[0] != palettes or centroids.shape[1] == 0:
                raise ValueError(f"centroids must have shape ({palettes}, n_clusters) for indices of shape "
                                 f"{indices.shape}, axis={axis}, group_size={group_size}; got {centroids.shape}")
        if indices.size and int(indices.max()) >= centroids.shape[-1]:
            raise ValueError(f"index {int(indices.max())} is out of range for {centroids.shape[-1]} centroids")
        self.indices = indices
        self.centroids = centroids
        self.iterations = int(iterations)
        self.axis = axis
        self.group_size = group_size

    @property
    def shape(self) -> tuple[int, ...]:
        """The weight's shape."""
        return self.indices.shape

    @property
    def n_clusters(self) -> int:
        """The codebook size (of each palette)."""
        return int(self.centroids.shape[-1])

    def dequantize(self) -> NDArray[np.float32]:
        """``centroids[indices]`` as float32 (a Swift lookup); per palette when
        there are several."""
        if self.axis is None:
            return _core.cluster_lookup(self.indices, self.centroids)
        rows = _to_rows(self.indices, self.axis % self.indices.ndim, self.centroids.shape[0])
        values = np.take_along_axis(self.centroids, rows.astype(np.intp), axis=1)
        return _from_rows(values, self.indices.shape, self.axis % self.indices.ndim)

    @property
    def nbytes(self) -> int:
        """Bytes of ``ceil(log2(n_clusters))``-bit indices, bit-packed, plus the
        float32 centroids."""
        bits = max(1, int(np.ceil(np.log2(self.n_clusters)))) if self.n_clusters > 1 else 1
        return (self.indices.size * bits + 7) // 8 + 4 * self.centroids.size

    def to_config(self) -> dict[str, Any]:
        """Plain fields (``indices``, ``centroids``, ``axis``, ``group_size``) for :meth:`from_config`."""
        return {"indices": self.indices, "centroids": self.centroids, "axis": self.axis,
                "group_size": self.group_size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ClusteredTensor":
        """The tensor described by :meth:`to_config`'s fields (validated)."""
        return cls(np.asarray(config["indices"]), np.asarray(config["centroids"]), axis=config.get("axis"),
                   group_size=config.get("group_size"))

    def __repr__(self) -> str:
        per = "" if self.axis is None else f", axis={self.axis}, group_size={self.group_size}"
        return (f"ClusteredTensor(shape={self.shape}, dtype={self.indices.dtype}, n_clusters={self.n_clusters}{per}, "
                f"nbytes={self.nbytes})")


def _palette_count(shape: tuple[int, ...], axis: int, group_size: Optional[int]) -> int:
    """Palettes of a per-channel (``group_size=None``) or grouped-channel layout."""
    channels = shape[axis]
    if group_size is None:
        return channels
    group_size = check_int("group_size", group_size, minimum=1)
    if channels % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {channels} channels along axis {axis} "
                         f"of shape {shape}")
    return channels // group_size


def _to_rows(w: np.ndarray, axis: int, palettes: int) -> np.ndarray:
    """One C-contiguous row per palette: channel axis first, each group of channels flattened."""
    return np.ascontiguousarray(np.moveaxis(w, axis, 0)).reshape(palettes, -1)


def _from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """The inverse of :func:`_to_rows`."""
    moved = (shape[axis],) + tuple(d for i, d in enumerate(shape) if i != axis)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved), 0, axis))


def cluster(w: ArrayLike, n_clusters: int = 16, init: str = "linear", max_iter: int = 100,
            seed: int = 0, *, axis: Optional[int] = None, group_size: Optional[int] = None) -> ClusteredTensor:
    """Cluster the values of ``w`` into ``n_clusters`` shared values (1-D k-means).

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, any shape (clustered as float32; not modified).
    n_clusters : int in 1..65536
        The codebook size (16 = 4-bit palettization).
    init : {"linear", "kmeans++", "optimal"}
        ``"linear"``: centroids evenly spaced from ``min(w)`` to ``max(w)``
        (TensorFlow Model Optimization's default); ``"kmeans++"``: seeded
        k-means++ (D² sampling with greedy trials, as scikit-learn);
        ``"optimal"``: no iterations, the globally optimal 1-D clustering
        (dynamic programming over the sorted values, O(k·n·log n): slower,
        never a worse MSE than any other method).
    max_iter : int >= 0
        The most Lloyd iterations (0: the initial centroids themselves).
    seed : int >= 0
        Seed of ``"kmeans++"``.
    axis : int or None
        ``None``: one codebook for the whole tensor. An int (negative counts
        from the end): one codebook per index along it — per output channel
        (``axis=0`` for PyTorch/ONNX ``(out, ...)``, ``axis=-1`` for Keras
        ``(..., out)``; a Keras depthwise kernel ``(kh, kw, channels, 1)``
        wants ``axis=2``).
    group_size : int or None
        With ``axis``: one codebook per ``group_size`` consecutive channels
        (must divide their count).

    Returns
    -------
    ClusteredTensor
        Centroids ascending (each row, with ``axis``); each weight's index is that of its nearest
        centroid (a value exactly midway goes to the lower one). With fewer
        distinct values than clusters the centroids are those values (the
        last repeated) and the reconstruction is exact.

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or an argument has the wrong type.
    ValueError
        NaN or Inf in ``w``, ``n_clusters`` outside 1..65536, unknown ``init``,
        negative ``max_iter`` or ``seed``, ``axis`` out of range, ``group_size``
        without an axis or not dividing the channels.
    """
    n_clusters = check_int("n_clusters", n_clusters, minimum=1, maximum=65536)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    if not isinstance(init, str) or init not in _INITS:
        raise ValueError(f"init must be one of {sorted(_INITS)}, got {init!r}")
    array = np.asarray(w)
    if array.dtype.kind != "f" or array.dtype.itemsize > 8:
        raise TypeError(f"w must be a real floating-point array (float16, float32 or float64), got dtype {array.dtype}")
    if axis is None:
        if group_size is not None:
            raise ValueError("group_size needs an axis (the channel axis the palettes run along), got axis=None")
        centroids, iterations = _core.cluster_fit(array, n_clusters, _INITS[init], max_iter, seed)
        indices = _core.cluster_assign(array, centroids)
        return ClusteredTensor(indices, centroids, iterations)
    axis = check_int("axis", axis)
    if not -array.ndim <= axis < array.ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {array.ndim}")
    a = axis % array.ndim
    palettes = _palette_count(array.shape, a, group_size)
    rows = _to_rows(array, a, palettes)
    centroids, indices, iterations = _core.cluster_fit_rows(rows, n_clusters, _INITS[init], max_iter, seed)
    return ClusteredTensor(_from_rows(indices, array.shape, a), centroids, iterations, axis=axis,
                           group_size=group_size)
