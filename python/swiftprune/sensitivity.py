"""Per-tensor sensitivity: what each candidate encoding costs and how much it hurts.

For every planned tensor (floating, rank ≥ ``min_rank``) and every candidate
that applies to it, the tensor alone is compressed by ``compress()`` with the
candidate's stages, exactly as the final recipe will; its cost is the
codec's stored size (``bytes_after`` of the report row, the same number the
written file holds) and its damage is one of

``"weight"``   relative squared error ``‖W − Ŵ‖² / ‖W‖²`` (no data needed);
``"hessian"``  ``Σ h_j (W − Ŵ)²_ij / Σ h_j W²_ij`` with ``h = diag(xᵀx)`` of
               the layer's calibration inputs (Optimal-Brain-style saliency;
               tensors without inputs fall back to ``"weight"``);
``"output"``   relative squared layer-output error ``‖x(W − Ŵ)‖² / ‖xW‖²``
               (tensors without inputs fall back to ``"weight"``, a depthwise
               kernel given per-channel inputs instead of patches to ``"hessian"``);
``"evaluate"`` ``score(original) − score(one tensor replaced)`` from the user's
               ``evaluate(weights) -> float`` (higher is better), one tensor
               changed at a time, each (tensor, candidate) evaluated once.

Damages are summed over tensors by the planner (the usual additive
approximation of layer-wise sensitivity, as in HAWQ / Intel Neural
Compressor's per-op tuning).

Calibration inputs are ``{tensor name: x}`` with ``x`` of shape
``(samples, features)``: for a dense kernel ``features`` is its input size;
for a conv kernel either its input channels (``"hessian"`` only; the
diagonal is shared by all kernel positions) or the input-channel×kernel
patch size in the weight's own flattening order (Keras ``(kh, kw, in)``,
PyTorch ``(in, kh, kw)``). Or a :class:`~swiftprune.calibration.Calibration`
(``from_arrays``, ``from_onnx``, ``from_keras``, ``from_torch``): its
per-layer ``xᵀx`` gives ``"hessian"`` (the diagonal) and ``"output"``
(``tr(ΔW xᵀx ΔWᵀ)``, exact), and it is what calibrated candidates
(``gptq4``, ``gptq3:g32``) are quantized with — each tensor alone, through
the original model's inputs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from ._callable_module import make_callable
from ._progress import progress as _progress
from .candidates import Candidate, default_candidates, exact_pattern, parse_candidate

__all__ = ["sensitivity", "Sensitivity", "Option"]

_MEASURES = ("weight", "hessian", "output", "evaluate")


@dataclass(frozen=True)
class Option:
    """One candidate on one tensor: the recipe ``stages`` (no ``include``),
    the stored ``bytes`` and the ``damage``."""

    candidate: str
    stages: tuple
    bytes: int
    damage: float


@dataclass
class Sensitivity:
    """What :func:`sensitivity` measured.

    Attributes
    ----------
    options : dict of str to list of Option
        Per planned tensor (in model order), the candidates that apply to it.
    fixed_bytes : dict of str to int
        Tensors the planner leaves alone (1-D, integer, below ``min_rank``),
        with their stored size.
    measure : str
        The damage measure used.
    layout : str
        ``"keras"`` or ``"torch"``.
    container : str
        ``"mapping"`` or ``"sequence"`` (how the weights came in).
    seconds : float
        Time the measurement took.
    calibration : Calibration or None
        The calibration source calibrated candidates were measured with (the
        planner compresses with it too).
    """

    options: dict[str, list[Option]]
    fixed_bytes: dict[str, int]
    measure: str
    layout: str
    container: str = "mapping"
    seconds: float = 0.0
    base_score: Optional[float] = None
    original_bytes: int = 0
    calibration: Any = field(default=None, repr=False, compare=False)

    def table(self) -> str:
        """A text table: one line per tensor and candidate (bytes, damage)."""
        lines = [f"{'tensor':30s} {'candidate':18s} {'bytes':>12s} {'damage':>12s}"]
        for name, options in self.options.items():
            for option in options:
                lines.append(f"{name[:30]:30s} {option.candidate:18s} {option.bytes:12,d} {option.damage:12.4g}")
        return "\n".join(lines)


def _named(weights: Any) -> tuple[str, dict[str, np.ndarray]]:
    from .io import SafetensorsFile

    if isinstance(weights, SafetensorsFile):
        return "mapping", {name: weights[name] for name in weights.names}
    if isinstance(weights, Mapping):
        return "mapping", {str(k): np.asarray(v) for k, v in weights.items()}
    if isinstance(weights, (list, tuple)):
        return "sequence", {str(i): np.asarray(v) for i, v in enumerate(weights)}
    raise TypeError("weights must be a mapping name -> array or a list of arrays, "
                    f"got {type(weights).__name__}")


def _as_container(container: str, arrays: Mapping[str, np.ndarray]) -> Any:
    return list(arrays.values()) if container == "sequence" else dict(arrays)


def planned_tensors(arrays: Mapping[str, np.ndarray], min_rank: int) -> list[str]:
    """Names of the floating tensors of rank ≥ ``min_rank`` (the ones the planner chooses for)."""
    return [name for name, a in arrays.items() if a.dtype.kind == "f" and a.ndim >= min_rank and a.size > 0]


def _depthwise(w: np.ndarray, layout: str) -> bool:
    """A Keras depthwise kernel ``(kh, kw, channels, 1)``: its channels are its
    outputs and each sees only its own input channel."""
    from .candidates import channel_axis

    return layout == "keras" and w.ndim == 4 and channel_axis(w.shape, layout) == 2


def _check_inputs(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ValueError(f"calibration inputs of {name!r} must be a float (samples, features) array, got "
                         f"{x.dtype} {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"calibration inputs of {name!r} contain NaN or Inf")
    return x


def _hessian_weights(name: str, w: np.ndarray, x: Any, layout: str) -> np.ndarray:
    """``diag(xᵀx)`` as weights broadcastable to the ``(K, out)`` matrix view."""
    from .candidates import channel_axis

    x = _check_inputs(name, x)
    axis = channel_axis(w.shape, layout)
    k = w.size // w.shape[axis]
    h = np.einsum("si,si->i", x, x, dtype=np.float64)
    if _depthwise(w, layout):
        channels = w.shape[2]
        if h.size == channels:  # per input channel, shared by the kernel positions
            return h[None, :]
        if h.size == k * channels:  # patches in (kh, kw, channels) order
            return h.reshape(k, channels)
        raise ValueError(f"calibration inputs of depthwise kernel {name!r} must have {channels} (channels) or "
                         f"{k * channels} (kh x kw x channels patch) features, got {h.size}")
    if layout == "torch" and w.ndim > 2 and w.shape[1] == 1 and h.size == w.shape[0] and h.size != k:
        return h[None, :]  # a PyTorch depthwise (channels, 1, kh, kw) kernel: per-channel inputs
    if h.size == k:
        return h[:, None]
    if w.ndim > 2 and axis in (0, w.ndim - 1):
        inputs = w.shape[1] if layout == "torch" else w.shape[-2]
        if h.size == inputs:
            spatial = k // inputs
            return (np.repeat(h, spatial) if layout == "torch" else np.tile(h, spatial))[:, None]
    raise ValueError(f"calibration inputs of {name!r} have {h.size} features; its weight of shape {w.shape} "
                     f"takes {k} (input-channel x kernel) inputs")


def _output_energy(name: str, w2: np.ndarray, x: Any, depthwise: bool) -> float:
    """``‖x w2‖²`` for the layer's inputs (a depthwise layer: per channel)."""
    from .linalg import matmul

    x = _check_inputs(name, x).astype(np.float32, copy=False)
    if depthwise:
        k, channels = w2.shape
        if x.shape[1] != k * channels:
            raise ValueError(f"calibration inputs of depthwise kernel {name!r} must be (samples, {k * channels}) "
                             f"patches for measure='output', got {x.shape}")
        y = np.einsum("skc,kc->sc", x.reshape(-1, k, channels), w2, dtype=np.float64)
        return float(np.einsum("sc,sc->", y, y))
    if x.shape[1] != w2.shape[0]:
        raise ValueError(f"calibration inputs of {name!r} must have shape (samples, {w2.shape[0]}), got {x.shape}")
    y = matmul(np.ascontiguousarray(x), np.ascontiguousarray(w2))
    return float(np.einsum("so,so->", y, y, dtype=np.float64))


