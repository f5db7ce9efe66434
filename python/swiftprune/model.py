"""Whole models: ``compress()`` with recipes, the report, compressed files.

A recipe is a list of stages. Each stage names one operation (``prune``,
``quantize``, ``cluster`` or ``low_rank``) with its options, and which
tensors it applies to::

    recipe = [
        {"prune": {"method": "magnitude", "sparsity": 0.8}, "include": "*kernel*"},
        {"quantize": {"bits": 8, "axis": -1}},
    ]

Stage fields:

``prune`` / ``quantize`` / ``cluster`` / ``low_rank`` (exactly one)
    A mapping of options (``{}`` or ``null`` for the defaults). ``method``
    picks the variant; the other options are the keyword arguments of the
    matching function:

    - ``prune``: ``magnitude`` (default; ``sparsity``), ``global_magnitude``
      (``sparsity``; one threshold over every selected tensor), ``random``
      (``sparsity``, ``seed``), ``structured`` (``amount``, ``axis``,
      ``norm``), ``nm`` (``n``, ``m``, ``axis``), ``block`` (``sparsity``,
      ``block``: ``[rows, columns]`` or ``"RxC"``);
    - ``quantize``: ``minmax`` (default), ``percentile`` (also
      ``percentile``), ``mse``; options ``bits``, ``symmetric``, ``axis``,
      ``group_size`` (see :func:`~swiftprune.quantize`);
    - ``cluster``: ``kmeans`` (``n_clusters``, ``init``, ``max_iter``, ``seed``);
    - ``low_rank``: ``auto`` (default), ``svd``, ``randomized``; exactly one
      of ``rank``, ``energy``, ``ratio``, plus ``layout``, ``seed``.
``include``
    A glob pattern or list of them matched against tensor names
    (default ``"*"``). A pattern that matches no tensor of the model is an
    error, so a typo does not silently compress nothing.
``exclude``
    Glob pattern(s) of tensors to leave alone.
``min_rank``
    The smallest number of dimensions a tensor needs to be selected
    (default 2: biases and normalization vectors are skipped). A tensor named
    exactly (no wildcard) in ``include`` is selected whatever its rank.

Only floating-point tensors are ever compressed; others (step counters,
integer buffers) pass through unchanged. Stages run in order and compose:
after ``prune``, a ``quantize`` stage works on the pruned weights, and pruned
entries stay exactly zero: a quantized zero is the zero point, which
dequantizes to exactly 0 (symmetric and affine alike); ``cluster`` fits the
kept values with ``n_clusters - 1`` centroids and gives pruned entries a
centroid of exactly 0. No mask is stored for those. An encoding that moves
a pruned zero (a user-registered one, or a single cluster) gets its keep-mask
stored with it and re-applied. ``low_rank`` cannot keep zeros (the product of
the factors is dense), so factorizing a pruned tensor is an error. A tensor
is value-encoded (quantized, clustered or factorized) at most once, and
pruning must come before that encoding. Without a ``scope="model"`` method
(``global_magnitude``) each tensor goes through every stage before the next
is read; with one, the stages run one after the other over all tensors.

Extension points: :func:`register_method` adds an operation variant (one
entry: a function and its option validators) and :func:`register_codec`
teaches the report and the ``.safetensors`` format a new compressed type.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from . import _validation
from ._progress import progress as _progress
from ._version import __version__
from .io import (PathLike, SafetensorsFile, SafetensorsWriter, header_size_estimate, load_weights, save_weights,
                 weight_format)

__all__ = [
    "compress",
    "compress_file",
    "load_compressed",
    "load_recipe",
    "CompressionResult",
    "Report",
    "PrunedTensor",
    "register_method",
    "register_codec",
    "available_methods",
    "Method",
    "Codec",
    "OptionError",
    "REQUIRED",
]

STAGES = ("prune", "quantize", "cluster", "low_rank")
_STAGE_FIELDS = ("include", "exclude", "min_rank")
_REQUIRED = object()
REQUIRED = _REQUIRED  # the default of a mandatory option in Method.options


# --------------------------------------------------------------------------- #
# Compressed forms
# --------------------------------------------------------------------------- #


class PrunedTensor:
    """A pruned tensor stored as its kept values plus a bit mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``True`` where the weight is kept; the tensor's shape.
    values : numpy.ndarray of float32, 1-D
        The kept weights in C order (``dense[mask]``).
    """

    __slots__ = ("mask", "_values", "_dense")

    def __init__(self, mask: NDArray[np.bool_], values: NDArray[np.float32]) -> None:
        self.mask = mask
        self._values: NDArray[np.float32] | None = values
        self._dense: NDArray[np.float32] | None = None

    @classmethod
    def _from_dense(cls, mask: NDArray[np.bool_], dense: NDArray[np.float32]) -> "PrunedTensor":
        """From the dense pruned weights; the kept values are gathered on first use."""
        tensor = cls(mask, None)  # type: ignore[arg-type]
        tensor._dense = dense
        return tensor

    @property
    def values(self) -> NDArray[np.float32]:
        if self._values is None:
            self._values = self._dense[self.mask]
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def nbytes(self) -> int:
        """Stored size: the kept float32 values plus one bit per entry."""
        return 4 * int(np.count_nonzero(self.mask)) + (int(self.mask.size) + 7) // 8

    def to_dense(self) -> NDArray[np.float32]:
        """The dense float32 tensor, zero where pruned."""
        if self._dense is not None:
            return self._dense
        dense = np.zeros(self.mask.shape, dtype=np.float32)
        dense[self.mask] = self.values
        return dense

    def __repr__(self) -> str:
        return f"PrunedTensor(shape={self.shape}, kept={int(np.count_nonzero(self.mask))})"


@dataclass(frozen=True)
class Codec:
    """How the report and the ``.safetensors`` format handle one compressed type.

    ``encode(obj)`` returns ``(parts, attrs)``: named arrays to store and
    JSON-able attributes; ``decode(parts, attrs)`` rebuilds the object;
    ``dense(obj)`` gives the float32 weights; ``nbytes(obj)`` the stored size.
    """

    kind: str
    type: type
    dense: Callable[[Any], np.ndarray]
    nbytes: Callable[[Any], int]
    encode: Callable[[Any], tuple[dict[str, np.ndarray], dict[str, Any]]]
    decode: Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Any]


_CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    """Registers (or replaces) the codec for ``codec.type`` under ``codec.kind``."""
    _CODECS[codec.kind] = codec


def _codec_for(obj: Any) -> Codec:
    for codec in _CODECS.values():
        if isinstance(obj, codec.type):
            return codec
    raise TypeError(f"no codec is registered for compressed objects of type {type(obj).__name__}")


def _pack_mask(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.reshape(-1))


def _unpack_mask(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = math.prod(shape)
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (count + 7) // 8:
        raise ValueError(f"a packed mask for shape {tuple(shape)} needs {(count + 7) // 8} uint8 bytes, got {bits.shape} {bits.dtype}")
    return np.unpackbits(bits, count=count).astype(bool).reshape(tuple(shape))


def _decode_pruned(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> PrunedTensor:
    mask = _unpack_mask(parts["mask"], attrs["shape"])
    values = np.asarray(parts["values"])
    if values.dtype != np.float32 or values.shape != (int(mask.sum()),):
        raise ValueError(f"pruned values must be float32 of shape ({int(mask.sum())},), got {values.dtype} {values.shape}")
    return PrunedTensor(mask, values)


register_codec(Codec(
    kind="pruned", type=PrunedTensor, dense=lambda t: t.to_dense(), nbytes=lambda t: t.nbytes,
    encode=lambda t: ({"values": t.values, "mask": _pack_mask(t.mask)}, {"shape": list(t.shape)}),
    decode=_decode_pruned,
))


# --------------------------------------------------------------------------- #
# Methods: one registry entry per operation variant
# --------------------------------------------------------------------------- #


class OptionError(ValueError):
    """Raised by a :attr:`Method.check` for a bad combination of options;
    ``field`` is the option the message is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Method:
    """One operation variant a recipe stage can name.

    ``apply`` receives the float32 weights (``scope="tensor"``: one C-order
    array; ``scope="model"``: a dict name → array of every selected tensor,
    e.g. for a global threshold) and the validated options as keyword
    arguments. A ``prune`` method returns a bool keep-mask of the weight's
    shape (a dict of them for model scope); the other stages return a
    compressed object whose type has a codec.
    ``options`` maps each option name to ``(validator, default)``; a
    validator takes ``(name, value)`` and returns the checked value or raises
    ``TypeError``/``ValueError``; the default :data:`REQUIRED` makes it mandatory.
    ``check(options)``, when given, sees every validated option together and
    raises :class:`OptionError` for a bad combination.
    ``masked=True`` (tensor scope): ``apply`` also receives ``mask=`` (the
    keep-mask of the earlier prune stages, or ``None``), e.g. to keep pruned
    entries at an exact zero. ``accepts_pruned=False``: the method cannot keep pruned
    entries zero (a low-rank product is dense), so running it on a pruned
    tensor is an error.
    ``calibrated=True`` (tensor scope): ``apply`` also receives
    ``calibration=`` (a :class:`~swiftprune.calibration.arrays.LayerView`: the
    layer's input statistics and how the weight maps onto them); tensors
    without calibration data are skipped with a warning. A calibrated
    ``prune`` method may return ``(mask, updated_weights)``.
    """

    stage: str
    name: str
    apply: Callable[..., Any]
    options: Mapping[str, tuple[Callable[[str, Any], Any], Any]]
    scope: str = "tensor"
    check: Callable[[Mapping[str, Any]], None] | None = None
    masked: bool = False
    accepts_pruned: bool = True
    calibrated: bool = False


