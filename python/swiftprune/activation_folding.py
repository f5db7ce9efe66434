"""AWQ and SmoothQuant in recipes: per-channel scales searched on calibration
statistics and folded into the op before each layer, so the float model's
function is unchanged and only the quantization sees the scaled weights.

For each recipe stage whose method scales inputs (``quantize: awq``,
``quantize: smoothquant``), before any stage runs:

1. the model graph (from the calibration source: an ONNX or Keras model)
   gives the fold sites (:mod:`swiftprune.graph.scale_folding`): the layers
   reading one tensor and the op before it that absorbs ``1/s``; layers with
   no site are left to the stage's ``on_unfit`` policy with the reason;
2. one scale per input channel is computed for all layers of a site together
   (the method's ``input_scales``: AWQ's grid search of ``mean|x|^α`` on the
   summed output error of all of them, or SmoothQuant's ``max|x|^α /
   max|W|^(1−α)`` over all of them);
3. the layers' weights are multiplied by ``s`` along their input channels and
   the producer's parameters divided by it (``FoldOutcome.arrays``); the
   stage then quantizes the scaled weights, and calibrated stages see the
   statistics of the scaled inputs ``x / s``.

With the stage option ``insert_scale: true`` a layer whose input no op can
absorb ``1/s`` (post-LN transformers: the LayerNorm output also feeds the
residual ``Add``; a GELU or a reshape before the layer) gets an explicit
``Mul`` by ``1/s`` on its input edge instead (:class:`InsertedScale`, ONNX
MatMul/Gemm consumers only): ``CompressionResult.inserted_scales`` lists
them, :func:`swiftprune.export.onnx.to_onnx` writes them, and
``CompressionResult.weights`` holds those layers' effective weights
``Q(W·s)·diag(1/s)`` so the dense weights alone stay a correct model.

Sequential calibration sources are told the folded tensors (so later
captures run through the folded model); the folded tensors are part of the
compression result, so writing it into the model file
(:func:`swiftprune.export.onnx.to_onnx`, :func:`swiftprune.export.keras.to_keras`,
or ``swiftprune compress model.onnx -o out.onnx``) writes the adjusted
producers with the quantized weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .activation_scaling import output_error
from .calibration.arrays import LayerView
from .calibration.hessian import HessianAccumulator
from .quantization import quantize

__all__ = ["ScaledLayer", "InsertedScale", "FoldOutcome", "fold", "fold_inputs", "awq_input_scales", "smoothquant_input_scales",
           "scaled_statistics"]


@dataclass
class ScaledLayer:
    """One layer of a fold site as the scale searches see it: its ``(out, in)``
    matrix, its input statistics, and the input channel of every feature
    (a conv's im2col features map several to one channel)."""

    name: str
    view: LayerView
    matrix: np.ndarray
    channel: np.ndarray
    channels: int

    def feature_scale(self, s: np.ndarray) -> np.ndarray:
        return s[self.channel]

    def mean_abs(self) -> np.ndarray:
        """``mean |x_c|`` per input channel (over samples, and kernel positions of a conv)."""
        stats = self.view.statistics
        per_channel = np.bincount(self.channel, minlength=self.channels).astype(np.float64)
        total = np.bincount(self.channel, weights=stats.abs_sum_, minlength=self.channels)
        return total / np.maximum(per_channel * max(stats.count_, 1), 1.0)

    def abs_max(self) -> np.ndarray:
        """``max |x_c|`` per input channel."""
        out = np.zeros(self.channels)
        np.maximum.at(out, self.channel, self.view.statistics.abs_max_)
        return out

    def weight_max(self) -> np.ndarray:
        """``max |W_:c|`` per input channel."""
        out = np.zeros(self.channels)
        if self.matrix.shape[0]:
            np.maximum.at(out, self.channel, np.abs(self.matrix).max(axis=0).astype(np.float64))
        return out


def awq_input_scales(layers: Sequence[ScaledLayer], options: Mapping[str, Any]) -> Tuple[np.ndarray, str]:
    """AWQ's search (llm-awq ``auto_scale``) for one scale shared by ``layers``.

    ``s = mean|x|^α`` (clamped to >= 1e-4, divided by ``sqrt(max s · min s)``)
    for ``α = k / n_grid``; the ``α`` kept gives the least summed output error
    ``Σ_layers ‖(Q(W·s)/s − W) Xᵀ‖²`` (exact, from each layer's Hessian), with
    the stage's quantizer (``bits``, ``group_size``, ``symmetric``; groups
    along the input features, as the stage quantizes). For one Dense layer
    this is :func:`swiftprune.awq`'s search.
    """
    mean_abs = layers[0].mean_abs()
    best: Optional[Tuple[float, float, np.ndarray]] = None
    for k in range(options["n_grid"]):
        alpha = k / options["n_grid"]
        s = np.maximum(mean_abs ** alpha, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        error = 0.0
        for layer in layers:
            f = layer.feature_scale(s)
            q = quantize((layer.matrix * f[None, :]).astype(np.float32), options["bits"],
                         symmetric=options["symmetric"], axis=0, group_size=options["group_size"])
            error += output_error(q.dequantize() / f[None, :] - layer.matrix, layer.view.statistics.hessian_)
        if best is None or error < best[0]:
            best = (error, alpha, s)
    assert best is not None
    return best[2], f"alpha={best[1]:g}"


def smoothquant_input_scales(layers: Sequence[ScaledLayer], options: Mapping[str, Any]) -> Tuple[np.ndarray, str]:
    """SmoothQuant's factors for one scale shared by ``layers``:
    ``s_c = max|x_c|^α / max|W_:c|^(1−α)``, the weight maximum over all of
    them (``s_c = 1`` where either is 0), as :func:`swiftprune.smoothquant`."""
    alpha = options["alpha"]
    act = np.max([layer.abs_max() for layer in layers], axis=0)
    weight = np.max([layer.weight_max() for layer in layers], axis=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = act ** alpha / weight ** (1 - alpha)
    s = np.where((act > 0) & (weight > 0) & np.isfinite(s), np.maximum(s, 1e-5), 1.0)
    return s, f"alpha={alpha:g}"


def scaled_statistics(acc: HessianAccumulator, inverse: np.ndarray) -> HessianAccumulator:
    """The statistics of the inputs ``x · inverse`` (per feature), from those of ``x``."""
    out = HessianAccumulator(acc.features, name=acc.name, layout=acc.layout)
    inv = np.asarray(inverse, np.float64)
    out._hessian[...] = acc.hessian_ * inv[:, None] * inv[None, :]
    out.count_ = acc.count_
    out.sum_[...] = acc.sum_ * inv
    out.abs_sum_[...] = acc.abs_sum_ * inv
    out.abs_max_[...] = acc.abs_max_ * inv
    return out


@dataclass(frozen=True)
class InsertedScale:
    """A ``Mul`` by ``inverse`` (``1/s``, float32, one value per channel of the
    last axis) to insert on the edges from ``tensor`` into the layers whose
    weights are ``consumers`` (only those: other readers of ``tensor``, such
    as a residual ``Add``, keep the unscaled values)."""

    tensor: str
    consumers: Tuple[str, ...]
    inverse: np.ndarray


@dataclass
class FoldOutcome:
    """What the fold pass of a recipe did.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        Every tensor the folding changed: scaled layer weights and the
        producers' adjusted parameters (the model with them computes the
        same function as the original).
    scales : dict of str to numpy.ndarray
        Per scaled layer weight, ``s`` per feature of its ``(out, in)`` matrix.
    skipped : dict of int to dict of str to str
        Per stage index, the layers it could not scale and why.
    notes : dict of str to str
        Per layer weight, what happened (``"scaled into LayerNormalization 'ln'
        (alpha=0.35)"`` or ``"not scaled: <reason>"``).
    rescale_statistics : bool
        Whether calibrated stages must rescale the statistics of scaled layers
        (a source that is not re-captured through the folded model).
    inserted : list of InsertedScale
        The ``Mul`` ops to insert (stage option ``insert_scale``).
    unfolded : dict of str to (int, numpy.ndarray)
        Per layer weight behind an inserted ``Mul``: its input-channel axis
        and ``1/s`` along it (:meth:`model_weight` multiplies by it).
    """

    arrays: Dict[str, np.ndarray] = field(default_factory=dict)
    scales: Dict[str, np.ndarray] = field(default_factory=dict)
    skipped: Dict[int, Dict[str, str]] = field(default_factory=dict)
    notes: Dict[str, str] = field(default_factory=dict)
    rescale_statistics: bool = True
    inserted: list = field(default_factory=list)
    unfolded: Dict[str, Tuple[int, np.ndarray]] = field(default_factory=dict)
    _views: Dict[str, HessianAccumulator] = field(default_factory=dict)

    def wrap(self, get: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        """``get`` returning the folded arrays for the tensors the folding changed."""
        def folded(name: str) -> np.ndarray:
            return self.arrays[name] if name in self.arrays else get(name)
        return folded

    def view(self, view: Optional[LayerView], tensor: str) -> Optional[LayerView]:
        """``view`` with the statistics of the scaled inputs, for a scaled layer."""
        if view is None or tensor not in self.scales or not (self.rescale_statistics or tensor in self.unfolded):
            return view
        if tensor not in self._views:
            self._views[tensor] = scaled_statistics(view.statistics, 1.0 / self.scales[tensor])
        return LayerView(view.name, self._views[tensor], view.layout, view.shape)

    def model_weight(self, name: str, dense: np.ndarray) -> np.ndarray:
        """The weight the unchanged model graph must hold to compute what the
        scaled layer computes: ``dense`` (of ``W·s``) times ``1/s`` along its
        input channels for a layer behind an inserted ``Mul``, else ``dense``."""
        if name not in self.unfolded:
            return dense
        axis, inverse = self.unfolded[name]
        return _scale_along(dense, axis, inverse)


def _channel_map(view: LayerView, shape: Tuple[int, ...], axis: int) -> np.ndarray:
    """The input channel of every column of the weight's ``(out, in)`` matrix."""
    index = np.arange(shape[axis], dtype=np.int64).reshape([-1 if d == axis % len(shape) else 1
                                                            for d in range(len(shape))])
    return view.to_matrix(np.broadcast_to(index, shape))[0].astype(np.int64)


def _scale_along(array: np.ndarray, axis: int, factor: np.ndarray) -> np.ndarray:
    shape = [1] * array.ndim
    shape[axis] = -1
    return (array.astype(np.float64) * factor.reshape(shape)).astype(array.dtype)


def fold_inputs(stages: Sequence[Any], selected: Mapping[int, set], names: Sequence[str],
                get: Callable[[str], np.ndarray], calibration: Any) -> FoldOutcome:
    """Runs the fold pass of every stage whose method has ``input_scales``.

    Raises
    ------
    ValueError
        A scaling stage without a calibration source that carries the model
        graph (arrays or a weights-only file): the message says what to pass.
    """
    outcome = FoldOutcome()
    scaling = [s for s in stages if s.method.input_scales is not None and selected[s.index]]
    if not scaling:
        return outcome
    graph = calibration.graph() if calibration is not None and hasattr(calibration, "graph") else None
    if graph is None:
        stage = scaling[0]
        raise ValueError(
            f"{stage.where}: {stage.label} scales each layer's input channels and folds the inverse scale into "
            "the op before it, so it needs the model graph: calibrate with swiftprune.calibration.from_onnx(model, "
            "inputs) or from_keras(model, inputs) (CLI: give the .onnx/.keras model as IN or --model). For weights "
            "without a graph, swiftprune.awq(w, x) / swiftprune.smoothquant(w, x) return the scale the preceding "
            "op must absorb")
    from .calibration.model_source import ModelCalibration
    from .graph.scale_folding import find_fold_sites

    sequential = isinstance(calibration, ModelCalibration) and calibration.mode == "sequential"
    outcome.rescale_statistics = not sequential
    current: Dict[str, np.ndarray] = {}

    def array(name: str) -> np.ndarray:
        return current[name] if name in current else np.asarray(get(name))

    for stage in scaling:
        candidates = [n for n in names if n in selected[stage.index] and calibration.find_layer(n) is not None]
        sites, reasons = find_fold_sites(graph, candidates, names, insert=bool(stage.options.get("insert_scale")))
        skipped = outcome.skipped.setdefault(stage.index, {})
        for name, reason in reasons.items():
            skipped[name] = reason
            outcome.notes[name] = f"not scaled: {reason}"
        for site in sites:
            layers = []
            for name, axis in site.consumers.items():
                w = array(name)
                try:
                    view = calibration.lookup(name, w.shape)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"{stage.where} on tensor {name!r}: {error}") from None
                view.statistics.check(warn=stage.method.name == "awq")  # only AWQ's search uses xᵀx
                layers.append(ScaledLayer(name, view, view.to_matrix(np.asarray(w, np.float32)),
                                          _channel_map(view, tuple(w.shape), axis), site.channels))
            try:
                s, note = stage.method.input_scales(layers, stage.options)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{stage.where} on the layers reading {site.tensor!r}: {error}") from None
            s = np.asarray(s, np.float64)
            for layer, (name, axis) in zip(layers, site.consumers.items()):
                current[name] = _scale_along(array(name), axis, s)
                outcome.scales[name] = layer.feature_scale(s)
                outcome.notes[name] = f"scaled; 1/s folded into {site.producer} ({note})" if not site.inserted \
                    else f"scaled; 1/s in {site.producer} ({note})"
                if site.inserted:
                    outcome.unfolded[name] = (axis, (1.0 / s).astype(np.float64))
            if site.inserted:
                outcome.inserted.append(InsertedScale(site.tensor, tuple(site.consumers),
                                                      (1.0 / s).astype(np.float32)))
            for adjustment in site.adjustments:
                current[adjustment.tensor] = _scale_along(array(adjustment.tensor), adjustment.axis,
                                                          s ** adjustment.power)
    outcome.arrays = current
    if sequential:
        # Later captures run through the folded model; a layer behind an inserted Mul keeps its
        # unscaled weight in the capture model (which has no Mul) and sees rescaled statistics
        # (its output columns may still have absorbed another site's 1/s: a value projection).
        for name, value in current.items():
            calibration.commit(name, outcome.model_weight(name, value))
        calibration.invalidate([calibration.find_layer(n) for n in outcome.scales if n not in outcome.unfolded])
    return outcome


def fold(weights: Mapping[str, Any], recipe: Any, calibration: Any) -> FoldOutcome:
    """Only the fold pass of a recipe's AWQ / SmoothQuant stages: the float
    weights with the scales folded in (no quantization).

    ``{**weights, **fold(weights, recipe, calibration).arrays}`` computes the
    same function as ``weights`` (to float rounding; with ``insert_scale``,
    once the ``.inserted`` Muls are in the graph: ``to_onnx(model, path,
    outcome.arrays, inserted_scales=outcome.inserted)``); this is what
    ``compress()`` quantizes. Useful to check a fold, or to hand a smoothed
    float model to a runtime that quantizes activations itself.

    Parameters
    ----------
    weights : mapping of str to array_like
        The model's weights by name (``calibration.weights()``).
    recipe : list of stages or a YAML/JSON path
        Stages other than ``awq`` / ``smoothquant`` are ignored.
    calibration : Calibration
        A model source (:func:`~swiftprune.calibration.from_onnx`,
        :func:`~swiftprune.calibration.from_keras`).

    Returns
    -------
    FoldOutcome
    """
    from .model import _calibration_source
    from .recipe import check_patterns, load_recipe

    stages = load_recipe(recipe)
    names = list(weights)
    check_patterns(stages, names)
    calibration = _calibration_source(calibration)
    selected = {stage.index: {n for n in names if stage.selects(n, np.shape(weights[n]), np.asarray(weights[n]).dtype)}
                for stage in stages}
    if calibration is not None:
        calibration.begin()
    return fold_inputs(stages, selected, names, lambda name: np.asarray(weights[name]), calibration)
