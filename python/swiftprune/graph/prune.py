"""The entry point: prune whole channels of a model through its dependency graph."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .groups import Dependencies, analyze
from .importance import class_scores
from .ir import Graph
from .plan import select
from .surgery import LayerRow, Surgery, cut

__all__ = ["load_graph", "prune_model", "ChannelPruningResult"]


def _format(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        suffix = os.fspath(model).lower().rsplit(".", 1)[-1]
        if suffix in ("keras", "onnx"):
            return suffix
        raise ValueError(f"model file must end in .keras or .onnx, got {os.fspath(model)!r}")
    if hasattr(model, "get_config") and hasattr(model, "layers"):
        return "keras_live"
    if type(model).__name__ == "ModelProto":
        return "onnx_proto"
    raise TypeError(f"model must be a .keras/.onnx path or a Keras 3 model, got {type(model).__name__}")


def load_graph(model: Any) -> Graph:
    """The framework-neutral graph of a ``.keras`` file, an ``.onnx`` file
    (or ``onnx.ModelProto``), or a live Keras 3 model."""
    kind = _format(model)
    if kind == "keras":
        from .keras_file import read_keras_file
        return read_keras_file(model)
    if kind == "keras_live":
        from .keras_live import read_keras_model
        return read_keras_model(model)
    from .onnx_file import read_onnx
    return read_onnx(model)


@dataclass
class ChannelPruningResult:
    """What :func:`prune_model` did.

    Attributes
    ----------
    model : the pruned model: the path written (files) or a Keras model (live input)
    rows : list of LayerRow, one per layer with weights
    groups : number of dependency groups found; ``prunable_groups`` of them not frozen
    frozen_channels : channels (classes) that could not be removed, and ``frozen_reasons`` per layer
    kept : mapping layer name -> kept output channel indices (for layers whose outputs shrank)
    removed_inputs : mapping layer name -> (kernel input axis, removed input indices), the
        weights a "zeroed" original would zero to compute exactly what the pruned model computes
    """

    model: Any
    rows: List[LayerRow]
    groups: int
    prunable_groups: int
    frozen_channels: int
    total_channels: int
    frozen_reasons: Dict[str, str]
    kept: Dict[str, np.ndarray]
    removed_inputs: Dict[str, Any] = field(default_factory=dict)
    file_size: Optional[int] = None

    @property
    def params_before(self) -> int:
        return sum(r.params_before for r in self.rows)

    @property
    def params_after(self) -> int:
        return sum(r.params_after for r in self.rows)

    @property
    def macs_before(self) -> int:
        return sum(r.macs_before for r in self.rows)

    @property
    def macs_after(self) -> int:
        return sum(r.macs_after for r in self.rows)

    def summary(self, all_layers: bool = False) -> str:
        """A table: layer, kind, channels, params and MACs before -> after (changed layers unless ``all_layers``)."""
        lines = [f"{'layer':36s} {'kind':20s} {'channels':>13s} {'params':>21s} {'MACs':>25s}"]
        for r in self.rows:
            if not all_layers and r.params_before == r.params_after:
                continue
            ch = f"{r.channels_before}->{r.channels_after}"
            lines.append(f"{r.name[:36]:36s} {r.kind[:20]:20s} {ch:>13s} "
                         f"{r.params_before:>10,d}->{r.params_after:<10,d} {r.macs_before:>12,d}->{r.macs_after:<12,d}")
        lines.append(f"total: params {self.params_before:,d} -> {self.params_after:,d} "
                     f"({self.params_after / max(self.params_before, 1):.1%}), MACs {self.macs_before:,d} -> "
                     f"{self.macs_after:,d} ({self.macs_after / max(self.macs_before, 1):.1%}); "
                     f"{self.groups} groups ({self.prunable_groups} prunable), "
                     f"{self.frozen_channels} of {self.total_channels} channels frozen")
        return "\n".join(lines)


def plan(graph: Graph, amount: Union[float, Mapping[str, float]], *, importance: str = "l2",
         scores: Optional[Mapping[str, np.ndarray]] = None, global_pruning: bool = False, round_to: int = 1,
         min_channels: int = 1, include: Sequence[str] = (), exclude: Sequence[str] = (),
         allow_layernorm: bool = False):
    """Dependencies, kept classes and surgery for ``graph`` (nothing written)."""
    include = [include] if isinstance(include, str) else list(include)
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    deps = analyze(graph, include=include, exclude=exclude, allow_layernorm=allow_layernorm)
    keep = select(deps, class_scores(deps, importance, scores), amount, global_pruning=global_pruning,
                  round_to=round_to, min_channels=min_channels)
    return deps, keep, cut(deps, keep)


def _result(model, deps: Dependencies, keep: np.ndarray, surgery: Surgery, size=None) -> ChannelPruningResult:
    graph = deps.graph
    kept, removed_inputs = {}, {}
    for node in graph.nodes:
        if node.op in ("conv", "dense", "separable", "depthwise") and node.outputs:
            k = surgery.tensor_keep[node.outputs[0]]
            if k is not None and not k.all():
                kept[node.name] = np.flatnonzero(k)
    for b in deps.bindings:
        node = graph.nodes[b.node]
        if node.op in ("conv", "dense", "separable") and node.params[b.param].role == "weight":
            which = [w for p, a, w in node.attrs["bind"] if p == b.param and a == b.axis]
            # the kernel axis that mixes input channels (a separable conv mixes after its depthwise half)
            if which and (which[0].startswith("in") if node.op != "separable" else which[0] == "mid"):
                k = keep[deps.atom_class[b.atoms]]
                if not k.all():
                    removed_inputs[node.name] = (b.param, b.axis, np.flatnonzero(~k))
    return ChannelPruningResult(
        model, surgery.rows, len(deps.groups), sum(1 for g in deps.groups if (~g.frozen).any()),
        int(deps.class_frozen.sum()), deps.n_classes, dict(deps.frozen_reasons), kept, removed_inputs, size)


def prune_model(model: Any, amount: Union[float, Mapping[str, float]], output: Optional[Union[str, os.PathLike]] = None,
                *, importance: str = "l2", scores: Optional[Mapping[str, np.ndarray]] = None,
                global_pruning: bool = False, round_to: int = 1, min_channels: int = 1,
                include: Sequence[str] = (), exclude: Sequence[str] = (),
                allow_layernorm: bool = False, calibration: Any = None,
                progress: bool = True) -> ChannelPruningResult:
    """Remove whole channels from a model, through its channel dependency graph.

    Parameters
    ----------
    model : str or path-like (``.keras`` / ``.onnx``), ``onnx.ModelProto`` or a Keras 3 model
    amount : float in [0, 1], or a mapping of layer-name glob to amount
        The fraction of each dependency group's channels removed.
    output : path, optional
        Where to write the pruned file (required for file input; a ``.keras``
        path for a live Keras model saves it too).
    importance : {"l2", "l1", "bn", "user", "activation"}
        How channels are ranked (see :func:`swiftprune.graph.importance.class_scores`).
    scores : mapping of layer name to per-output-channel scores
        For ``importance="user"`` or ``"activation"``
        (:func:`swiftprune.graph.activation_scores`).
    global_pruning : bool
        One threshold over all groups (scores normalized per group) instead of
        ``amount`` in every group.
    round_to : int
        Kept channels per group rounded up to a multiple of this (e.g. 8).
    min_channels : int
        Keep at least this many channels in every group.
    include, exclude : glob patterns over layer names
        Only channels produced by included, not excluded, layers are removed.
        Model inputs and outputs never are.
    allow_layernorm : bool
        Also prune channels that a LayerNorm normalizes over (not exactly
        equivalent; frozen by default).
    calibration : array, mapping input name -> array, or a list of batches, optional
        With ``importance="activation"`` and no ``scores``: the inputs on which
        :func:`swiftprune.graph.activation_scores` measures each channel's mean
        |activation| (onnxruntime for ONNX models, Keras for Keras models).
    progress : bool
        A progress bar over the steps (read, groups, importance, surgery,
        write) on stderr, drawn only when the call lasts more than 2 s.

    Returns
    -------
    ChannelPruningResult
        ``.model`` (the path written, or the pruned Keras model), ``.rows``
        and ``.summary()`` (per layer channels/params/MACs), groups, frozen channels.

    Raises
    ------
    FileNotFoundError, ValueError (corrupt file, bad option), TypeError (unsupported model object)
    """
    kind = _format(model)
    if kind in ("keras", "onnx") and output is None:
        raise ValueError("output: a path for the pruned model file is required when the model is a file")
    if output is not None:
        suffix = os.fspath(output).lower().rsplit(".", 1)[-1]
        wanted = {"keras": "keras", "keras_live": "keras", "onnx": "onnx", "onnx_proto": "onnx"}[kind]
        if suffix != wanted:
            raise ValueError(f"output must be a .{wanted} file for this model, got {os.fspath(output)!r}")
    if calibration is not None and importance != "activation":
        raise ValueError(f"calibration inputs are used by importance='activation' only, not {importance!r}")
    if importance == "activation" and scores is None and calibration is None:
        raise ValueError("importance='activation' needs calibration inputs (calibration=...) or scores "
                         "(swiftprune.graph.activation_scores)")
    from .._progress import step_bar
    bar = step_bar(total=5, description="prune channels", enabled=progress)
    try:
        bar.set_postfix_str("read", refresh=False)
        graph = load_graph(model)
        bar.update()
        bar.set_postfix_str("groups", refresh=False)
        include = [include] if isinstance(include, str) else list(include)
        exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        deps = analyze(graph, include=include, exclude=exclude, allow_layernorm=allow_layernorm)
        bar.update()
        bar.set_postfix_str("importance", refresh=False)
        if importance == "activation" and scores is None and calibration is not None:
            scores = _activation_scores(model, kind, graph, calibration, progress)
        keep = select(deps, class_scores(deps, importance, scores), amount, global_pruning=global_pruning,
                      round_to=round_to, min_channels=min_channels)
        bar.update()
        bar.set_postfix_str("surgery", refresh=False)
        surgery = cut(deps, keep)
        bar.update()
        bar.set_postfix_str("write", refresh=False)
        if kind == "keras":
            from .keras_file import write_keras_file
            size = write_keras_file(graph, surgery, output)
            result = _result(os.fspath(output), deps, keep, surgery, size)
        elif kind == "keras_live":
            from .keras_live import write_keras_model
            pruned, size = write_keras_model(graph, surgery, output)
            result = _result(pruned, deps, keep, surgery, size)
        else:
            from .onnx_file import write_onnx
            proto = write_onnx(graph, surgery, output)
            result = _result(os.fspath(output) if output is not None else proto, deps, keep, surgery,
                             os.path.getsize(output) if output is not None else None)
        bar.update()
        bar.set_postfix_str("done", refresh=False)
        return result
    finally:
        bar.close()


def _activation_scores(model: Any, kind: str, graph: Graph, calibration: Any, progress: bool):
    """Mean |activation| per channel of ``model`` on ``calibration`` (see :mod:`.activations`)."""
    from .activations import activation_scores, onnx_activation_scores
    if kind in ("onnx", "onnx_proto"):
        return onnx_activation_scores(model, calibration, graph=graph, progress=progress)
    return activation_scores(model, calibration)