def _natural(w: np.ndarray, layout: str) -> np.ndarray:
    """The weight as a 2-D view without copying: PyTorch ``(out, K)``, Keras ``(K, out)``."""
    from .candidates import channel_axis

    if layout == "torch":
        return w.reshape(w.shape[0], -1)
    return w.reshape(-1, w.shape[channel_axis(w.shape, layout)])


def _weighted_squares(m: np.ndarray, h: np.ndarray) -> float:
    """``Σ h ⊙ m²`` for ``h`` broadcastable to ``m`` (a row or column of
    weights reduces the squares along the other axis first, in float64)."""
    squares = np.square(m, dtype=np.float32)
    if h.shape[0] == 1 and m.shape[0] != 1:
        return float(np.dot(squares.sum(axis=0, dtype=np.float64), h[0]))
    if h.shape[1] == 1 and m.shape[1] != 1:
        return float(np.dot(squares.sum(axis=1, dtype=np.float64), h[:, 0]))
    return float(np.sum(squares * h, dtype=np.float64))


def _matrix(w: np.ndarray, layout: str) -> np.ndarray:
    """The weight as ``(K, out)``: rows = inputs, columns = output channels."""
    from .candidates import channel_axis

    axis = channel_axis(w.shape, layout)
    moved = np.moveaxis(w, axis, -1)
    return moved.reshape(-1, w.shape[axis])


