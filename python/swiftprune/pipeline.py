"""Running recipe stages over tensors: each tensor is a :class:`Track` that
the stages fold their outputs into."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from . import _core
from ._fused import fused_recipe, try_fused
from ._progress import progress as _progress
from .pruned_tensor import PrunedTensor
from .recipe import Stage
from .registry import Fallback, codec_for
from .report import stored_bytes

__all__ = ["Track", "run_stages", "run_tensor_stages", "masked"]


class Track:
    """One tensor on its way through the stages."""

    __slots__ = ("name", "original", "dense", "mask", "_keep_mask", "_form", "labels", "nm", "stored", "derived")

    def __init__(self, name: str, original: np.ndarray) -> None:
        self.name = name
        self.original = original
        self.dense: np.ndarray | None = None  # float32, once a stage touched it
        self.mask: np.ndarray | None = None  # the keep-mask of the prune stages so far
        self.keep_mask: np.ndarray | None = None  # stored with a value encoding that cannot hold the zeros itself
        self.form: Any = None
        self.labels: list[str] = []
        self.nm: tuple[int, int, int] | None = None  # the N:M pattern of an nm prune, for compact storage
        # Whether ``dense`` (when set) is exactly ``masked(original as float32, mask)`` (or the widened
        # original before any mask): then a rollback rebuilds it instead of keeping a copy.
        self.derived = True

    # The stored size (see report.stored_bytes) is remembered until the
    # encoding changes: the pipeline's grow check and the report ask for it,
    # and a sparse layout's size costs passes over the whole tensor.
    @property
    def form(self) -> Any:
        return self._form

    @form.setter
    def form(self, value: Any) -> None:
        self._form = value
        self.stored = None

    @property
    def keep_mask(self) -> np.ndarray | None:
        return self._keep_mask

    @keep_mask.setter
    def keep_mask(self, value: np.ndarray | None) -> None:
        self._keep_mask = value
        self.stored = None

    def weights(self) -> np.ndarray:
        if self.dense is None:
            self.dense = np.ascontiguousarray(self.original, dtype=np.float32)
        return self.dense


_ZERO = np.float32(0.0)


def masked(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float32 ``weights`` with +0.0 where ``mask`` is False: ``weights * mask
    + 0`` (the + 0 turns the -0.0 of negative pruned weights into +0.0), in
    one pass of the Swift core, bit-identical to NumPy's multiply and add."""
    return _core.apply_mask(weights, mask)


_CHECK_CHUNK = 1 << 20  # entries per step of _nonzero_outside: two small temporaries, not two tensor-sized ones


def _nonzero_outside(dense: np.ndarray, mask: np.ndarray) -> bool:
    """Whether ``dense`` has a non-zero (or NaN) where ``mask`` is False."""
    values, keep = dense.reshape(-1), mask.reshape(-1)
    for start in range(0, values.size, _CHECK_CHUNK):
        stop = start + _CHECK_CHUNK
        if np.logical_and(values[start:stop], ~keep[start:stop]).any():
            return True
    return False


