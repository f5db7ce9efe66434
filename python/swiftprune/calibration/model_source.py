"""What the Keras and ONNX calibration sources share: a list of capturable
layers in forward order, statistics captured on demand and cached, and the
sequential / independent modes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .arrays import Calibration
from .hessian import HessianAccumulator

__all__ = ["CapturedLayer", "ModelCalibration", "MODES"]

MODES = ("sequential", "independent")


@dataclass
class CapturedLayer:
    """A layer whose inputs can be captured: its weight tensor, the tensor
    holding its input, how that input becomes ``(samples, in)`` rows."""

    name: str  # the weight tensor's name (the key compress() looks up)
    weight: str
    # the model tensor feeding it (ONNX value, Keras "operation:node:output", torch: first layer called on
    # it); layers of one input are captured together (q/k/v: one pass for the three)
    input: str
    layout: str  # "torch" or "keras"
    features: int
    kind: str = "linear"  # or "conv2d"
    conv: Mapping[str, Any] = field(default_factory=dict)
    upstream: frozenset = frozenset()  # weights whose change alters this layer's input


class ModelCalibration(Calibration):
    """A model plus calibration inputs; statistics are captured when first
    asked for. ``"independent"``: every layer's inputs come from the original
    model, all captured in one pass. ``"sequential"``: when a tensor is
    committed (compressed), the inputs of layers downstream of it are
    captured again, through the compressed weights."""

    def __init__(self, layers: Sequence[CapturedLayer], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'sequential' or 'independent', got {mode!r}")
        super().__init__({})
        self.mode = mode
        self.layers = {layer.name: layer for layer in layers}
        self._cache: dict[str, HessianAccumulator] = {}
        self._pristine: dict[str, HessianAccumulator] = {}  # captured through the original weights
        self.committed: dict[str, np.ndarray] = {}
        # Activations a source keeps between sequential captures (ONNX, Keras: tensor -> value per batch),
        # forgotten whenever the model's weights go back or the folding changes layer inputs.
        self._kept: dict[Any, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.layers

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)

    def statistics(self, layer: str) -> HessianAccumulator:
        if layer not in self._cache:
            pending = [name for name in self.layers if name not in self._cache and name not in self.committed]
            if self.committed:
                # Sequential, after a commit: the next commit invalidates every layer downstream of it, so
                # capture only the layers fed by this layer's input tensor (q/k/v share one) — capturing all
                # pending layers here made a run over L layers accumulate O(L²) Hessians instead of O(L).
                feeding = self.layers[layer].input if layer in self.layers else None
                pending = [name for name in pending if self.layers[name].input == feeding]
            if layer not in pending:
                pending.append(layer)
            captured = self._capture([self.layers[name] for name in pending])
            self._cache.update(captured)
            if not self.committed:
                self._pristine.update(captured)
        return self._cache[layer]

    def order(self, names: Sequence[str]) -> list[str]:
        known = [name for name in self.layers if name in set(names)]
        return known + [name for name in names if name not in self.layers]

    #: How a refused commit is worded: the source, what holds the tensors, and what an unknown name lacks
    #: (each source says it in its own words; a subclass that says nothing gets these).
    _commit_words: tuple[str, str, str] = (
        "Calibration", "model", "tensor of that name (calibration.weights() gives the names compress() must use)")

    def commit(self, tensor_name: str, weights: np.ndarray) -> None:
        if self.mode != "sequential":
            return
        array = np.asarray(weights)
        self._check_commit(tensor_name, array)  # (a refused tensor raises before it counts as committed)
        self._apply_weight(tensor_name, array)
        self.committed[tensor_name] = array
        for name, layer in self.layers.items():
            if tensor_name in layer.upstream:
                self._cache.pop(name, None)

    def begin(self) -> None:
        """Restores the original weights (undoing an earlier run's commits) and
        the statistics captured through them, so every ``compress()`` run
        starts from the original model."""
        self._kept.clear()  # computed through the weights committed by the previous run
        if not self.committed:
            return
        originals = self.weights()
        for name in list(self.committed):
            if name in originals:
                self._apply_weight(name, originals[name])
        self.committed.clear()
        self._cache = dict(self._pristine)

    def invalidate(self, layers: Sequence[Optional[str]]) -> None:
        """Forgets the statistics of ``layers``: the next request captures them
        again, through the weights committed so far (the activation-scale
        folding changes a layer's inputs without compressing anything before it)."""
        self._kept.clear()
        for name in layers:
            if name is not None:
                self._cache.pop(name, None)

    def graph(self) -> Any:
        """The model's :class:`~swiftprune.graph.Graph` (read once), for the
        activation-scale folding; None when the source has none."""
        if not hasattr(self, "_graph"):
            self._graph = self._read_graph()
        return self._graph

    def _check_commit(self, name: str, array: np.ndarray) -> None:
        """Refuses a committed tensor the model does not hold, or one of another size (never skipped)."""
        if not hasattr(self, "_commit_shapes"):
            self._commit_shapes = self._tensor_shapes()  # (read once: a model's tensors keep their shapes)
        shapes = self._commit_shapes
        if shapes is None:
            return  # (a source that cannot list its tensors checks in _apply_weight, if at all)
        source, holder, unknown = self._commit_words
        shape = shapes.get(name)
        if shape is None:
            raise ValueError(f"{source}: cannot apply the committed tensor {name!r}: the {holder} has no {unknown}")
        if array.size != math.prod(shape):
            raise ValueError(f"{source}: the committed tensor {name!r} has {array.size} values, but the {holder}'s "
                             f"has shape {tuple(shape)}")

    def _tensor_shapes(self) -> Optional[Mapping[str, tuple]]:
        """The shape of every tensor a commit may change, by name (read on the first commit); None: not
        known, no check. By default the shapes of :meth:`weights` (a source may override it, e.g. to list
        non-float tensors too)."""
        try:
            return {name: np.shape(array) for name, array in self.weights().items()}
        except NotImplementedError:
            return None  # (weights() left out: compress() was given the weights directly)

    # --- implemented by each source -----------------------------------------
    def _read_graph(self) -> Any:
        return None

    def _capture(self, layers: Sequence[CapturedLayer]) -> dict[str, HessianAccumulator]:
        raise NotImplementedError

    def _apply_weight(self, name: str, weights: np.ndarray) -> None:
        raise NotImplementedError

    def weights(self) -> dict[str, np.ndarray]:
        """The model's float weights by name (what ``compress()`` takes)."""
        raise NotImplementedError


def batches_of(inputs: Any, names: Sequence[str], what: str,
               shapes: Optional[Mapping[str, Optional[Sequence[Optional[int]]]]] = None,
               trailing_one: bool = False) -> list[dict[str, np.ndarray]]:
    """Calibration inputs as a list of feeds ``{input name: array}``: a mapping
    (one batch), a list of mappings, or (one-input models) an array / list of arrays.
    ``shapes``: the model inputs' declared shapes (None: any size on that axis;
    a missing or None shape: not checked), checked here so that a batch that does
    not fit is named at once instead of failing inside the framework; with
    ``trailing_one`` a size-1 last axis may be missing or extra (Keras adds or
    drops it)."""
    if inputs is None:
        raise ValueError(f"{what}: no calibration inputs given")
    if isinstance(inputs, Mapping):
        inputs = [inputs]
    elif isinstance(inputs, np.ndarray):
        inputs = [inputs]
    feeds: list[dict[str, np.ndarray]] = []
    for i, batch in enumerate(inputs):
        if not isinstance(batch, Mapping):
            if len(names) != 1:
                raise ValueError(f"{what}: the model has inputs {list(names)}; give each batch as a mapping "
                                 "input name -> array")
            batch = {names[0]: batch}
        missing = [n for n in names if n not in batch]
        if missing:
            raise ValueError(f"{what}: calibration batch {i} lacks model input(s) {missing} "
                             f"(got {sorted(batch)})")
        feed = {}
        for n in names:
            array = np.asarray(batch[n])
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ValueError(f"{what}: calibration input {n!r} of batch {i} contains NaN or Inf values")
            expected = (shapes or {}).get(n)
            if expected is not None and not _fits(array.shape, tuple(expected), trailing_one):
                shown = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
                raise ValueError(f"{what}: calibration input {n!r} of batch {i} has shape {array.shape}; the model "
                                 f"expects {shown} (? = any size)")
            feed[n] = array
        feeds.append(feed)
    if not feeds:
        raise ValueError(f"{what}: no calibration batches given")
    return feeds


def _fits(shape: tuple, expected: tuple, trailing_one: bool) -> bool:
    """Whether an array of ``shape`` fits a declared shape (None: any size)."""
    if trailing_one and len(shape) == len(expected) - 1 and expected[-1] == 1:
        expected = expected[:-1]
    elif trailing_one and len(shape) == len(expected) + 1 and shape[-1] == 1:
        shape = shape[:-1]
    return len(shape) == len(expected) and all(e is None or e == d for e, d in zip(expected, shape))
