"""Activation importance: mean |activation| of every output channel of every
Conv / Dense layer over calibration inputs, for ``prune_model(...,
importance="activation", scores=...)``.

ONNX models run in onnxruntime with each layer's output tensor added to the
graph's outputs, so one run per batch returns every layer's activations (the
same technique as :mod:`swiftprune.calibration.onnx_capture`, which captures
layer *inputs*). Keras models (live, or a ``.keras`` file loaded with Keras)
go through :func:`swiftprune.graph.keras_live.activation_scores`.
Scores are keyed by the node names of :func:`swiftprune.graph.load_graph`.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .._onnx_model import load_onnx_model
from .._progress import progress as _progress
from .ir import Graph

__all__ = ["activation_scores", "onnx_activation_scores"]

# The nodes whose output channels are scored: those that create channels.
SCORED_OPS = ("conv", "dense", "depthwise", "separable")


def _onnx_runtime():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ImportError('activation scores of an ONNX model need onnx and onnxruntime: '
                          'pip install "swiftprune[onnx]"') from None
    return onnx, onnxruntime


def _fixed_batch(value_info) -> Optional[int]:
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) and dims[0].HasField("dim_value"):
        return int(dims[0].dim_value)
    return None


def _feeds(inputs: Any, names: List[str], batch_size: int, fixed: Optional[int]) -> List[Dict[str, np.ndarray]]:
    """Calibration inputs as onnxruntime feeds: a list of batches is used as given; one array (or one
    mapping input name -> array) is cut into batches of ``batch_size`` (or of the model's fixed batch size)."""
    from ..calibration.model_source import batches_of

    if isinstance(inputs, (np.ndarray, Mapping)):
        whole = batches_of(inputs, names, "activation scores")[0]
        lengths = {n: (a.shape[0] if a.ndim else None) for n, a in whole.items()}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise ValueError(f"activation scores: every calibration input needs the same number of samples "
                             f"along axis 0, got {lengths}")
        total = next(iter(lengths.values()))
        step = fixed or batch_size
        if fixed is not None and total % fixed:
            raise ValueError(f"activation scores: the model's batch size is fixed at {fixed}, but the calibration "
                             f"inputs have {total} samples (not a multiple of {fixed})")
        return [{n: a[start:start + step] for n, a in whole.items()} for start in range(0, total, step)]
    return batches_of(inputs, names, "activation scores")


def onnx_activation_scores(model: Any, inputs: Any, *, batch_size: int = 64, graph: Optional[Graph] = None,
                           progress: bool = False) -> Dict[str, np.ndarray]:
    """Mean |activation| per output channel of every Conv / Gemm / MatMul node of an ONNX model.

    Parameters
    ----------
    model : str, os.PathLike or onnx.ModelProto
    inputs : array, mapping input name -> array, or a list of either (batches)
        Calibration inputs. One array / mapping is cut into batches of
        ``batch_size`` samples along axis 0 (of the model's own batch size
        when its input has a fixed one); a list is taken as the batches.
    batch_size : int
    graph : Graph, optional
        The model's graph when already read (:func:`swiftprune.graph.load_graph`).
    progress : bool
        A progress bar over the batches (shown for long runs only).

    Returns
    -------
    dict
        Node name (as :func:`~swiftprune.graph.load_graph` names it) -> float64
        array of one mean |activation| per output channel (the node's own
        output, before any following normalization or activation), averaged
        over every sample and spatial position.

    Raises
    ------
    ImportError
        onnx / onnxruntime missing.
    ValueError
        Missing inputs, NaN/Inf in them, a batch count the model cannot take,
        a non-positive ``batch_size``.
    """
    onnx, ort = _onnx_runtime()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    model = load_onnx_model(model, onnx)
    if graph is None:
        from .onnx_file import read_onnx
        graph = read_onnx(model)
    scored = [(node.name, graph.tensors[node.outputs[0]]) for node in graph.nodes
              if node.op in SCORED_OPS and node.outputs and graph.tensors[node.outputs[0]].channel_axis is not None]
    if not scored:
        return {}
    initializers = {i.name for i in model.graph.initializer}
    model_inputs = [i for i in model.graph.input if i.name not in initializers]
    names = [i.name for i in model_inputs]
    fixed = {_fixed_batch(i) for i in model_inputs}
    feeds = _feeds(inputs, names, batch_size, fixed.pop() if len(fixed) == 1 else None)

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    fetched = list(dict.fromkeys(t.name for _, t in scored))
    channel_axis = {t.name: t.channel_axis for _, t in scored}
    for name in fetched:
        if name not in existing:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, int] = {}
    for feed in _progress(feeds, total=len(feeds), description="activations", enabled=progress, unit="batch"):
        try:
            values = dict(zip(fetched, session.run(fetched, feed)))
        except Exception as error:  # onnxruntime's own errors (bad shapes, dtypes) name the input
            raise ValueError(f"activation scores: onnxruntime could not run the calibration batch "
                             f"({type(error).__name__}: {error})") from None
        for name, tensor in values.items():
            value = np.asarray(tensor)
            axis = channel_axis[name] % value.ndim
            others = tuple(a for a in range(value.ndim) if a != axis)
            # one vectorized reduction per tensor, accumulated in float64
            total = np.abs(value).sum(axis=others, dtype=np.float64)
            sums[name] = total if name not in sums else sums[name] + total
            counts[name] = counts.get(name, 0) + value.size // max(value.shape[axis], 1)
    return {node: sums[t.name] / max(counts[t.name], 1) for node, t in scored}


def activation_scores(model: Any, x: Any, batch_size: int = 64, *, progress: bool = False) -> Dict[str, np.ndarray]:
    """Mean |activation| per output channel of every Conv / Dense layer over calibration inputs ``x``.

    Parameters
    ----------
    model : an ``.onnx`` path or ``onnx.ModelProto`` (run by onnxruntime), a
        ``.keras`` path (loaded with Keras) or a live Keras 3 model
    x : calibration inputs (see :func:`onnx_activation_scores` for ONNX;
        an array or what ``keras.Model.predict`` takes for Keras)
    batch_size : int
    progress : bool
        ONNX only: a progress bar over the batches.

    Returns
    -------
    dict
        Layer name -> one score per output channel; pass it as
        ``prune_model(..., importance="activation", scores=...)``.
    """
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx") \
            or type(model).__name__ == "ModelProto":
        return onnx_activation_scores(model, x, batch_size=batch_size, progress=progress)
    from .keras_live import activation_scores as keras_scores, _keras
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not path.lower().endswith(".keras"):
            raise ValueError(f"model file must end in .keras or .onnx, got {path!r}")
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "no such .keras file", path)
        model = _keras().saving.load_model(path, compile=False)
    return keras_scores(model, x, batch_size)
