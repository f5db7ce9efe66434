"""Streaming second-moment statistics of a layer's inputs.

GPTQ, SparseGPT and Wanda need only ``H = Σ xᵀx`` over the calibration
inputs ``x`` of a layer (Wanda only its diagonal) and the number of samples:
:class:`HessianAccumulator` keeps exactly that, so millions of calibration
tokens cost ``O(in²)`` memory. Batches are added by the Swift core (packed
``syrk``; products in float32 for float16/32 input, as the reference
implementations, partial sums in float64).
"""
from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _core
from .._validation import check_int

__all__ = ["HessianAccumulator", "CalibrationWarning", "LAYOUTS"]

LAYOUTS = ("torch", "keras")
_FLUSH_ROWS = 4096  # also the Swift core's chunk (hessianChunkSamples): one call per chunk fails or succeeds whole
# Rows per chunk of the |x| statistics (a 1-4 MB buffer for 1k-4k features).
_STATS_ROWS = 256


class _Scratch:
    """The partial-sums buffer (``features²`` of float32 or float64) the Swift
    core fills per chunk before adding it into a Hessian. Shared by every
    accumulator of one width and dtype, so a capture of many layers holds one
    buffer per width (not one per layer) and no call maps and zeroes a fresh
    one (64 MB at 4096 features); the lock keeps two threads from filling it
    at once."""

    __slots__ = ("array", "lock", "__weakref__")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.lock = threading.Lock()


# Alive as long as an accumulator holds it: freed with the last accumulator of its width.
_SCRATCHES: "weakref.WeakValueDictionary[tuple[int, str], _Scratch]" = weakref.WeakValueDictionary()
_SCRATCHES_LOCK = threading.Lock()


def _shared_scratch(features: int, dtype: np.dtype, name: str) -> _Scratch:
    key = (features, np.dtype(dtype).str)
    with _SCRATCHES_LOCK:
        scratch = _SCRATCHES.get(key)
        if scratch is None:
            try:
                scratch = _Scratch(np.empty(features * features, dtype))
            except MemoryError:
                raise MemoryError(f"layer {name!r}: cannot allocate {features * features * np.dtype(dtype).itemsize} "
                                  "bytes for the Hessian's partial sums") from None
            _SCRATCHES[key] = scratch
        return scratch


class CalibrationWarning(UserWarning):
    """Calibration data that works but is weak: fewer samples than input
    features (a rank-deficient Hessian: the result overfits those samples),
    or tensors of a calibrated stage that have no calibration data."""


