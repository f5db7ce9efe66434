"""The registries a recipe draws on: operation variants (:class:`Method`) and
compressed types (:class:`Codec`).

Both ``recipe``/``pipeline`` (which look methods up) and ``_methods`` (which
registers the built-in ones) import this module, and it imports neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["STAGES", "REQUIRED", "Method", "Codec", "OptionError", "Fallback", "register_method", "register_codec",
           "available_methods", "codec_for"]

STAGES = ("prune", "quantize", "cluster", "low_rank")
_REQUIRED = object()
REQUIRED = _REQUIRED  # the default of a mandatory option in Method.options


@dataclass(frozen=True)
class Codec:
    """How the report and the ``.safetensors`` format handle one compressed type.

    ``encode(obj)`` returns ``(parts, attrs)``: named arrays to store and
    JSON-able attributes; ``decode(parts, attrs)`` rebuilds the object;
    ``dense(obj)`` gives the float32 weights; ``nbytes(obj)`` the stored size.
    """

    kind: str
    type: type | tuple[type, ...]
    dense: Callable[[Any], np.ndarray]
    nbytes: Callable[[Any], int]
    encode: Callable[[Any], tuple[dict[str, np.ndarray], dict[str, Any]]]
    decode: Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Any]


_CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    """Registers (or replaces) the codec for ``codec.type`` under ``codec.kind``."""
    _CODECS[codec.kind] = codec




def codec_for(obj: Any) -> Codec:
    """The registered codec whose type ``obj`` is an instance of."""
    for codec in _CODECS.values():
        if isinstance(obj, codec.type):
            return codec
    raise TypeError(f"no codec is registered for compressed objects of type {type(obj).__name__}")


class OptionError(ValueError):
    """Raised by a :attr:`Method.check` for a bad combination of options;
    ``field`` is the option the message is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Fallback:
    """What a method returns when it cannot do its own job on one tensor but
    has a plainer result (GPTQ with too few calibration samples: round to
    nearest): ``output`` is used, ``reason`` is warned, and the report's
    stage reads ``quantize.gptq(fallback <method>)``."""

    output: Any
    method: str
    reason: str


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
    tensor is an error. ``fits(shape, options)``, when given, returns why the
    method cannot apply to a tensor of that shape (e.g. an N:M axis that m
    does not divide), or ``None``; such a tensor follows the stage's
    ``on_unfit`` policy instead of failing the whole run.
    ``input_scales(layers, options)``, when given (a calibrated ``quantize``
    method such as AWQ or SmoothQuant): returns ``(s, note)``, one scale per
    input channel shared by the layers reading one tensor
    (:class:`~swiftprune.activation_folding.ScaledLayer`); before the stages
    run, those layers' weights are multiplied by ``s`` and ``1/s`` is folded
    into the op before them (see :mod:`swiftprune.activation_folding`), so
    ``apply`` receives the scaled weight; layers with no op to fold into
    follow the stage's ``on_unfit`` policy.
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
    fits: Callable[[tuple[int, ...], Mapping[str, Any]], str | None] | None = None
    calibrated: bool = False
    input_scales: Callable[[Any, Mapping[str, Any]], tuple[np.ndarray, str]] | None = None


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

