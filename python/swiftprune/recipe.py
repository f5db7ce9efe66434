"""Recipes: the stages of a compression, validated.

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
    error, so a typo does not silently compress nothing. ``*`` matches any
    run of characters, dots included (``fnmatch``, case-sensitive), as
    ``"*.weight"`` on nested names needs: so ``encoder.layer.*.output.dense.weight``
    also selects ``encoder.layer.0.attention.output.dense.weight``; say
    what you leave out with ``exclude`` (``"*.attention.*"``).
``exclude``
    Glob pattern(s) of tensors to leave alone.
``bias_correction``
    ``true`` on a ``quantize`` stage: each quantized layer's bias becomes
    ``b + (W − Ŵ) E[x]`` (``W`` the weight before the stages, ``Ŵ`` after,
    ``E[x]`` the mean calibration input; a conv's over its im2col view), so
    the layer's mean output does not move. Needs ``calibration=``; the bias
    is found in the model graph (a layer's bias, or the ``Add`` after an ONNX
    ``MatMul``) or, for weights alone, as the tensor named like the weight
    with ``bias`` for ``weight``/``kernel``. A layer without a bias keeps its
    quantization, uncorrected, with a warning.
``rotate_input``
    ``hadamard`` on a ``quantize: gptq`` stage: each selected 2-D weight
    reads its inputs rotated at run time by a block-diagonal normalized
    Hadamard matrix ``R`` (QuaRot's online rotation;
    :class:`~swiftprune.online_rotation.OnlineHadamard`): GPTQ quantizes
    ``W R`` (``Rᵀ K`` for an ``(in, out)`` kernel) on the rotated inputs'
    Hessian ``Rᵀ H R``. The result lists the layers in
    ``input_rotations``; the deployed model needs the op before them
    (:func:`swiftprune.export.onnx.to_onnx` inserts it), while ``.weights``
    holds the equivalent unrotated dense weights ``Q(W R) Rᵀ``.
``rotate_block_size``
    With ``rotate_input``: the Hadamard block (``2^k`` or ``12 · 2^k``,
    dividing every selected layer's input width); default the largest power
    of two dividing each width (3072 → 1024).
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
teaches the report and the ``.safetensors`` format a new compressed type
(both in :mod:`swiftprune.registry`).
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import _validation
from .registry import _DEFAULT_METHOD, _METHODS, _REQUIRED, STAGES, Method, OptionError, available_methods

__all__ = ["Stage", "load_recipe", "check_patterns"]

_STAGE_FIELDS = ("include", "exclude", "min_rank", "on_unfit", "bias_correction", "rotate_input", "rotate_block_size")
ROTATIONS = ("hadamard",)
ON_UNFIT = ("skip", "warn", "error")
# Deeper nesting than any recipe needs; refused before parsing (see _validation.check_nesting).
_MAX_NESTING = 64


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
    on_unfit: str = "skip"
    bias_correction: bool = False
    rotate_input: Optional[Mapping[str, Any]] = None  # {"rotation": "hadamard", "block_size": int or None}

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
    on_unfit = spec.get("on_unfit", "skip")
    if on_unfit not in ON_UNFIT:
        raise ValueError(f"{where}, field 'on_unfit': must be one of {', '.join(map(repr, ON_UNFIT))}, got {on_unfit!r}")
    bias_correction = spec.get("bias_correction", False)
    if not isinstance(bias_correction, bool):
        raise TypeError(f"{where}, field 'bias_correction': must be true or false, got {bias_correction!r}")
    if bias_correction and stage != "quantize":
        raise ValueError(f"{where}, field 'bias_correction': only quantize stages correct biases")
    if checked.get("center") and not bias_correction:
        raise ValueError(f"{where}, option 'center': GPTQ on centred inputs leaves the mean output shift to bias "
                         "correction; add bias_correction: true to the stage")
    return Stage(index, stage, method, checked, include, exclude, min_rank, "include" in spec, on_unfit,
                 bias_correction, _rotate_input(where, spec, stage, method))


def _rotate_input(where: str, spec: Mapping[str, Any], stage: str, method: Method) -> Optional[Mapping[str, Any]]:
    """The validated ``rotate_input`` / ``rotate_block_size`` fields (None without rotation)."""
    rotation = spec.get("rotate_input")
    if rotation is None:
        if spec.get("rotate_block_size") is not None:
            raise ValueError(f"{where}, field 'rotate_block_size': only with rotate_input: hadamard")
        return None
    if rotation not in ROTATIONS:
        raise ValueError(f"{where}, field 'rotate_input': must be one of {', '.join(map(repr, ROTATIONS))}, "
                         f"got {rotation!r}")
    if stage != "quantize" or method.name != "gptq":
        raise ValueError(f"{where}, field 'rotate_input': only quantize stages with method gptq rotate inputs "
                         f"(the calibration gives the layer's layout and the Hessian to rotate), got {stage} method "
                         f"{method.name!r}")
    block = spec.get("rotate_block_size")
    if block is not None:
        from .online_rotation import hadamard_size

        try:
            block = _validation.check_int("rotate_block_size", block, minimum=1)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{where}, field 'rotate_block_size': {error}") from None
        if not hadamard_size(block):
            raise ValueError(f"{where}, field 'rotate_block_size': must be a power of two or 12 times one "
                             f"(a Hadamard size), got {block}")
    return {"rotation": rotation, "block_size": block}


def load_recipe(recipe: Any) -> list[Stage]:
    """Validates a recipe: a list of stage mappings, or the path of a YAML
    (``.yaml``/``.yml``, needs PyYAML) or JSON file holding that list.

    Errors name the stage (0-based) and the field, e.g. ``recipe stage 1
    (prune), field 'sparsity': sparsity must be in [0, 1], got 1.5``.
    """
    if isinstance(recipe, (str, os.PathLike)):
        path = os.fspath(recipe)
        from .io import require_regular_file  # a FIFO would block the open below

        require_regular_file(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # Parsers recurse per nesting level: refuse hostile depth before parsing.
        _validation.check_nesting(text, _MAX_NESTING, f"recipe file {path}")
        if path.lower().endswith(".json"):
            try:
                recipe = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as error:
                raise ValueError(f"recipe file {path}: invalid JSON: {error}") from None
        else:
            try:
                import yaml
            except ImportError:
                raise ImportError("YAML recipes need PyYAML: pip install pyyaml (or write the recipe as JSON)") from None
            try:
                recipe = yaml.safe_load(text)
            except (yaml.YAMLError, RecursionError) as error:
                raise ValueError(f"recipe file {path}: invalid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(recipe, list):
            raise ValueError(f"recipe file {path} must hold a list of stages, got {type(recipe).__name__}")
    if isinstance(recipe, Mapping) or not isinstance(recipe, Sequence) or isinstance(recipe, (str, bytes)):
        raise TypeError(f"recipe must be a list of stages or a path to a YAML/JSON file, got {type(recipe).__name__}")
    if not recipe:
        raise ValueError("recipe is empty: give at least one stage")
    return [_parse_stage(i, spec) for i, spec in enumerate(recipe)]


def check_patterns(stages: Sequence[Stage], names: Sequence[str]) -> None:
    for stage in stages:
        if not stage.include_given:
            continue
        for pattern in stage.include:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise ValueError(f"{stage.where}, field 'include': pattern {pattern!r} matches no tensor")