_METHODS: dict[str, dict[str, Method]] = {stage: {} for stage in STAGES}
_DEFAULT_METHOD: dict[str, str] = {}


def register_method(method: Method, *, default: bool = False) -> None:
    """Adds (or replaces) an operation variant; ``default`` makes it the one
    used when a stage gives no ``method``."""
    if method.stage not in _METHODS:
        raise ValueError(f"stage must be one of {STAGES}, got {method.stage!r}")
    if method.scope not in ("tensor", "model"):
        raise ValueError(f"scope must be 'tensor' or 'model', got {method.scope!r}")
    _METHODS[method.stage][method.name] = method
    if default or method.stage not in _DEFAULT_METHOD:
        _DEFAULT_METHOD[method.stage] = method.name


def available_methods() -> dict[str, list[str]]:
    """The operations this build can run: stage → method names."""
    return {stage: sorted(methods) for stage, methods in _METHODS.items() if methods}


# The built-in operations and codecs register themselves in ._methods,
# imported at the end of this module.


# --------------------------------------------------------------------------- #
# Recipes
# --------------------------------------------------------------------------- #


def _patterns(where: str, name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"{where}, field {name!r}: expected a glob pattern or a list of them, got {value!r}")


@dataclass(frozen=True)
class Stage:
    """A validated recipe stage."""

    index: int
    stage: str
    method: Method
    options: Mapping[str, Any]
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    min_rank: int = 2
    include_given: bool = False

    @property
    def label(self) -> str:
        return f"{self.stage}.{self.method.name}"

    @property
    def where(self) -> str:
        return f"recipe stage {self.index} ({self.stage})"

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def selects(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> bool:
        if not self.matches(name):
            return False
        named = name in self.include
        if dtype.kind != "f":
            if named:
                raise ValueError(f"{self.where}: tensor {name!r} has dtype {dtype}; only float tensors can be compressed")
            return False
        return named or len(shape) >= self.min_rank


def _parse_stage(index: int, spec: Any) -> Stage:
    where = f"recipe stage {index}"
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where}: expected a mapping such as {{'prune': {{'sparsity': 0.5}}}}, got {spec!r}")
    kinds = [key for key in spec if key in STAGES]
    unknown = [key for key in spec if key not in STAGES and key not in _STAGE_FIELDS]
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (expected one of {', '.join(STAGES + _STAGE_FIELDS)})")
    if len(kinds) != 1:
        raise ValueError(f"{where}: needs exactly one of {', '.join(STAGES)}, got {kinds or 'none'}")
    stage = kinds[0]
    where = f"{where} ({stage})"
    raw = spec[stage]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"{where}: options must be a mapping, got {raw!r}")
    options = dict(raw)
    if not _METHODS[stage]:
        raise ValueError(f"{where}: {stage} is not available in this build of swiftprune "
                         f"(available: {', '.join(available_methods()) or 'none'})")
    method_name = options.pop("method", _DEFAULT_METHOD.get(stage))
    if method_name not in _METHODS[stage]:
        raise ValueError(f"{where}, field 'method': unknown method {method_name!r} "
                         f"(available: {', '.join(sorted(_METHODS[stage]))})")
    method = _METHODS[stage][method_name]
    checked: dict[str, Any] = {}
    for key in options:
        if key not in method.options:
            raise ValueError(f"{where}, field {key!r}: not an option of {stage} method {method_name!r} "
                             f"(options: {', '.join(method.options) or 'none'})")
    for key, (validator, default) in method.options.items():
        if key not in options:
            if default is _REQUIRED:
                raise ValueError(f"{where}, field {key!r}: required by {stage} method {method_name!r}")
            checked[key] = default
            continue
        try:
            checked[key] = validator(key, options[key])
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}, field {key!r}: {error}") from None
    if method.check is not None:
        try:
            method.check(checked)
        except OptionError as error:
            raise ValueError(f"{where}, field {error.field!r}: {error}") from None
    include = _patterns(where, "include", spec["include"]) if "include" in spec else ("*",)
    exclude = _patterns(where, "exclude", spec["exclude"]) if "exclude" in spec else ()
    min_rank = 2
    if "min_rank" in spec:
        try:
            min_rank = _validation.check_int("min_rank", spec["min_rank"], minimum=0)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}, field 'min_rank': {error}") from None
    return Stage(index, stage, method, checked, include, exclude, min_rank, "include" in spec)