class HessianAccumulator:
    """The input Hessian ``xᵀx`` of one layer, accumulated batch by batch.

    Parameters
    ----------
    features : int
        The layer's input width ``in`` (a conv layer: ``kh * kw * in`` of its
        im2col view).
    name : str, optional
        The layer's name, used in error messages.
    layout : {"torch", "keras"}
        How the layer's weight maps onto its inputs: ``"torch"`` for an
        ``(out, in)`` weight (PyTorch ``Linear``; ``Conv2d`` ``(out, in, kh,
        kw)`` flattened to ``(out, in*kh*kw)``), ``"keras"`` for an ``(in,
        out)`` kernel (Keras ``Dense``, ONNX ``MatMul``; ``Conv2D`` ``(kh, kw,
        in, out)`` flattened to ``(kh*kw*in, out)``). The im2col features must
        be ordered as that flattening.

    Attributes
    ----------
    hessian_ : numpy.ndarray of float64, shape (features, features)
        ``Σ xᵀx`` over every sample added (not divided by the count). Batches
        smaller than 4096 rows are buffered and added together.
    count_ : int
        Samples added so far.
    sum_, abs_sum_, abs_max_ : numpy.ndarray of float64, shape (features,)
        ``Σ x_j``, ``Σ |x_j|`` and ``max |x_j|`` per input feature (the means
        bias correction and AWQ use, the maxima SmoothQuant uses).

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> acc = sp.calibration.HessianAccumulator(4)
    >>> for batch in np.random.default_rng(0).normal(size=(3, 10, 4)):
    ...     acc.update(batch)
    >>> acc.count_
    30
    """

    #: Why the accumulator is unusable, once memory ran out while keeping the rest of a batch partly added
    #: (see :meth:`_take`); None while it is sound.
    _lost: Optional[str] = None

    def __init__(self, features: int, *, name: str = "layer", layout: str = "torch") -> None:
        self.features = check_int("features", features, minimum=0)
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'torch' or 'keras', got {layout!r}")
        self.name = name
        self.layout = layout
        self._hessian: NDArray[np.float64] = np.zeros((self.features, self.features), np.float64)
        self.count_ = 0
        # Small batches wait here until _FLUSH_ROWS rows: each Swift call costs O(features²)
        # besides its O(rows · features²) products, so one call per token would be slow.
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._scratch: Optional[_Scratch] = None  # taken at the first flush
        # First-order statistics per input feature (AWQ, SmoothQuant, bias correction).
        self.sum_ = np.zeros(self.features, np.float64)
        self.abs_sum_ = np.zeros(self.features, np.float64)
        self.abs_max_ = np.zeros(self.features, np.float64)

    def __getstate__(self) -> dict:
        # The shared scratch (and its lock) stays in this process: an accumulator sent back from a worker
        # process, or deep-copied, takes its own at its next flush.
        state = dict(self.__dict__)
        state["_scratch"] = None
        return state

    @property
    def hessian_(self) -> NDArray[np.float64]:
        """``Σ xᵀx`` over every sample added (float64, not divided by the count)."""
        self._check_sound()
        self._flush()
        return self._hessian

    def _flush(self) -> None:
        """Adds the pending rows into the Hessian. On a MemoryError (the caller
        may free memory and read :attr:`hessian_` again) the rows not yet
        added stay pending: nothing is lost and nothing is added twice."""
        _, failure = self._flush_pending()
        if failure is not None:
            raise failure

    def _flush_pending(self) -> tuple[int, Optional[MemoryError]]:
        """:meth:`_flush` returning (rows added, the MemoryError that stopped it) instead of raising."""
        if not self._pending:
            return 0, None
        try:
            batch = self._pending[0] if len(self._pending) == 1 else np.concatenate(
                self._pending, dtype=np.result_type(*self._pending))
        except MemoryError as error:
            return 0, MemoryError(f"layer {self.name!r}: {error}")
        added, failure = self._add_rows(batch)
        if failure is not None:
            self._pending = [batch[added:]]  # exactly the rows not added
            self._pending_rows = len(batch) - added
        else:
            self._pending, self._pending_rows = [], 0
        return added, failure

    def _add_rows(self, rows: np.ndarray) -> tuple[int, Optional[MemoryError]]:
        """Adds ``rows`` (finite) into the Hessian one Swift chunk at a time
        (each call adds its whole chunk or leaves the Hessian unchanged).
        Returns how many rows were added and, when memory ran out before all
        were, the MemoryError for the caller to raise once its own state is
        consistent."""
        rows = np.ascontiguousarray(rows)
        try:
            if self._scratch is None or self._scratch.array.dtype != rows.dtype:
                self._scratch = _shared_scratch(self.features, rows.dtype, self.name)
        except MemoryError as error:
            return 0, error
        added = 0
        while added < len(rows):
            chunk = rows[added:added + _FLUSH_ROWS]
            try:
                if self._scratch.lock.acquire(blocking=False):
                    try:
                        _core.hessian_accumulate(chunk, self._hessian, self._scratch.array)
                    finally:
                        self._scratch.lock.release()
                else:  # another thread is filling the shared scratch: the core allocates its own
                    _core.hessian_accumulate(chunk, self._hessian)
            except ValueError as error:
                raise ValueError(f"layer {self.name!r}: {error}") from None
            except MemoryError as error:
                return added, MemoryError(f"layer {self.name!r}: {error}")
            added += len(chunk)
        return added, None

    def update(self, x: ArrayLike) -> "HessianAccumulator":
        """Adds a batch of inputs: shape ``(..., features)`` (batch and
        sequence dimensions are flattened into samples). Returns ``self``.

        Raises
        ------
        TypeError
            ``x`` is not a real floating array.
        ValueError
            The last dimension is not ``features``, or ``x`` holds NaN/Inf
            (the message names the layer).
        MemoryError
            Only when nothing of ``x`` was taken: free memory and add it
            again. Once part of a batch is in the Hessian, the rest waits
            pending and the next flush (a later batch, or reading
            :attr:`hessian_`) retries, raising if memory is still short.
            Should even that copy of the rest fail, the accumulator is
            incomplete and every later use raises ``ValueError`` saying so.
        """
        self._check_sound()
        array = np.asarray(x)
        if array.dtype not in (np.float16, np.float32, np.float64):
            raise TypeError(f"layer {self.name!r}: calibration inputs must be a real floating-point array, "
                            f"got dtype {array.dtype}")
        if array.ndim < 1 or array.shape[-1] != self.features:
            raise ValueError(f"layer {self.name!r}: calibration inputs of shape {array.shape} do not match the "
                             f"layer's {self.features} input features (expected (..., {self.features}))")
        flat = array.reshape(-1, self.features)
        if flat.dtype == np.float16:
            flat = flat.astype(np.float32)
        # Checked whole before any chunk is added (the core checks each chunk only as it comes).
        for start in range(0, flat.shape[0], _FLUSH_ROWS):
            if not np.isfinite(flat[start:start + _FLUSH_ROWS]).all():
                raise ValueError(f"layer {self.name!r}: the calibration inputs contain NaN or Inf values")
        # The batch's first-order statistics come before anything of it is taken, so a MemoryError while
        # computing them leaves the accumulator as it was; once taken, they are added in place.
        statistics = self._batch_statistics(flat)
        if flat.shape[0] >= _FLUSH_ROWS:
            self._flush()  # keep the order of the sums
        self._take(flat)
        self._add_statistics(statistics, flat.shape[0])
        return self

    def _take(self, flat: np.ndarray) -> None:
        """Puts a checked batch into the Hessian (4096 rows or more) or among the pending rows (fewer,
        flushed once 4096 are waiting). Raises MemoryError only when nothing of the batch was taken, the
        pending rows then as before the call (the caller may free memory and add it again). Once part of
        it is in the Hessian, the rest waits pending, and the next flush (a later large batch, or reading
        :attr:`hessian_`) retries, raising if memory is still short."""
        pending, pending_rows = list(self._pending), self._pending_rows
        if flat.shape[0] >= _FLUSH_ROWS:
            added, failure = self._add_rows(flat)
            if failure is not None and added:
                try:
                    rest = np.array(flat[added:], copy=True)  # the caller may reuse its buffer
                except MemoryError as error:
                    # Part of the batch is in the Hessian and the rest cannot be kept: neither "taken" nor
                    # "not taken" is true, so the accumulator refuses every later use rather than mislead.
                    self._lost = (f"layer {self.name!r}: memory ran out while {flat.shape[0] - added} rows of a "
                                  f"batch of {flat.shape[0]} waited to be added ({error}); this accumulator is "
                                  "incomplete: capture the layer again into a new one")
                    raise MemoryError(self._lost) from None
                self._pending.append(rest)
                self._pending_rows += flat.shape[0] - added
        else:
            self._pending.append(np.array(flat, copy=True))  # the caller may reuse its buffer
            self._pending_rows += flat.shape[0]
            added, failure = self._flush_pending() if self._pending_rows >= _FLUSH_ROWS else (0, None)
        if failure is not None and added == 0:
            self._pending, self._pending_rows = pending, pending_rows  # nothing reached the Hessian
            raise failure

    def _batch_statistics(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``Σ x_j``, ``Σ |x_j|`` and ``max |x_j|`` of one batch (float64, per feature)."""
        try:
            total = flat.sum(axis=0, dtype=np.float64)
            abs_total = np.zeros(self.features, np.float64)
            abs_max = np.zeros(self.features, np.float64)
            if flat.shape[0]:
                # |x| through one reused buffer of _STATS_ROWS rows: a temporary as big as the batch costs
                # fresh pages the kernel must zero (~2% of a 4096-wide GPTQ's time).
                magnitude = np.empty((min(flat.shape[0], _STATS_ROWS), self.features), flat.dtype)
                for start in range(0, flat.shape[0], _STATS_ROWS):
                    rows = flat[start:start + _STATS_ROWS]
                    part = np.abs(rows, out=magnitude[:len(rows)])
                    abs_total += part.sum(axis=0, dtype=np.float64)
                    np.maximum(abs_max, part.max(axis=0), out=abs_max)
        except MemoryError as error:
            raise MemoryError(f"layer {self.name!r}: the |x| statistics of a batch: {error}") from None
        return total, abs_total, abs_max

    def _add_statistics(self, statistics: tuple[np.ndarray, np.ndarray, np.ndarray], rows: int) -> None:
        """The count and the first-order statistics of a batch that was taken (in place: no allocation)."""
        total, abs_total, abs_max = statistics
        self.sum_ += total
        self.abs_sum_ += abs_total
        np.maximum(self.abs_max_, abs_max, out=self.abs_max_)
        self.count_ += int(rows)

    def _check_sound(self) -> None:
        if self._lost is not None:
            raise ValueError(self._lost)

    def merge(self, other: "HessianAccumulator") -> "HessianAccumulator":
        """Adds another accumulator's statistics (e.g. from another worker)."""
        if not isinstance(other, HessianAccumulator):
            raise TypeError(f"can only merge a HessianAccumulator, got {type(other).__name__}")
        if other.features != self.features:
            raise ValueError(f"layer {self.name!r}: cannot merge {other.features} features into {self.features}")
        self.hessian_  # flush
        self._hessian += other.hessian_
        self.sum_ += other.sum_
        self.abs_sum_ += other.abs_sum_
        np.maximum(self.abs_max_, other.abs_max_, out=self.abs_max_)
        self.count_ += other.count_
        return self

    @property
    def column_norms_(self) -> NDArray[np.float64]:
        """``‖x_j‖₂`` of every input feature over the samples (Wanda's weights)."""
        return np.sqrt(np.maximum(np.diag(self.hessian_), 0.0))

    def check(self, *, warn: bool = True) -> None:
        """Raises ``ValueError`` when no sample was added; warns
        (:class:`CalibrationWarning`) when there are fewer samples than
        features: the Hessian is then rank-deficient (only damping makes it
        invertible) and the result fits those few samples."""
        self._check_sound()
        if self.count_ == 0 and self.features > 0:
            raise ValueError(f"layer {self.name!r}: no calibration samples were added (a model source: the model "
                             "never ran the layer on the calibration inputs — an unused module or a branch they do "
                             "not take; arrays: an empty array was given for it)")
        if warn and self.count_ < self.features:
            warnings.warn(f"layer {self.name!r}: {self.count_} calibration samples for {self.features} input "
                          "features; the Hessian is rank-deficient and the result will overfit them (use at "
                          f"least {self.features} samples, ideally many more)", CalibrationWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"HessianAccumulator(name={self.name!r}, features={self.features}, count_={self.count_})"


def as_accumulator(value: Any, name: str, layout: Optional[str] = None) -> HessianAccumulator:
    """``value`` (an accumulator or an array of inputs ``(..., in)``) as an accumulator."""
    if isinstance(value, HessianAccumulator):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "f":
        raise TypeError(f"layer {name!r}: calibration inputs must be a real floating-point array or a "
                        f"HessianAccumulator, got {type(value).__name__} of dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(f"layer {name!r}: calibration inputs must be (samples, in) (or (..., in)), "
                         f"got shape {array.shape}")
    return HessianAccumulator(array.shape[-1], name=name, layout=layout or "torch").update(array)
