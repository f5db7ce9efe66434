"""Running recipe stages over tensors: each tensor is a :class:`Track` that
the stages fold their outputs into."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._progress import progress as _progress
from .pruned_tensor import PrunedTensor
from .recipe import Stage
from .registry import codec_for

__all__ = ["Track", "run_stages", "masked"]


class Track:
    """One tensor on its way through the stages."""

    __slots__ = ("name", "original", "dense", "mask", "keep_mask", "form", "labels")

    def __init__(self, name: str, original: np.ndarray) -> None:
        self.name = name
        self.original = original
        self.dense: np.ndarray | None = None  # float32, once a stage touched it
        self.mask: np.ndarray | None = None  # the keep-mask of the prune stages so far
        self.keep_mask: np.ndarray | None = None  # stored with a value encoding that cannot hold the zeros itself
        self.form: Any = None
        self.labels: list[str] = []

    def weights(self) -> np.ndarray:
        if self.dense is None:
            self.dense = np.ascontiguousarray(self.original, dtype=np.float32)
        return self.dense


_ZERO = np.float32(0.0)


def masked(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float32 finite ``weights`` with +0.0 where ``mask`` is False (multiply,
    then + 0 turns the -0.0 of negative pruned weights into +0.0; 3x faster
    than ``np.where`` with a scalar)."""
    out = np.multiply(weights, mask, dtype=np.float32)
    out += _ZERO
    return out


def _check_mask(stage: Stage, name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != shape:
        raise TypeError(f"{stage.where}: method {stage.method.name!r} returned a {mask.dtype} {mask.shape} mask "
                        f"for tensor {name!r} of shape {shape}; expected bool")
    return mask


def _finish(stage: Stage, track: Track, output: Any) -> None:
    """Folds one method output into the track."""
    if stage.stage == "prune":
        mask = _check_mask(stage, track.name, output, track.original.shape)
        if track.mask is not None:
            mask = mask & track.mask
        track.mask = mask
        track.dense = masked(track.weights(), mask)
        track.form = PrunedTensor._from_dense(mask, track.dense)
    else:
        codec = codec_for(output)
        dense = np.asarray(codec.dense(output), dtype=np.float32).reshape(track.original.shape)
        if track.mask is not None and np.logical_and(dense, ~track.mask).any():
            # The encoding moved pruned entries off zero: keep the mask with it and
            # re-apply it, so they stay exactly zero (here and after load_compressed).
            dense = np.where(track.mask, dense, _ZERO)  # (not masked(): NaN * 0 is NaN)
            track.keep_mask = track.mask
        track.dense = dense
        track.form = output
    track.labels.append(stage.label)


def _check_order(stage: Stage, track: Track) -> None:
    if track.form is not None and not isinstance(track.form, PrunedTensor):
        raise ValueError(
            f"{stage.where}: tensor {track.name!r} was already encoded by {track.labels[-1]}; "
            "a tensor is quantized, clustered or factorized at most once, and pruned before that")
    if track.mask is not None and not stage.method.accepts_pruned:
        pruned_by = " and ".join(label for label in track.labels if label.startswith("prune."))
        raise ValueError(
            f"{stage.where}: tensor {track.name!r} was pruned ({pruned_by}), and {stage.label} cannot keep "
            "pruned entries zero (the product of the factors is dense); factorize or prune a tensor, not both "
            "(use include/exclude to split the tensors between the stages)")


def _apply(stage: Stage, tracks: Sequence[Track]) -> None:
    """Runs `stage` on the (already selected) `tracks`."""
    for track in tracks:
        _check_order(stage, track)
    if stage.method.scope == "model":
        try:
            outputs = stage.method.apply({t.name: t.weights() for t in tracks}, **stage.options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{stage.where}: {error}") from None
        for track in tracks:
            _finish(stage, track, outputs[track.name])
        return
    for track in tracks:
        extra = {"mask": track.mask} if stage.method.masked else {}
        try:
            output = stage.method.apply(track.weights(), **extra, **stage.options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
        _finish(stage, track, output)



def run_stages(names: Sequence[str], get: Callable[[str], np.ndarray], stages: Sequence[Stage],
         emit: Callable[[Track], None], *, release: Callable[[str], None] | None, show: bool,
         info: Callable[[str], tuple[tuple[int, ...], np.dtype]]) -> None:
    """Runs every stage over every tensor, emitting each finished tensor in order.

    Without model-scope stages each tensor goes through all stages before
    the next is read (so a file is streamed); otherwise stage by stage.
    """
    selected = {stage.index: {n for n in names if stage.selects(n, *info(n))} for stage in stages}
    if all(stage.method.scope == "tensor" for stage in stages):
        for name in _progress(names, total=len(names), description="compress", enabled=show):
            track = Track(name, get(name))
            for stage in stages:
                if name in selected[stage.index]:
                    _apply(stage, [track])
            emit(track)
            if release is not None:
                release(name)
        return
    tracks = {name: Track(name, get(name)) for name in names}
    for stage in _progress(stages, total=len(stages), description="compress", enabled=show):
        _apply(stage, [tracks[n] for n in names if n in selected[stage.index]])
    for name in names:
        emit(tracks[name])