def load_recipe(recipe: Any) -> list[Stage]:
    """Validates a recipe: a list of stage mappings, or the path of a YAML
    (``.yaml``/``.yml``, needs PyYAML) or JSON file holding that list.

    Errors name the stage (0-based) and the field, e.g. ``recipe stage 1
    (prune), field 'sparsity': sparsity must be in [0, 1], got 1.5``.
    """
    if isinstance(recipe, (str, os.PathLike)):
        path = os.fspath(recipe)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.lower().endswith(".json"):
            try:
                recipe = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"recipe file {path}: invalid JSON: {error}") from None
        else:
            try:
                import yaml
            except ImportError:
                raise ImportError("YAML recipes need PyYAML: pip install pyyaml (or write the recipe as JSON)") from None
            try:
                recipe = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ValueError(f"recipe file {path}: invalid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(recipe, list):
            raise ValueError(f"recipe file {path} must hold a list of stages, got {type(recipe).__name__}")
    if isinstance(recipe, Mapping) or not isinstance(recipe, Sequence) or isinstance(recipe, (str, bytes)):
        raise TypeError(f"recipe must be a list of stages or a path to a YAML/JSON file, got {type(recipe).__name__}")
    if not recipe:
        raise ValueError("recipe is empty: give at least one stage")
    return [_parse_stage(i, spec) for i, spec in enumerate(recipe)]


def _check_patterns(stages: Sequence[Stage], names: Sequence[str]) -> None:
    for stage in stages:
        if not stage.include_given:
            continue
        for pattern in stage.include:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise ValueError(f"{stage.where}, field 'include': pattern {pattern!r} matches no tensor")


# --------------------------------------------------------------------------- #
# Running stages
# --------------------------------------------------------------------------- #


class _Track:
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


def _masked(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
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


def _finish(stage: Stage, track: _Track, output: Any) -> None:
    """Folds one method output into the track."""
    if stage.stage == "prune":
        updated = None
        if isinstance(output, tuple) and len(output) == 2:  # (mask, updated weights): SparseGPT
            output, updated = output
        mask = _check_mask(stage, track.name, output, track.original.shape)
        if track.mask is not None:
            mask = mask & track.mask
        track.mask = mask
        if updated is not None:
            updated = np.asarray(updated, dtype=np.float32).reshape(track.original.shape)
            if not np.isfinite(updated).all():
                raise ValueError(f"{stage.where}: method {stage.method.name!r} returned non-finite weights "
                                 f"for tensor {track.name!r}")
            track.dense = updated
        track.dense = _masked(track.weights(), mask)
        track.form = PrunedTensor._from_dense(mask, track.dense)
    else:
        codec = _codec_for(output)
        dense = np.asarray(codec.dense(output), dtype=np.float32).reshape(track.original.shape)
        if track.mask is not None and np.logical_and(dense, ~track.mask).any():
            # The encoding moved pruned entries off zero: keep the mask with it and
            # re-apply it, so they stay exactly zero (here and after load_compressed).
            dense = np.where(track.mask, dense, _ZERO)  # (not _masked: NaN * 0 is NaN)
            track.keep_mask = track.mask
        track.dense = dense
        track.form = output
    track.labels.append(stage.label)


def _check_order(stage: Stage, track: _Track) -> None:
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


def _calibration_view(stage: Stage, track: _Track, calibration: Any) -> Any:
    """The calibration view of a calibrated stage's tensor, or None to skip it (with a warning)."""
    if calibration is None:
        raise ValueError(f"{stage.where}: {stage.label} needs calibration data: pass "
                         "compress(..., calibration=...) (see swiftprune.calibration) or --calibration FILE")
    try:
        view = calibration.lookup(track.name, track.original.shape)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
    if view is None:
        if track.name in stage.include:
            raise ValueError(f"{stage.where}: tensor {track.name!r} has no calibration data (calibrated layers: "
                             f"{', '.join(list(calibration)[:8])}{', ...' if len(calibration) > 8 else ''})")
        from .calibration.hessian import CalibrationWarning
        import warnings
        warnings.warn(f"{stage.where}: tensor {track.name!r} has no calibration data; {stage.label} skips it",
                      CalibrationWarning, stacklevel=4)
    return view


def _apply(stage: Stage, tracks: Sequence[_Track], calibration: Any = None) -> None:
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
        extra: dict[str, Any] = {"mask": track.mask} if stage.method.masked else {}
        if stage.method.calibrated:
            view = _calibration_view(stage, track, calibration)
            if view is None:
                continue
            extra["calibration"] = view
        try:
            output = stage.method.apply(track.weights(), **extra, **stage.options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
        _finish(stage, track, output)


def _stored_bytes(track: _Track) -> int:
    if track.form is None:
        return int(track.original.nbytes)
    size = _codec_for(track.form).nbytes(track.form)
    if track.keep_mask is not None:
        size += (track.keep_mask.size + 7) // 8
    return int(size)


def _relative_error(original: np.ndarray, approximation: np.ndarray, chunk: int = 1 << 16) -> float:
    """||original - approximation||_F / ||original||_F in float64, as
    :func:`~swiftprune.relative_error` computes it, but chunk by chunk through
    one small float64 buffer: no float64 copy of the whole tensor (memory
    stays bounded on large ones) and no BLAS call (OpenBLAS's threaded ``ddot``
    is slow on a busy machine). 0 for two zero tensors, inf when only the
    original is zero."""
    a = np.asarray(original).reshape(-1)
    b = np.asarray(approximation).reshape(-1)
    buffer = np.empty(min(chunk, a.size), dtype=np.float64)
    norm = difference = 0.0
    for start in range(0, a.size, chunk):
        x = a[start:start + chunk]
        d = buffer[:x.size]
        np.subtract(x, b[start:start + chunk], out=d, dtype=np.float64)
        norm += float(np.einsum("i,i->", x, x, dtype=np.float64))
        difference += float(np.einsum("i,i->", d, d))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else math.inf
    return math.sqrt(difference) / math.sqrt(norm)


def _report_row(track: _Track) -> dict[str, Any]:
    params = int(track.original.size)
    after = _stored_bytes(track)
    touched = track.form is not None
    return {
        "name": track.name,
        "shape": tuple(int(d) for d in track.original.shape),
        "dtype": str(track.original.dtype),
        "params": params,
        "nonzeros": int(np.count_nonzero(track.dense if touched else track.original)),
        "bits": (after * 8 / params) if params else 0.0,
        "bytes_before": int(track.original.nbytes),
        "bytes_after": after,
        "relative_error": _relative_error(track.original, track.dense) if touched else 0.0,
        "stages": "+".join(track.labels) or "-",
    }


def _run(names: Sequence[str], get: Callable[[str], np.ndarray], stages: Sequence[Stage],
         emit: Callable[[_Track], None], *, release: Callable[[str], None] | None, show: bool,
         info: Callable[[str], tuple[tuple[int, ...], np.dtype]], calibration: Any = None) -> None:
    """Runs every stage over every tensor, emitting each finished tensor.

    Without model-scope stages each tensor goes through all stages before
    the next is read (so a file is streamed); otherwise stage by stage.
    With ``calibration``, tensors go in its order (a model's forward order)
    and each compressed tensor is committed to it (sequential sources then
    recompute the inputs of later layers through it).
    """
    selected = {stage.index: {n for n in names if stage.selects(n, *info(n))} for stage in stages}
    calibrated = [stage for stage in stages if stage.method.calibrated]
    if calibration is None and any(selected[stage.index] for stage in calibrated):
        stage = next(stage for stage in calibrated if selected[stage.index])
        raise ValueError(f"{stage.where}: {stage.label} needs calibration data: pass compress(..., calibration=...) "
                         "(see swiftprune.calibration) or --calibration FILE")
    if calibration is not None:
        for stage in calibrated:
            if selected[stage.index] and not any(calibration.find_layer(n) is not None for n in selected[stage.index]):
                raise ValueError(
                    f"{stage.where}: none of the {len(selected[stage.index])} selected tensors has calibration data "
                    f"(tensors such as {sorted(selected[stage.index])[0]!r}; calibrated layers: "
                    f"{', '.join(list(calibration)[:8])}); name the layers as the tensors without '.weight'/'/kernel'")
        names = calibration.order(names)

    def commit(track: _Track) -> None:
        if calibration is not None and track.form is not None:
            calibration.commit(track.name, track.dense)

    if all(stage.method.scope == "tensor" for stage in stages):
        for name in _progress(names, total=len(names), description="compress", enabled=show):
            track = _Track(name, get(name))
            for stage in stages:
                if name in selected[stage.index]:
                    _apply(stage, [track], calibration)
            commit(track)
            emit(track)
            if release is not None:
                release(name)
        return
    tracks = {name: _Track(name, get(name)) for name in names}
    for stage in _progress(stages, total=len(stages), description="compress", enabled=show):
        _apply(stage, [tracks[n] for n in names if n in selected[stage.index]], calibration)
    for name in names:
        commit(tracks[name])
        emit(tracks[name])


# --------------------------------------------------------------------------- #
# Report and result
# --------------------------------------------------------------------------- #


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


class Report(list):
    """Rows (dicts) of a compression, one per tensor, with :meth:`summary`.

    Row keys: ``name``, ``shape``, ``dtype``, ``params``, ``nonzeros``,
    ``bits`` (stored bits per parameter, overheads included),
    ``bytes_before``, ``bytes_after``, ``relative_error`` (Frobenius norm of
    the change over that of the original; 0 for untouched tensors) and
    ``stages`` (e.g. ``"prune.magnitude+quantize.minmax"``).
    """

    @property
    def totals(self) -> dict[str, Any]:
        """Sums over the rows, with the overall ``ratio`` (bytes before / after)."""
        before = sum(r["bytes_before"] for r in self)
        after = sum(r["bytes_after"] for r in self)
        params = sum(r["params"] for r in self)
        return {"params": params, "nonzeros": sum(r["nonzeros"] for r in self),
                "bytes_before": before, "bytes_after": after,
                "bits": after * 8 / params if params else 0.0,
                "ratio": before / after if after else math.inf}

    def summary(self) -> str:
        """The report as a text table, with totals and the overall ratio."""
        headers = ("tensor", "shape", "params", "nonzeros", "bits", "before", "after", "rel. error", "stages")
        lines = [[r["name"], "x".join(map(str, r["shape"])) or "()", f"{r['params']:,}", f"{r['nonzeros']:,}",
                  f"{r['bits']:.2f}", _human_bytes(r["bytes_before"]), _human_bytes(r["bytes_after"]),
                  f"{r['relative_error']:.4f}", r["stages"]] for r in self]
        t = self.totals
        total = ["total", "", f"{t['params']:,}", f"{t['nonzeros']:,}", f"{t['bits']:.2f}",
                 _human_bytes(t["bytes_before"]), _human_bytes(t["bytes_after"]), "", ""]
        widths = [max(len(str(row[i])) for row in [headers, total, *lines]) for i in range(len(headers))]
        right = {2, 3, 4, 5, 6, 7}

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out = [fmt(headers), rule, *map(fmt, lines), rule, fmt(total),
               f"compression ratio {t['ratio']:.2f}x ({_human_bytes(t['bytes_before'])} -> "
               f"{_human_bytes(t['bytes_after'])})"]
        return "\n".join(out)


@dataclass
class CompressionResult:
    """What :func:`compress` returns.

    Attributes
    ----------
    weights : dict, list or tuple of numpy.ndarray
        The same kind of container as the input, with dense float32 arrays
        for compressed tensors (ready for ``set_weights`` /
        ``load_state_dict``) and the input arrays, unchanged, for the others.
    tensors : dict of str to object
        Per name, the compressed form (``PrunedTensor``, ``QuantizedTensor``,
        ...) or the original array for tensors no stage touched. Sequence
        inputs are named ``"0"``, ``"1"``, ...
    masks : dict of str to numpy.ndarray
        Keep-masks stored with a value encoding that cannot hold the pruned
        zeros itself (re-applied, so pruned entries stay exactly zero).
        Empty for the built-in quantize and cluster stages, which keep them.
    report : Report
        One row per tensor; ``report.summary()`` is a table.
    """

    weights: Any
    tensors: dict[str, Any]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    container: str = "mapping"

    def summary(self) -> str:
        """The report as a text table (see :meth:`Report.summary`)."""
        return self.report.summary()

    def save(self, path: PathLike) -> None:
        """Writes the compressed forms to a ``.safetensors`` file, atomically.

        Packed values, scales, zero points, masks and factors are stored as
        tensors named ``"<tensor>::<part>"``; metadata key ``"swiftprune"``
        holds the layout and the report. :func:`load_compressed` restores it.
        For plain dense weights use ``save_weights(path, result.weights)``.
        """
        path = os.fspath(path)
        if not path.lower().endswith(".safetensors"):
            raise ValueError(f"compressed results are saved as .safetensors, got {path!r}; "
                             "for dense weights in another format use save_weights(path, result.weights)")
        ndims = {name: np.ndim(form) if isinstance(form, np.ndarray) else len(getattr(form, "shape", ()))
                 for name, form in self.tensors.items()}
        with _CompressedWriter(path, self.container, ndims) as writer:
            for name, form in self.tensors.items():
                writer.add(name, form, self.masks.get(name))
            writer.report = list(self.report)


class _CompressedWriter:
    """Streams compressed tensors into a ``.safetensors`` file."""

    def __init__(self, path: str, container: str, ndims: Mapping[str, int]) -> None:
        # Room for up to 6 stored parts per tensor plus the layout and report metadata.
        reserve = header_size_estimate(ndims, parts=6) + 800 * len(ndims) + 1024
        self._writer = SafetensorsWriter(path, header_reserve=min(reserve, 100_000_000))
        self._layout: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self.container = container
        self.report: list[dict[str, Any]] = []

    def _put(self, key: str, array: np.ndarray) -> None:
        if key in self._names:
            raise ValueError(f"cannot save: the stored name {key!r} is used twice (a tensor name contains '::'?)")
        self._names.add(key)
        self._writer.add(key, array)

    def add(self, name: str, form: Any, mask: np.ndarray | None) -> None:
        if isinstance(form, np.ndarray):
            self._put(name, form)
            self._layout.append({"name": name, "kind": "dense"})
            return
        codec = _codec_for(form)
        parts, attrs = codec.encode(form)
        entry: dict[str, Any] = {"name": name, "kind": codec.kind, "attrs": attrs, "parts": {}}
        for part, array in parts.items():
            key = f"{name}::{part}"
            self._put(key, np.asarray(array))
            entry["parts"][part] = key
        if mask is not None:
            key = f"{name}::keep_mask"
            self._put(key, _pack_mask(mask))
            entry["mask"] = {"key": key, "shape": list(mask.shape)}
        self._layout.append(entry)

    def __enter__(self) -> "_CompressedWriter":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is not None:
            self._writer = None  # discarded
            return
        document = {"format_version": 1, "swiftprune_version": __version__, "container": self.container,
                    "tensors": self._layout, "report": self.report}
        self._writer.set_metadata("swiftprune", json.dumps(document, default=_json_default))
        self._writer.commit()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in the file's metadata")


def _container_of(weights: Any) -> tuple[str, list[str], Callable[[str], np.ndarray]]:
    if isinstance(weights, SafetensorsFile):
        return "mapping", weights.names, weights.__getitem__
    if isinstance(weights, Mapping):
        arrays: dict[str, np.ndarray] = {}
        for name, value in weights.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"weight names must be non-empty strings, got {name!r}")
            arrays[name] = np.asarray(value)
        return "mapping", list(arrays), arrays.__getitem__
    if isinstance(weights, (list, tuple)):
        arrays = {str(i): np.asarray(value) for i, value in enumerate(weights)}
        return "sequence", list(arrays), arrays.__getitem__
    raise TypeError("weights must be a mapping name -> array (a state_dict, load_weights(path)) or a list of "
                    f"arrays (Keras get_weights()), got {type(weights).__name__}")


def _info_getter(weights: Any, get: Callable[[str], np.ndarray]) -> Callable[[str], tuple[tuple[int, ...], np.dtype]]:
    if isinstance(weights, SafetensorsFile):
        def info(name: str) -> tuple[tuple[int, ...], np.dtype]:
            kind = weights.dtype_name(name)
            dtype = np.dtype(np.float32) if kind in ("F16", "F32", "F64", "BF16", "F8_E4M3", "F8_E5M2") else np.dtype(np.int8)
            return weights.shape(name), dtype
        return info
    return lambda name: (get(name).shape, get(name).dtype)


def compress(weights: Any, recipe: Any, progress: bool = True, *, calibration: Any = None) -> CompressionResult:
    """Compresses a whole model's weights with a recipe of stages.

    Parameters
    ----------
    weights : mapping of str to array_like, or list/tuple of array_like
        A PyTorch ``state_dict`` converted to NumPy, ``load_weights(path)``
        (or a :class:`~swiftprune.io.SafetensorsFile`), a Keras
        ``get_weights()`` list, ... Never modified.
    recipe : list of mappings, or str / os.PathLike
        The stages (see the module documentation) or a YAML/JSON file of them.
    progress : bool, default True
        Show a progress bar (tqdm, when installed and stderr is a terminal).
    calibration : Calibration, mapping or str, optional
        Layer inputs for calibrated methods (``gptq``, ``sparsegpt``,
        ``wanda``): a :class:`~swiftprune.calibration.Calibration` (from
        arrays, a Keras or an ONNX model; sequential or independent), a
        mapping ``{layer: (samples, in) array}`` (PyTorch ``(out, in)``
        weights), or the path of an ``.npz`` of either.

    Returns
    -------
    CompressionResult
        ``.weights`` (same container kind as the input), ``.tensors``,
        ``.masks``, ``.report``, ``.summary()``, ``.save(path)``.

    Raises
    ------
    TypeError, ValueError
        A bad container or recipe (the message names the stage and field), or
        a stage failing on a tensor (the message names both).

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> w = {"fc.weight": np.random.default_rng(0).normal(size=(8, 8)), "fc.bias": np.zeros(8)}
    >>> result = sp.compress(w, [{"prune": {"sparsity": 0.75}}], progress=False)
    >>> int(np.count_nonzero(result.weights["fc.weight"]))
    16
    """
    stages = load_recipe(recipe)
    container, names, get = _container_of(weights)
    _check_patterns(stages, names)
    calibration = _calibration_source(calibration)
    tracks: list[_Track] = []
    # An open file's input pages are let go once each tensor is done (views stay valid).
    release = weights.release if isinstance(weights, SafetensorsFile) else None
    _run(names, get, stages, tracks.append, release=release, show=progress, info=_info_getter(weights, get),
         calibration=calibration)
    position = {name: i for i, name in enumerate(names)}
    tracks.sort(key=lambda t: position[t.name])  # a calibration source may have reordered them
    report = Report(_report_row(t) for t in tracks)
    dense = [t.dense if t.form is not None else t.original for t in tracks]
    if container == "sequence":
        out: Any = type(weights)(dense) if isinstance(weights, tuple) else dense
    elif isinstance(weights, dict):
        out = type(weights)() if type(weights) is not dict else {}
        try:
            out.update(zip(names, dense))
        except TypeError:
            out = dict(zip(names, dense))
    else:
        out = dict(zip(names, dense))
    tensors = {t.name: (t.form if t.form is not None else t.original) for t in tracks}
    masks = {t.name: t.keep_mask for t in tracks if t.keep_mask is not None}
    return CompressionResult(out, tensors, masks, report, container)


def _calibration_source(calibration: Any) -> Any:
    """``compress(calibration=...)`` as a Calibration (or None)."""
    if calibration is None:
        return None
    from .calibration import Calibration, from_arrays, load_calibration

    if isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, (str, os.PathLike)):
        return load_calibration(calibration)
    if isinstance(calibration, Mapping):
        return from_arrays(calibration)
    raise TypeError("calibration must be a swiftprune.calibration.Calibration, a mapping layer -> (samples, in) "
                    f"array, or a .npz path, got {type(calibration).__name__}")


def compress_file(source: PathLike, destination: PathLike, recipe: Any, *, dense: bool | None = None,
                  progress: bool = True, calibration: Any = None) -> Report:
    """Compresses a weight file into another, one tensor at a time.

    A ``.safetensors`` source is memory-mapped and streamed: each tensor is
    read, compressed, written to the destination's spool and dropped from
    memory before the next, so peak memory stays near the largest tensor and
    its outputs, not the whole model. (Stages of model scope, such as a
    global threshold, need every selected tensor at once; an ``.npz`` or
    ``.h5`` destination is written at the end, from outputs held in memory;
    ``.npz`` and ``.h5`` sources are loaded whole.)

    Parameters
    ----------
    source, destination : str or os.PathLike
        Weight files; see :func:`~swiftprune.load_weights` for the formats.
    recipe : list of mappings, or a YAML/JSON path
    dense : bool, optional
        Write dense float weights (any format) instead of the compressed form
        (``.safetensors`` only, readable by :func:`load_compressed`). Default:
        compressed for a ``.safetensors`` destination, dense otherwise.
    progress : bool, default True
    calibration : optional
        Layer inputs for calibrated methods, as in :func:`compress`.

    Returns
    -------
    Report
        The per-tensor rows; ``.summary()`` prints the table.
    """
    stages = load_recipe(recipe)
    destination = os.fspath(destination)
    to_safetensors = destination.lower().endswith(".safetensors")
    weight_format(destination)  # fails early for an unknown format
    if dense is None:
        dense = not to_safetensors
    if not dense and not to_safetensors:
        raise ValueError(f"the compressed form is saved as .safetensors; {destination!r} can only take dense=True")
    source_file: Any = SafetensorsFile(source) if weight_format(source) == "safetensors" else load_weights(source)
    if isinstance(source_file, SafetensorsFile) and "swiftprune" in source_file.metadata:
        raise ValueError(f"{source_file.path} is already a swiftprune compressed file; "
                         "compress load_compressed(path).weights instead")
    container, names, get = _container_of(source_file)
    _check_patterns(stages, names)
    calibration = _calibration_source(calibration)
    rows = Report()
    release = source_file.release if isinstance(source_file, SafetensorsFile) else None
    info = _info_getter(source_file, get)
    if to_safetensors:
        ndims = {name: len(info(name)[0]) for name in names}
        writer: Any = (SafetensorsWriter(destination, header_reserve=header_size_estimate(ndims)) if dense
                       else _CompressedWriter(destination, container, ndims))
        with writer:
            def emit(track: _Track) -> None:
                rows.append(_report_row(track))
                if dense:
                    writer.add(track.name, track.dense if track.form is not None else track.original)
                else:
                    writer.add(track.name, track.form if track.form is not None else np.asarray(track.original),
                               track.keep_mask)

            _run(names, get, stages, emit, release=release, show=progress, info=info, calibration=calibration)
            if not dense:
                writer.report = list(rows)
        return rows
    collected: dict[str, np.ndarray] = {}

    def collect(track: _Track) -> None:
        rows.append(_report_row(track))
        collected[track.name] = track.dense if track.form is not None else track.original

    _run(names, get, stages, collect, release=release, show=progress, info=info, calibration=calibration)
    save_weights(destination, collected)
    return rows


def load_compressed(path: PathLike) -> CompressionResult:
    """Reads a file written by :meth:`CompressionResult.save` (or
    ``swiftprune compress``) back into a :class:`CompressionResult`.

    The compressed forms, masks and report are exactly those saved;
    ``.weights`` holds their dense float32 reconstruction (and the stored
    arrays for untouched tensors), as a list when a list was compressed.

    Raises
    ------
    ValueError
        The file is not a valid safetensors file, was not written by
        swiftprune (use :func:`~swiftprune.load_weights` for plain weights),
        or stores a compressed type this build does not know.
    """
    source = SafetensorsFile(path)
    text = source.metadata.get("swiftprune")
    if text is None:
        raise ValueError(f"{source.path} holds no swiftprune compression metadata; "
                         "use load_weights() for plain weight files")
    try:
        document = json.loads(text)
        layout = document["tensors"]
        container = document.get("container", "mapping")
        if not isinstance(layout, list) or container not in ("mapping", "sequence"):
            raise ValueError("bad layout")
        tensors: dict[str, Any] = {}
        masks: dict[str, np.ndarray] = {}
        for entry in layout:
            name, kind = entry["name"], entry["kind"]
            if kind == "dense":
                tensors[name] = source[name]
                continue
            if kind not in _CODECS:
                raise ValueError(f"tensor {name!r} is stored as {kind!r}, which this build of swiftprune cannot read")
            parts = {part: source[key] for part, key in entry["parts"].items()}
            try:
                tensors[name] = _CODECS[kind].decode(parts, entry.get("attrs", {}))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{source.path}: tensor {name!r} ({kind}): {error}") from None
            if "mask" in entry:
                masks[name] = _unpack_mask(source[entry["mask"]["key"]], entry["mask"]["shape"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{source.path}: malformed swiftprune metadata ({type(error).__name__}: {error})") from None
    dense = []
    for name, form in tensors.items():
        if isinstance(form, np.ndarray):
            dense.append(form)
            continue
        values = np.asarray(_codec_for(form).dense(form), dtype=np.float32)
        if name in masks:
            values = np.where(masks[name], values, _ZERO)
        dense.append(values)
    report = Report()
    for row in document.get("report", []):
        row = dict(row)
        row["shape"] = tuple(row.get("shape", ()))
        report.append(row)
    weights: Any = dense if container == "sequence" else dict(zip(tensors, dense))
    return CompressionResult(weights, tensors, masks, report, container)


from . import _methods  # noqa: E402,F401  (registers the built-in operations and codecs)