def sensitivity(weights: Any, candidates: Optional[Iterable[Any]] = None, *, measure: Optional[str] = None,
                calibration: Optional[Mapping[str, Any]] = None,
                evaluate: Optional[Callable[[Any], float]] = None, layout: str = "keras", min_rank: int = 2,
                include: Optional[Sequence[str]] = None, progress: bool = True) -> Sensitivity:
    """Bytes and damage of every candidate encoding on every planned tensor.

    Parameters
    ----------
    weights : mapping of str to array_like, or list of array_like
        The model (a ``state_dict`` as NumPy, ``load_weights(path)``, Keras
        ``get_weights()``). Never modified.
    candidates : iterable of str or Candidate, optional
        Spellings such as ``"int4:g32"``, ``"pal16"`` (see
        :mod:`swiftprune.candidates`); default :func:`default_candidates`.
        ``"float32"`` (keep) is always added.
    measure : {"weight", "hessian", "output", "evaluate"}, optional
        Default: ``"evaluate"`` when ``evaluate`` is given, ``"hessian"`` when
        ``calibration`` arrays are, ``"output"`` when a ``Calibration`` is
        (its ``xᵀx`` gives the exact layer-output error, the error GPTQ
        minimizes), else ``"weight"``. See the module docstring.
    calibration : mapping of str to array_like, or Calibration, optional
        Layer inputs ``{tensor name: (samples, features)}``, or a
        :class:`~swiftprune.calibration.Calibration` (needed by calibrated
        candidates such as ``"gptq4"``; see the module docstring).
    evaluate : callable, optional
        ``evaluate(weights) -> float``, higher is better; receives the same
        container kind as ``weights`` with one tensor replaced by its
        compressed (dense float32) version.
    layout : {"keras", "torch"} or mapping of str to it
        Where the output channel sits (see :mod:`swiftprune.candidates`); a
        mapping gives it per tensor name (key ``"*"``: the default), e.g. for
        an ONNX model whose Conv weights are ``(out, in, kh, kw)`` and whose
        MatMul weights are ``(in, out)``.
    min_rank : int, default 2
        Smaller tensors (biases, norms) are not planned; they stay as they are.
    include : sequence of str, optional
        Plan only these tensor names (others stay as they are).
    progress : bool, default True
        A progress bar with a time estimate (tqdm) over the measurements.

    Returns
    -------
    Sensitivity

    Raises
    ------
    TypeError, ValueError
        Bad containers, unknown candidates or measure, calibration inputs of
        the wrong shape or for unknown tensors, ``evaluate`` missing for
        ``measure="evaluate"`` or returning a non-finite score.
    """
    from .model import compress

    started = time.perf_counter()
    container, arrays = _named(weights)
    cands = [parse_candidate(c) for c in (default_candidates() if candidates is None else candidates)]
    if not any(c.kind == "keep" for c in cands):
        cands.insert(0, Candidate("keep"))
    seen: set[str] = set()
    cands = [c for c in cands if not (c.name in seen or seen.add(c.name))]
    if measure is None:  # a Calibration holds the whole x^T x: the exact layer-output error
        measure = "evaluate" if evaluate is not None else "weight" if not calibration else \
            "hessian" if isinstance(calibration, Mapping) else "output"
    if measure not in _MEASURES:
        raise ValueError(f"measure must be one of {', '.join(_MEASURES)}, got {measure!r}")
    if measure == "evaluate" and evaluate is None:
        raise ValueError("measure='evaluate' needs an evaluate(weights) -> score callable")
    if measure in ("hessian", "output") and not calibration:
        raise ValueError(f"measure={measure!r} needs calibration inputs {{tensor name: (samples, features)}}")
    source = _calibration_source(calibration)
    if any(c.calibrated for c in cands) and source is None:
        raise ValueError(f"candidate {next(c.name for c in cands if c.calibrated)!r} needs calibration=a "
                         "swiftprune.calibration source (from_arrays, from_onnx, from_keras, from_torch)")
    calibration = {} if source is not None else dict(calibration or {})
    unknown = [name for name in calibration if name not in arrays]
    if unknown:
        raise ValueError(f"calibration inputs given for unknown tensor {unknown[0]!r}")
    layout_of = _layouts(layout, arrays)
    names = planned_tensors(arrays, min_rank)
    if include is not None:
        missing = [n for n in include if n not in arrays]
        if missing:
            raise ValueError(f"include names unknown tensor {missing[0]!r}")
        names = [n for n in names if n in set(include)]
    for name in names:
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"tensor {name!r} contains NaN or Inf values")
    fixed = {name: int(a.nbytes) for name, a in arrays.items() if name not in names}
    base_score = None
    if measure == "evaluate":
        base_score = _score(evaluate, _as_container(container, arrays), "the original weights")

    jobs = []
    for name in names:
        for cand in cands:
            stages = cand.stages_for(arrays[name].shape, layout_of(name))
            if stages is not None and not (cand.calibrated and source.find_layer(name) is None):
                jobs.append((name, cand, stages))
    frozen = None if source is None else _independent_view(source)
    options: dict[str, list[Option]] = {name: [] for name in names}
    hessians: dict[str, np.ndarray] = {}
    for name, cand, stages in _progress(jobs, total=len(jobs), description="sensitivity", enabled=progress):
        w = arrays[name]
        if not stages:
            options[name].append(Option(cand.name, (), int(w.nbytes), 0.0))
            continue
        recipe = [dict(stage, include=exact_pattern(name), min_rank=0) for stage in stages]
        try:
            result = compress({name: w}, recipe, progress=False, calibration=frozen if cand.calibrated else None)
        except ValueError:
            if cand.calibrated and cand.scale_dtype == "float32":
                raise
            continue  # the candidate cannot encode this tensor (values or scales beyond the float16 range)
        row = result.report[0]
        size = int(row["bytes_after"])
        if size >= w.nbytes:
            continue  # never a candidate that grows the tensor
        dense = result.weights[name]
        if source is not None and measure in ("hessian", "output"):
            damage = _statistics_damage(measure, name, w, dense, row, source, hessians)
        else:
            damage = _damage(measure, name, w, dense, row, calibration, hessians, layout_of(name),
                             evaluate, base_score, container, arrays)
        options[name].append(Option(cand.name, tuple(stages), size, damage))
    original = sum(int(a.nbytes) for a in arrays.values())
    return Sensitivity(options, fixed, measure, layout, container, time.perf_counter() - started, base_score,
                       original, source)


