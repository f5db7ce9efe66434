"""Channel pruning of whole models through their dependency graph.

``prune_model`` reads a ``.keras`` file (json + h5py, no Keras import), an
``.onnx`` file (the ``onnx`` package) or a live Keras 3 model into a small
framework-neutral graph (:mod:`.ir`), finds the channels that must be removed
together (:mod:`.groups`), ranks them (:mod:`.importance`), chooses
(:mod:`.plan`), slices every coupled weight (:mod:`.surgery`) and writes the
same kind of model back, physically smaller.
"""
from __future__ import annotations

from .activations import activation_scores, onnx_activation_scores
from .groups import Dependencies, Group, analyze
from .importance import class_scores
from .ir import Graph, Node, Param, Tensor
from .prune import ChannelPruningResult, load_graph, plan, prune_model
from .surgery import LayerRow


__all__ = ["prune_model", "load_graph", "plan", "analyze", "class_scores", "activation_scores", "onnx_activation_scores",
           "ChannelPruningResult", "Dependencies", "Group", "Graph", "Node", "Param", "Tensor", "LayerRow"]
