"""Channel dependency groups (DepGraph): which channels must go together.

Every channel of every tensor is an *atom*. Producers (conv, dense) create
fresh atoms for their outputs; channel-preserving ops (activations, norms,
pooling, depthwise convs...) pass their input's atoms through; Add/Multiply
unite the atoms of their inputs; Concatenate joins its inputs' atom arrays
at their offsets; Flatten repeats each channel's atom ``h*w`` times in the
layout's order, so a following Dense's rows are bound to their channel.
United atoms form a *class*: one channel that can be removed, taking with it
every weight slice bound to any of its atoms. Classes with the same set of
producers form a *group* (e.g. the residual stream of a ResNet stage).

Atoms of model inputs and outputs, of ops the graph does not understand and
of excluded layers are *frozen*: a class with a frozen atom is never removed.
The work is vectorized: unions are done on whole atom arrays at a time.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ir import Graph, Node

__all__ = ["Binding", "Group", "Dependencies", "analyze"]


@dataclass
class Binding:
    """Axis ``axis`` of ``node.params[param]`` has one entry per atom in ``atoms``."""

    node: int
    param: str
    axis: int
    atoms: np.ndarray


@dataclass
class Group:
    """Channels coupled across ``producers`` (node names): ``classes`` are the
    removable units (class ids), ``frozen`` says which of them must stay."""

    index: int
    producers: Tuple[str, ...]
    classes: np.ndarray
    frozen: np.ndarray

    @property
    def name(self) -> str:
        return self.producers[0] if self.producers else f"group{self.index}"


@dataclass
class Dependencies:
    """The result of :func:`analyze`: atoms per tensor, their classes, the
    weight bindings, the groups, and why channels were frozen."""

    graph: Graph
    tensor_atoms: List[Optional[np.ndarray]]
    atom_class: np.ndarray          # atom -> class id (0..n_classes-1)
    class_frozen: np.ndarray        # class id -> bool
    bindings: List[Binding]
    groups: List[Group]
    frozen_reasons: Dict[str, str] = field(default_factory=dict)   # node name -> why its channels are frozen

    @property
    def n_classes(self) -> int:
        return int(self.class_frozen.size)


class _Atoms:
    """Atom allocation (amortized growth), union-find over atom arrays, freezing."""

    def __init__(self) -> None:
        self.size = 0
        self._parent = np.zeros(1024, dtype=np.int64)
        self._frozen = np.zeros(1024, dtype=bool)
        self._producer = np.zeros(1024, dtype=np.int64)

    @property
    def parent(self) -> np.ndarray:
        return self._parent[: self.size]

    @property
    def frozen(self) -> np.ndarray:
        return self._frozen[: self.size]

    @property
    def producer(self) -> np.ndarray:
        return self._producer[: self.size]

    def new(self, count: int, producer: int, frozen: bool = False) -> np.ndarray:
        start, end = self.size, self.size + count
        if end > self._parent.size:
            capacity = max(end, 2 * self._parent.size)
            for name in ("_parent", "_frozen", "_producer"):
                old = getattr(self, name)
                grown = np.zeros(capacity, dtype=old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        ids = np.arange(start, end, dtype=np.int64)
        self._parent[start:end] = ids
        self._frozen[start:end] = frozen
        self._producer[start:end] = producer
        self.size = end
        return ids

    def find(self, atoms: np.ndarray) -> np.ndarray:
        parent = self._parent
        roots = parent[atoms]
        while True:
            up = parent[roots]
            if np.array_equal(up, roots):
                return roots
            roots = up

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
        while True:
            ra, rb = self.find(a), self.find(b)
            differ = ra != rb
            if not differ.any():
                return
            lo, hi = np.minimum(ra, rb)[differ], np.maximum(ra, rb)[differ]
            self._parent[hi] = lo

    def freeze(self, atoms: Optional[np.ndarray]) -> None:
        if atoms is not None and atoms.size:
            self._frozen[atoms] = True


def _count(graph: Graph, tensor: int) -> Optional[int]:
    c = graph.tensors[tensor].channels
    return None if c is None else int(c)


def _split(shape: Sequence[Optional[int]], axis: int) -> Optional[Tuple[int, int, int]]:
    """(product of non-batch dims before the channel axis, channels, product after), or None if unknown."""
    axis = axis % len(shape)
    if axis == 0:
        return None
    dims = shape[1:]
    if any(d is None for d in dims):
        return None
    pre = int(np.prod(shape[1:axis], dtype=np.int64))
    post = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return pre, int(shape[axis]), post


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def analyze(graph: Graph, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
            allow_layernorm: bool = False) -> Dependencies:
    """Find the channel dependency groups of ``graph``.

    Parameters
    ----------
    graph : Graph
    include, exclude : sequences of glob patterns over node names
        Only channels produced by included (and not excluded) layers may be
        removed; model inputs and outputs never are.
    allow_layernorm : bool
        A LayerNorm over channels normalizes with statistics of all channels,
        so removing one changes the others: by default its channels are
        frozen. True prunes through it anyway (the output then changes beyond
        the removed channels; fine-tune afterwards).
    """
    atoms = _Atoms()
    tensor_atoms: List[Optional[np.ndarray]] = [None] * len(graph.tensors)
    bindings: List[Binding] = []
    reasons: Dict[str, str] = {}

    def fresh(tensor: int, node_index: int, frozen: bool = False) -> Optional[np.ndarray]:
        count = _count(graph, tensor)
        if count is None:
            return None
        tensor_atoms[tensor] = atoms.new(count, node_index, frozen)
        return tensor_atoms[tensor]

    def freeze_node(node_index: int, node: Node, reason: str) -> None:
        reasons.setdefault(node.name, reason)
        for t in node.inputs:
            atoms.freeze(tensor_atoms[t])
        for t in node.outputs:
            if tensor_atoms[t] is None:
                fresh(t, node_index, frozen=True)
            atoms.freeze(tensor_atoms[t])

    for index, node in enumerate(graph.nodes):
        ins = [tensor_atoms[t] for t in node.inputs]
        data_in = ins[0] if ins else None
        out = node.outputs[0] if node.outputs else None
        op = node.op
        if node.attrs.get("frozen"):
            freeze_node(index, node, node.attrs["frozen"])
            continue
        if op == "input":
            fresh(out, index, frozen=True)
            reasons.setdefault(node.name, "model input")
            continue
        if op == "unknown":
            freeze_node(index, node, node.attrs.get("reason", f"unsupported op {node.kind}"))
            continue
        if data_in is None and op != "elementwise":
            freeze_node(index, node, f"{node.kind}: input channels unknown")
            continue
        mid = None
        if op in ("conv", "dense"):
            groups = int(node.attrs.get("groups", 1))
            out_atoms = fresh(out, index)
            if out_atoms is None:
                freeze_node(index, node, f"{node.kind}: output channels unknown")
                continue
            if groups > 1:
                if data_in.size % groups or out_atoms.size % groups:
                    freeze_node(index, node, f"{node.kind}: channels not divisible by groups={groups}")
                    continue
                # Groups shrink in lockstep: local index l of every group is one class.
                for arr in (data_in, out_atoms):
                    per = arr.size // groups
                    atoms.union(arr.reshape(groups, per), np.broadcast_to(arr[:per], (groups, per)))
        elif op in ("depthwise", "separable"):
            m = int(node.attrs.get("multiplier", 1))
            if m == 1:
                mid = data_in
            else:
                mid = atoms.new(data_in.size * m, index)
                atoms.union(mid, np.repeat(data_in, m))
            if op == "depthwise":
                tensor_atoms[out] = mid
            elif fresh(out, index) is None:
                freeze_node(index, node, f"{node.kind}: output channels unknown")
                continue
        elif op in ("norm", "layernorm", "passthrough"):
            if op == "layernorm" and not allow_layernorm:
                reasons.setdefault(node.name, "LayerNorm over channels (allow_layernorm=False)")
                atoms.freeze(data_in)
            for t in node.outputs:
                if _count(graph, t) not in (None, data_in.size):
                    freeze_node(index, node, f"{node.kind}: changes the channel count")
                    break
                tensor_atoms[t] = data_in
        elif op == "elementwise":
            counts = [a.size if a is not None else None for a in ins]
            full = _count(graph, out)
            if full is None:
                full = max((c for c in counts if c is not None), default=None)
            full_inputs = [a for a in ins if a is not None and a.size == full]
            if full is None or not full_inputs or any(a is not None and a.size not in (1, full) for a in ins):
                freeze_node(index, node, f"{node.kind}: inputs with mismatched channels")
                continue
            for a in full_inputs[1:]:
                atoms.union(full_inputs[0], a)
            tensor_atoms[out] = full_inputs[0]
        elif op == "concat":
            shape = graph.tensors[out].shape
            cax = graph.tensors[out].channel_axis
            axis = node.attrs.get("axis", -1)
            if shape is None or cax is None or any(a is None for a in ins):
                freeze_node(index, node, f"{node.kind}: shapes unknown")
                continue
            if axis % len(shape) == cax % len(shape):
                tensor_atoms[out] = np.concatenate(ins)
            else:
                if any(a.size != ins[0].size for a in ins):
                    freeze_node(index, node, f"{node.kind}: inputs with mismatched channels")
                    continue
                for a in ins[1:]:
                    atoms.union(ins[0], a)
                tensor_atoms[out] = ins[0]
        elif op in ("flatten", "reshape"):
            src, dst = graph.tensors[node.inputs[0]], graph.tensors[out]
            s_in = None if src.shape is None or src.channel_axis is None else _split(src.shape, src.channel_axis)
            s_out = None if dst.shape is None or dst.channel_axis is None else _split(dst.shape, dst.channel_axis)
            if s_in is None or s_out is None:
                freeze_node(index, node, f"{node.kind}: shapes unknown")
                continue
            pre, c, post = s_in
            if s_out == s_in:
                tensor_atoms[out] = data_in
            elif len(dst.shape) == 2 and s_out[1] == pre * c * post:
                # feature (p*C + c)*post + q of the flat output is channel c
                tensor_atoms[out] = np.tile(np.repeat(data_in, post), pre)
            else:
                freeze_node(index, node, f"{node.kind}: moves the channel axis")
                continue
        else:  # pragma: no cover - add_node validates op names
            freeze_node(index, node, f"op {op}")
            continue

        # Bind the node's weights to atoms.
        out_atoms = tensor_atoms[out] if out is not None else None
        for param, axis, which in node.attrs.get("bind", ()):
            if param not in node.params:
                continue
            groups = int(node.attrs.get("groups", 1))
            source = {"in": data_in, "out": out_atoms, "mid": mid,
                      "in_local": None if data_in is None else data_in[: data_in.size // groups],
                      "out_local": None if out_atoms is None else out_atoms[: out_atoms.size // groups]}[which]
            value = node.params[param].value
            if source is None or value.shape[axis] != source.size:
                freeze_node(index, node, f"{node.kind}: weight {param!r} of shape {value.shape} does not match "
                                         f"{which} channels ({None if source is None else source.size})")
                break
            bindings.append(Binding(index, param, axis, source))

    for t in graph.outputs:
        atoms.freeze(tensor_atoms[t])
    # include / exclude act on the channels a layer produces
    if include or exclude:
        for index, node in enumerate(graph.nodes):
            if node.op not in ("conv", "dense", "separable", "depthwise"):
                continue
            if (include and not _matches(node.name, include)) or _matches(node.name, exclude):
                for t in node.outputs:
                    atoms.freeze(tensor_atoms[t])
                reasons.setdefault(node.name, "excluded")

    # Classes: compact ids of the union-find roots.
    roots = atoms.find(np.arange(atoms.parent.size, dtype=np.int64))
    unique_roots, atom_class = np.unique(roots, return_inverse=True)
    n = unique_roots.size
    class_frozen = np.bincount(atom_class, weights=atoms.frozen, minlength=n) > 0
    # Groups: classes with the same set of producing nodes.
    pairs = np.unique(np.stack([atom_class, atoms.producer]), axis=1) if n else np.zeros((2, 0), dtype=np.int64)
    rng = np.random.default_rng(12345)
    keys = rng.integers(1, 2 ** 62, size=len(graph.nodes) + 1, dtype=np.int64)
    # sum of one random key per producer (wrapping int64 arithmetic): equal sets, equal sums
    order_pairs = np.argsort(pairs[0], kind="stable")
    starts = np.searchsorted(pairs[0][order_pairs], np.arange(n))
    signature = np.add.reduceat(keys[pairs[1][order_pairs]], starts) if n else np.zeros(0, dtype=np.int64)
    _, group_of_class = np.unique(signature, return_inverse=True)
    order = np.argsort(group_of_class, kind="stable")
    bounds = np.flatnonzero(np.diff(group_of_class[order])) + 1
    groups: List[Group] = []
    for members in np.split(order, bounds) if n else []:
        producers_idx = np.unique(pairs[1][np.isin(pairs[0], members[:1])])
        producers = tuple(graph.nodes[i].name for i in producers_idx)
        groups.append(Group(len(groups), producers, members, class_frozen[members]))
    return Dependencies(graph, tensor_atoms, atom_class.astype(np.int64), class_frozen, bindings, groups, reasons)