def _calibration_source(calibration: Any) -> Any:
    """A :class:`~swiftprune.calibration.Calibration` given as ``calibration``, else None (arrays)."""
    if calibration is None or isinstance(calibration, Mapping):
        return None
    from .calibration import Calibration

    if not isinstance(calibration, Calibration):
        raise TypeError("calibration must be a mapping {tensor name: (samples, features) array} or a "
                        f"swiftprune.calibration.Calibration, got {type(calibration).__name__}")
    return calibration


def _independent_class() -> type:
    from .calibration import Calibration

    class Independent(Calibration):
        """A calibration source seen through the original model only: compressing one
        tensor to measure it commits nothing (a sequential source stays untouched)."""

        def __init__(self, source: Any) -> None:
            super().__init__({})
            self.source = source

        def __contains__(self, name: object) -> bool:
            return name in self.source

        def __iter__(self):
            return iter(self.source)

        def __len__(self) -> int:
            return len(self.source)

        def statistics(self, layer: str) -> Any:
            return self.source.statistics(layer)

        def find_layer(self, tensor_name: str) -> Optional[str]:
            return self.source.find_layer(tensor_name)

        def begin(self) -> None:
            self.source.begin()  # back to the original model (an earlier compress may have committed)

    return Independent


def _independent_view(source: Any) -> Any:
    """``source`` seen through the original model only (see ``_independent_class``)."""
    return _independent_class()(source)


