"""Live Keras 3 models: saved to a temporary ``.keras`` file and read as one,
so one importer covers every backend; pruned models are loaded back with
``keras.saving.load_model``. Also activation-based channel scores."""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .ir import Graph

__all__ = ["read_keras_model", "write_keras_model", "activation_scores"]


def _keras():
    try:
        import keras
    except ImportError as error:  # pragma: no cover
        raise ImportError('pruning a Keras model object needs Keras 3: pip install "swiftprune[keras]"') from error
    return keras


def read_keras_model(model: Any) -> Graph:
    """The graph of a built Keras 3 model (Sequential, Functional, nested)."""
    from .keras_file import read_keras_file
    _keras()
    if not getattr(model, "built", True):
        raise ValueError("the Keras model is not built: call it on data or build it with an input shape first")
    with tempfile.TemporaryDirectory(prefix="swiftprune-") as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        return read_keras_file(path)


def write_keras_model(graph: Graph, surgery, output: Optional[str]) -> Tuple[Any, Optional[int]]:
    """The pruned Keras model (and the size of ``output`` when one was asked for)."""
    from .keras_file import write_keras_file
    keras = _keras()
    if output is not None:
        size = write_keras_file(graph, surgery, output)
        return keras.saving.load_model(output, compile=False), size
    with tempfile.TemporaryDirectory(prefix="swiftprune-") as directory:
        path = os.path.join(directory, "pruned.keras")
        write_keras_file(graph, surgery, path)
        return keras.saving.load_model(path, compile=False), None


def activation_scores(model: Any, x: Any, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """Mean |activation| per output channel of every Conv/Dense layer of a
    Keras model over calibration inputs ``x`` (pass to ``prune_model(...,
    importance="activation", scores=...)``)."""
    keras = _keras()
    kinds = ("Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv2D",
             "Conv2DTranspose")
    layers = [l for l in model.layers if type(l).__name__ in kinds]
    if not layers:
        return {}
    probe = keras.Model(model.inputs, [l.output for l in layers])
    outputs = probe.predict(x, batch_size=batch_size, verbose=0)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    scores = {}
    for layer, value in zip(layers, outputs):
        value = np.asarray(value)
        scores[layer.name] = np.abs(value).reshape(-1, value.shape[-1]).mean(axis=0)
    return scores