def _check_mask(stage: Stage, name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != shape:
        raise TypeError(f"{stage.where}: method {stage.method.name!r} returned a {mask.dtype} {mask.shape} mask "
                        f"for tensor {name!r} of shape {shape}; expected bool")
    return mask


def _finish(stage: Stage, track: Track, output: Any) -> None:
    """Folds one method output into the track."""
    if stage.stage == "prune":
        updated = encoded = None
        if isinstance(output, tuple) and len(output) == 2:  # (mask, updated weights): SparseGPT
            output, updated = output
            if not isinstance(updated, np.ndarray) and hasattr(updated, "dequantize"):
                encoded, updated = updated, None  # (mask, quantized weights): SparseGPT with bits
        mask = _check_mask(stage, track.name, output, track.original.shape)
        if track.mask is not None:
            mask = mask & track.mask
        track.mask = mask
        if encoded is not None:
            track.derived = False
            dense = np.asarray(codec_for(encoded).dense(encoded), dtype=np.float32).reshape(track.original.shape)
            if np.logical_and(dense, ~mask).any():  # (an earlier prune stage's zeros moved: keep its mask)
                dense = np.where(mask, dense, _ZERO)
                track.keep_mask = mask
            track.dense = dense
            track.form = encoded
            track.labels.append(stage.label)
            return
        if updated is not None:
            track.derived = False
            updated = np.asarray(updated, dtype=np.float32).reshape(track.original.shape)
            if not np.isfinite(updated).all():
                raise ValueError(f"{stage.where}: method {stage.method.name!r} returned non-finite weights "
                                 f"for tensor {track.name!r}")
            track.dense = updated
        track.dense = masked(track.weights(), mask)
        track.form = PrunedTensor._from_dense(mask, track.dense)
        if stage.method.name == "nm" and {"n", "m", "axis"} <= set(stage.options):
            track.nm = (stage.options["n"], stage.options["m"], stage.options["axis"])
        track.form.nm = track.nm
    else:
        codec = codec_for(output)
        dense = np.asarray(codec.dense(output), dtype=np.float32).reshape(track.original.shape)
        if track.mask is not None and _nonzero_outside(dense, track.mask):
            # The encoding moved pruned entries off zero: keep the mask with it and
            # re-apply it, so they stay exactly zero (here and after load_compressed).
            dense = np.where(track.mask, dense, _ZERO)  # (not masked(): NaN * 0 is NaN)
            track.keep_mask = track.mask
        track.dense = dense
        track.derived = False
        track.form = output
        if track.nm is not None and hasattr(output, "nm") and track.keep_mask is None:
            output.nm = track.nm  # its zeros keep the N:M pattern: stored as values + positions when smaller
    track.labels.append(stage.label)


def _check_order(stage: Stage, track: Track) -> None:
    if track.form is not None and not isinstance(track.form, PrunedTensor):
        encoded_by = [label for label in track.labels if not label.startswith("skipped:")][-1]
        raise ValueError(
            f"{stage.where}: tensor {track.name!r} was already encoded by {encoded_by}; "
            "a tensor is quantized, clustered or factorized at most once, and pruned before that")
    if track.mask is not None and not stage.method.accepts_pruned:
        pruned_by = " and ".join(label for label in track.labels if label.startswith("prune."))
        raise ValueError(
            f"{stage.where}: tensor {track.name!r} was pruned ({pruned_by}), and {stage.label} cannot keep "
            "pruned entries zero (the product of the factors is dense); factorize or prune a tensor, not both "
            "(use include/exclude to split the tensors between the stages)")


def _calibration_view(stage: Stage, track: Track, calibration: Any, folds: Any = None, rotations: Any = None) -> Any:
    """The calibration view of a calibrated stage's tensor, or None to skip it (with a warning)."""
    try:
        view = calibration.lookup(track.name, track.original.shape)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
    if folds is not None:
        view = folds.view(view, track.name)  # a scaled layer sees its scaled inputs
    if rotations is not None:
        view = rotations.view(view, track.name)  # a rotated layer sees its rotated inputs
    if view is None:
        if track.name in stage.include:
            raise ValueError(f"{stage.where}: tensor {track.name!r} has no calibration data (calibrated layers: "
                             f"{', '.join(list(calibration)[:8])}{', ...' if len(calibration) > 8 else ''})")
        from .calibration.hessian import CalibrationWarning

        warnings.warn(f"{stage.where}: tensor {track.name!r} has no calibration data; {stage.label} skips it",
                      CalibrationWarning, stacklevel=4)
    return view


def _apply(stage: Stage, tracks: Sequence[Track], calibration: Any = None, folds: Any = None,
           corrector: Any = None, rotations: Any = None) -> None:
    """Runs `stage` on the (already selected) `tracks`; `folds` is the
    activation-scale fold pass's outcome (scaled weights, skipped layers),
    `rotations` the :class:`~swiftprune.online_rotation.RotationPlan`."""
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
        if stage.method.fits is not None:
            reason = stage.method.fits(tuple(track.original.shape), stage.options)
            if reason is not None:
                _unfit(stage, track, f"{stage.label} cannot apply: {reason}", applied=False)
                continue
        if stage.method.input_scales is not None and folds is not None:
            reason = folds.skipped.get(stage.index, {}).get(track.name)
            if reason is not None:
                _unfit(stage, track, f"{stage.label} cannot fold a scale for it: {reason}", applied=False)
                continue
        extra: dict[str, Any] = {"mask": track.mask} if stage.method.masked else {}
        if stage.method.calibrated:
            view = _calibration_view(stage, track, calibration, folds, rotations)
            if view is None:
                continue
            extra["calibration"] = view
        try:
            output = stage.method.apply(track.weights(), **extra, **stage.options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
        fallback = None
        if isinstance(output, Fallback):
            from .calibration.hessian import CalibrationWarning

            fallback = output
            output = fallback.output
            warnings.warn(f"{stage.where}: tensor {track.name!r}: {fallback.reason}; {fallback.method} instead",
                          CalibrationWarning, stacklevel=4)
        if stage.stage == "prune":  # a mask alone is not an encoding: a later stage encodes the kept values
            _finish(stage, track, output)
            _label_fallback(stage, track, fallback)
            continue
        before = stored_bytes(track)
        saved = _Saved(track)
        _finish(stage, track, output)
        _label_fallback(stage, track, fallback)
        reason = None
        if getattr(output, "rank", None) == 0 and np.any(track.original):
            reason = f"{stage.label} gives rank 0 (an all-zero tensor)"
        else:
            after = stored_bytes(track)
            if after > before:
                reason = f"{stage.label} would grow it from {before:,} to {after:,} bytes"
        if reason is not None and not _unfit(stage, track, reason, applied=True):
            saved.restore(track)
            track.labels.append(f"skipped:{stage.label}")
        elif stage.bias_correction and corrector is not None:
            view = extra["calibration"] if "calibration" in extra else corrector.view(stage, track, folds)
            corrector.after_stage(stage, track, view)


def _label_fallback(stage: Stage, track: Track, fallback: Any) -> None:
    if fallback is not None and track.labels and track.labels[-1] == stage.label:
        track.labels[-1] = f"{stage.label}(fallback {fallback.method})"


class _Saved:
    """What an encoding stage's rollback needs to put a track back. The
    dense weights of a track that is the original, maybe masked, are not
    kept (they are rebuilt on a rollback): holding them while the stage's
    own dense result exists would double the float32 memory per tensor."""

    __slots__ = ("dense", "mask", "keep_mask", "form", "labels", "rebuild")

    def __init__(self, track: Track) -> None:
        self.mask, self.keep_mask, self.labels = track.mask, track.keep_mask, list(track.labels)
        self.rebuild = track.derived and track.keep_mask is None and (
            track.form is None or (isinstance(track.form, PrunedTensor) and track.form._dense is track.dense))
        if self.rebuild:
            self.dense, self.form = None, track.form is not None
            track.dense = None  # (and the pruned form that holds it, below): freed before the stage's result exists
            track.form = None
        else:
            self.dense, self.form = track.dense, track.form

    def restore(self, track: Track) -> None:
        track.mask, track.labels = self.mask, self.labels
        if self.rebuild:
            track.derived = True
            track.dense = None
            track.form = None
            if self.form:  # the pruned tensor: masked(original, mask), as _finish made it
                track.dense = masked(track.weights(), self.mask)
                track.form = PrunedTensor._from_dense(self.mask, track.dense)
                track.form.nm = track.nm
        else:
            track.dense, track.form = self.dense, self.form
        track.keep_mask = self.keep_mask


def _unfit(stage: Stage, track: Track, reason: str, *, applied: bool) -> bool:
    """Applies the stage's ``on_unfit`` policy to a tensor it does not fit.

    Returns True when the stage's result is kept (policy "warn" on a result
    that exists); otherwise the tensor stays as it was before the stage.
    "error" raises ``ValueError`` naming the stage, the tensor and why.
    """
    message = f"{stage.where}: tensor {track.name!r}: {reason}"
    if stage.on_unfit == "error":
        raise ValueError(f"{message} (on_unfit='error'; 'skip' leaves such tensors as they are)")
    keep = stage.on_unfit == "warn" and applied
    warnings.warn(f"{message}; {'kept anyway (on_unfit=warn)' if keep else 'left as it was (on_unfit=skip)'}",
                  UserWarning, stacklevel=4)
    if not applied:
        track.labels.append(f"skipped:{stage.label}")
    return keep



def check_calibration(stages: Sequence[Stage], selected: dict[int, set[str]], calibration: Any) -> None:
    """Fails early when a calibrated stage has no calibration data, or none for any tensor it selects."""
    for stage in stages:
        if stage.bias_correction and selected[stage.index] and calibration is None:
            raise ValueError(f"{stage.where}: bias_correction needs calibration data (the layers' mean inputs): "
                             "pass compress(..., calibration=...) or --calibration FILE")
        if not stage.method.calibrated or not selected[stage.index]:
            continue
        if calibration is None:
            raise ValueError(f"{stage.where}: {stage.label} needs calibration data: pass compress(..., "
                             "calibration=...) (see swiftprune.calibration) or --calibration FILE")
        if not any(calibration.find_layer(n) is not None for n in selected[stage.index]):
            raise ValueError(
                f"{stage.where}: none of the {len(selected[stage.index])} selected tensors has calibration data "
                f"(tensors such as {sorted(selected[stage.index])[0]!r}; calibrated layers: "
                f"{', '.join(list(calibration)[:8])}); name the layers as the tensors without '.weight'/'/kernel'")


def run_tensor_stages(stages: Sequence[Stage], track: Track, calibration: Any = None, folds: Any = None,
                      corrector: Any = None, *, fused: bool = False, rotations: Any = None) -> None:
    """Runs the tensor-scope ``stages`` (those selecting ``track``, in order)
    on one track (``folds``, ``corrector``, ``rotations``: as :func:`_apply`); with ``fused``
    and no calibration, a recipe that :mod:`swiftprune._fused` runs in one
    pass goes that way (its result must only be encoded: the track then
    holds no dense float32 weights)."""
    plain = calibration is None and folds is None and corrector is None
    recipe = fused_recipe(stages) if fused and plain else None
    if recipe is not None and try_fused(recipe, track):
        return
    for stage in stages:
        _apply(stage, [track], calibration, folds, corrector, rotations)


def run_stages(names: Sequence[str], get: Callable[[str], np.ndarray], stages: Sequence[Stage],
               emit: Callable[[Track], None], *, release: Callable[[str], None] | None, show: bool,
               info: Callable[[str], tuple[tuple[int, ...], np.dtype]], calibration: Any = None,
               fused: bool = False) -> Any:
    """Runs every stage over every tensor, emitting each finished tensor.

    Without model-scope stages each tensor goes through all stages before
    the next is read (so a file is streamed); otherwise stage by stage.
    With ``calibration`` (a :class:`~swiftprune.calibration.Calibration`),
    tensors go in its order (a model's forward order) and each compressed
    tensor is committed to it (sequential sources then recompute the inputs
    of later layers through it). Stages whose method scales inputs (AWQ,
    SmoothQuant) first fold their scales into the model's weights
    (:func:`~swiftprune.activation_folding.fold_inputs`): every stage then
    reads the folded tensors. Stages with ``rotate_input`` read ``W R`` and
    the rotated statistics (:class:`~swiftprune.online_rotation.RotationPlan`);
    a sequential source is told the equivalent unrotated weights. Returns
    that fold pass's :class:`~swiftprune.activation_folding.FoldOutcome` and
    the rotation plan (each None without such stages).
    ``fused=True`` when ``emit`` only encodes ``track.form`` and reports
    (see :func:`run_tensor_stages`).
    """
    selected = {stage.index: {n for n in names if stage.selects(n, *info(n))} for stage in stages}
    check_calibration(stages, selected, calibration)
    if calibration is not None:
        calibration.begin()  # a sequential source starts from the original model on every run
    folds = None
    if any(stage.method.input_scales is not None and selected[stage.index] for stage in stages):
        from .activation_folding import fold_inputs

        folds = fold_inputs(stages, selected, names, get, calibration)
        get = folds.wrap(get)
    rotations = None
    if any(stage.rotate_input is not None and selected[stage.index] for stage in stages):
        from .online_rotation import plan_rotations

        rotations = plan_rotations(stages, selected, names, info, calibration)
        get = rotations.wrap(get)
    corrector = None
    if calibration is not None:
        names = calibration.order(names)
        if any(stage.bias_correction and selected[stage.index] for stage in stages):
            from .corrected_biases import BiasCorrector

            corrector = BiasCorrector(names, info, get, calibration)
            names = corrector.order(names, [n for s in stages if s.bias_correction for n in selected[s.index]])

    def track_of(name: str) -> Track:
        track = Track(name, get(name))
        if corrector is not None:
            corrector.apply(track)
        if folds is not None and name in folds.arrays:
            track.labels.append("scaled" if name in folds.scales else "absorbs-scale")
        if rotations is not None and name in rotations.layers:
            track.labels.append("input-rotated")
        return track

    def commit(track: Track) -> None:
        if calibration is not None and track.form is not None:
            # (a layer behind an inserted Mul or rotation: the capture model, which has neither, holds its
            # effective weight)
            dense = track.dense if folds is None else folds.model_weight(track.name, track.dense)
            calibration.commit(track.name, dense if rotations is None else rotations.model_weight(track.name, dense))

    if all(stage.method.scope == "tensor" for stage in stages):
        for name in _progress(names, total=len(names), description="compress", enabled=show):
            track = track_of(name)
            run_tensor_stages([stage for stage in stages if name in selected[stage.index]], track, calibration,
                              folds, corrector, fused=fused, rotations=rotations)
            commit(track)
            emit(track)
            del track  # its buffers go before the next tensor is read
            if release is not None:
                release(name)
        return folds, rotations
    tracks = {name: track_of(name) for name in names}
    for stage in _progress(stages, total=len(stages), description="compress", enabled=show):
        _apply(stage, [tracks[n] for n in names if n in selected[stage.index]], calibration, folds, corrector,
               rotations)
    for name in names:
        if corrector is not None:
            corrector.apply(tracks[name])
        commit(tracks[name])
        emit(tracks[name])
    return folds, rotations