def _statistics_damage(measure: str, name: str, w: np.ndarray, dense: np.ndarray, row: Mapping[str, Any],
                       source: Any, cache: dict[str, Any]) -> float:
    """Damage from a calibration source's ``xᵀx`` (``H``) of the tensor's layer, on the
    ``(out, K)`` matrix ``M`` of the weight: ``"hessian"`` ``Σ diag(H)_k ΔM²_ok / Σ diag(H)_k M²_ok``,
    ``"output"`` ``tr(ΔM H ΔMᵀ) / tr(M H Mᵀ)``. Tensors the source does not know: weight error."""
    from .linalg import matmul

    source.begin()  # the original model's statistics
    view = source.lookup(name, w.shape)
    if view is None:
        return float(row["relative_error"]) ** 2
    if name not in cache:
        h = np.asarray(view.statistics.hessian_, np.float64)
        m = view.to_matrix(np.asarray(w, np.float32))
        diagonal = np.diag(h).copy()
        h32 = np.ascontiguousarray(h, dtype=np.float32)
        cache[name] = (diagonal, h32, _weighted_squares(m, diagonal[None, :]),
                       float(np.einsum("ok,ok->", matmul(m, h32), m, dtype=np.float64)))
    diagonal, h32, hessian_total, output_total = cache[name]
    delta = view.to_matrix(np.subtract(dense, w, dtype=np.float32))
    if measure == "hessian":
        error, total = _weighted_squares(delta, diagonal[None, :]), hessian_total
    else:
        error, total = float(np.einsum("ok,ok->", matmul(delta, h32), delta, dtype=np.float64)), output_total
    if total <= 0.0:
        return 0.0 if error == 0.0 else math.inf
    return error / total


def _layouts(layout: Any, arrays: Mapping[str, np.ndarray]) -> Callable[[str], str]:
    """``layout`` as a function of the tensor name (validated)."""
    if isinstance(layout, str):
        if layout not in ("keras", "torch"):
            raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
        return lambda name: layout
    if not isinstance(layout, Mapping):
        raise TypeError(f"layout must be 'keras', 'torch' or a mapping of tensor names to them, got {layout!r}")
    for key, value in layout.items():
        if value not in ("keras", "torch"):
            raise ValueError(f"layout of {key!r} must be 'keras' or 'torch', got {value!r}")
        if key != "*" and key not in arrays:
            raise ValueError(f"layout given for unknown tensor {key!r}")
    default = layout.get("*", "keras")
    return lambda name: layout.get(name, default)


def _score(evaluate: Callable[[Any], float], weights: Any, what: str) -> float:
    score = evaluate(weights)
    try:
        score = float(score)
    except (TypeError, ValueError):
        raise TypeError(f"evaluate must return a number, got {type(score).__name__} for {what}") from None
    if not math.isfinite(score):
        raise ValueError(f"evaluate returned {score} for {what}")
    return score


def _damage(measure: str, name: str, w: np.ndarray, dense: np.ndarray, row: Mapping[str, Any],
            calibration: Mapping[str, Any], hessians: dict[str, np.ndarray], layout: str,
            evaluate: Optional[Callable[[Any], float]], base_score: Optional[float], container: str,
            arrays: Mapping[str, np.ndarray]) -> float:
    if measure == "evaluate":
        trial = dict(arrays)
        trial[name] = dense
        return float(base_score - _score(evaluate, _as_container(container, trial),
                                         f"tensor {name!r} compressed"))
    if measure == "weight" or name not in calibration:
        return float(row["relative_error"]) ** 2
    depthwise = _depthwise(w, layout)
    if measure == "output" and depthwise and np.shape(calibration[name])[-1] == w.shape[2]:
        measure = "hessian"  # per-channel inputs of a depthwise kernel: no patches, so its diagonal only
    if measure == "hessian":
        if name not in hessians:
            h = _hessian_weights(name, w, calibration[name], layout)
            hessians[name] = h.T if layout == "torch" else h  # to the natural (out, K) / (K, out) view
            hessians[name + "\0total"] = np.array(_weighted_squares(_natural(w, layout), hessians[name]))
        total = float(hessians[name + "\0total"])
        difference = np.subtract(dense, w, dtype=np.float32)
        error = _weighted_squares(_natural(difference, layout), hessians[name])
    else:
        w2 = _matrix(np.asarray(w, dtype=np.float32), layout)
        if name not in hessians:
            hessians[name] = np.array(_output_energy(name, w2, calibration[name], depthwise))
        total = float(hessians[name])
        error = _output_energy(name, _matrix(dense, layout) - w2, calibration[name], depthwise)
    if total == 0.0:
        return 0.0 if error == 0.0 else math.inf
    return error / total


make_callable(__name__, sensitivity)  # ``swiftprune.sensitivity(...)`` is this function
