"""Weight clustering (weight sharing / palettization): every weight replaced
by the nearest of a few shared values, ``w ≈ centroids[indices]``.

The Swift core runs 1-D k-means on the values: they are radix-sorted once;
with prefix sums a cluster is a contiguous range of the sorted values, so a
Lloyd iteration costs O(k log n) instead of O(n k). Iterations stop when the
assignment no longer changes (an exact fixed point) or after ``max_iter``.
"""
from __future__ import annotations

from typing import Any

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

    __slots__ = ("indices", "centroids", "iterations")

    def __init__(self, indices: NDArray[Any], centroids: NDArray[np.float32], iterations: int = 0) -> None:
        indices = np.asarray(indices)
        if indices.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"indices must be uint8 or uint16, got {indices.dtype}")
        centroids = np.asarray(centroids, dtype=np.float32)
        if centroids.ndim != 1 or centroids.size == 0:
            raise ValueError(f"centroids must be a non-empty 1-D array, got shape {centroids.shape}")
        if indices.size and int(indices.max()) >= centroids.size:
            raise ValueError(f"index {int(indices.max())} is out of range for {centroids.size} centroids")
        self.indices = indices
        self.centroids = centroids
        self.iterations = int(iterations)

    @property
    def shape(self) -> tuple[int, ...]:
        """The weight's shape."""
        return self.indices.shape

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.size)

    def dequantize(self) -> NDArray[np.float32]:
        """``centroids[indices]`` as float32 (a Swift lookup)."""
        return _core.cluster_lookup(self.indices, self.centroids)

    @property
    def nbytes(self) -> int:
        """Bytes of ``ceil(log2(n_clusters))``-bit indices, bit-packed, plus the
        float32 centroids."""
        bits = max(1, int(np.ceil(np.log2(self.n_clusters)))) if self.n_clusters > 1 else 1
        return (self.indices.size * bits + 7) // 8 + 4 * self.centroids.size

    def to_config(self) -> dict[str, Any]:
        """Plain fields (``indices``, ``centroids``) for :meth:`from_config`."""
        return {"indices": self.indices, "centroids": self.centroids}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ClusteredTensor":
        return cls(np.asarray(config["indices"]), np.asarray(config["centroids"]))

    def __repr__(self) -> str:
        return (f"ClusteredTensor(shape={self.shape}, dtype={self.indices.dtype}, n_clusters={self.n_clusters}, "
                f"nbytes={self.nbytes})")


def cluster(w: ArrayLike, n_clusters: int = 16, init: str = "linear", max_iter: int = 100,
            seed: int = 0) -> ClusteredTensor:
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

    Returns
    -------
    ClusteredTensor
        Centroids ascending; each weight's index is that of its nearest
        centroid (a value exactly midway goes to the lower one). With fewer
        distinct values than clusters the centroids are those values (the
        last repeated) and the reconstruction is exact.

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or an argument has the wrong type.
    ValueError
        NaN or Inf in ``w``, ``n_clusters`` outside 1..65536, unknown ``init``,
        negative ``max_iter`` or ``seed``.
    """
    n_clusters = check_int("n_clusters", n_clusters, minimum=1, maximum=65536)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    if not isinstance(init, str) or init not in _INITS:
        raise ValueError(f"init must be one of {sorted(_INITS)}, got {init!r}")
    array = np.asarray(w)
    if array.dtype.kind != "f" or array.dtype.itemsize > 8:
        raise TypeError(f"w must be a real floating-point array (float16, float32 or float64), got dtype {array.dtype}")
    centroids, iterations = _core.cluster_fit(array, n_clusters, _INITS[init], max_iter, seed)
    indices = _core.cluster_assign(array, centroids)
    return ClusteredTensor(indices, centroids, iterations)
