"""Candidate encodings the planner chooses from, one per tensor.

A :class:`Candidate` is a named encoding template — "int4 in groups of 32",
"16-colour palette per channel", "2:4 sparsity + int8", "low rank at half
the size", "keep float16" — that turns into explicit recipe stages for one
tensor once its shape and layout are known (:meth:`Candidate.stages_for`),
or into nothing when it cannot apply (a group size that does not divide, a
rank that is too small, ...). Every stage it produces is an ordinary recipe
stage, so ``compress()`` runs it unchanged and the bytes it costs are the
codec's ``nbytes``: the size as stored.

Spellings (the command line's ``--candidates`` uses them, comma separated):

``float32``                  keep the tensor as it is
``float16``                  keep it as float16
``intB``                     B-bit (2..8) symmetric, one scale per output channel
``intB:gG``                  B-bit, one scale per G inputs of each output channel
                             (conv kernels: along input-channel×kernel)
``gptqB``, ``gptqB:gG``      as ``intB`` / ``intB:gG``, quantized by GPTQ (error
                             compensation from the layer's calibration inputs;
                             only tensors the calibration knows)
``palK``                     K-colour palette (k-means) per output channel
``palK:gG``                  one K-colour palette per G output channels
``palK:tensor``              one K-colour palette for the whole tensor
``N:M+intB``                 N:M sparsity along the input axis, then ``intB``
``sparseS+intB``             magnitude sparsity S (0..1), then ``intB``
``lowrankR``                 low-rank factors of at most R (0..1) of the size

Every ``intB`` spelling (``gptqB``, ``N:M+intB`` ... too) takes a ``:f16``
suffix: the scales stored as float16 (rounded after quantizing, the error
measured with them), e.g. ``int4:g32:f16``, ``gptq5:f16``.

Layouts: ``"keras"`` (Dense ``(in, out)``, Conv ``(kh, kw, in, out)``,
Keras depthwise ``(kh, kw, channels, 1)`` is per ``channels``) and
``"torch"`` (Linear ``(out, in)``, Conv ``(out, in, kh, kw)``; ONNX uses it too).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

__all__ = ["Candidate", "parse_candidate", "default_candidates", "channel_axis", "input_axis", "exact_pattern"]

_LAYOUTS = ("keras", "torch")


def _check_layout(layout: str) -> str:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    return layout


def exact_pattern(name: str) -> str:
    """A recipe ``include`` pattern that matches exactly the tensor ``name``
    (glob characters ``*?[`` bracketed, so ``"w[0]"`` stays one name)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def channel_axis(shape: Sequence[int], layout: str) -> int:
    """The output-channel axis of a weight (non-negative): the last for Keras
    (the third of a depthwise ``(kh, kw, channels, 1)`` kernel), the first for
    PyTorch/ONNX."""
    _check_layout(layout)
    ndim = len(shape)
    if layout == "torch":
        return 0
    if ndim == 4 and shape[-1] == 1 and shape[-2] > 1:
        return 2  # Keras depthwise: one filter per input channel
    return ndim - 1


def input_axis(shape: Sequence[int], layout: str) -> int:
    """The input-channel axis (non-negative): Keras ``(..., in, out)`` → ndim-2,
    PyTorch ``(out, in, ...)`` → 1."""
    _check_layout(layout)
    return 1 if layout == "torch" else len(shape) - 2


@dataclass(frozen=True)
class Candidate:
    """One encoding template. ``kind`` is ``"keep"``, ``"float16"``,
    ``"int"``, ``"gptq"``, ``"palette"``, ``"sparse_int"``, ``"nm_int"`` or ``"low_rank"``;
    the other fields are its parameters. Build one with :func:`parse_candidate`."""

    kind: str
    bits: int = 8
    group_size: Optional[int] = None
    n_clusters: int = 16
    palette: str = "channel"  # "channel", "group" or "tensor"
    sparsity: float = 0.0
    n: int = 2
    m: int = 4
    ratio: float = 0.5
    scale_dtype: str = "float32"  # of int/gptq/sparse_int/nm_int: "float16" halves the scales' bytes

    @property
    def name(self) -> str:
        """The spelling :func:`parse_candidate` reads back."""
        if self.kind in ("keep", "float16"):
            return "float32" if self.kind == "keep" else "float16"
        quant = (f"int{self.bits}" + (f":g{self.group_size}" if self.group_size else "")
                 + (":f16" if self.scale_dtype == "float16" else ""))
        if self.kind == "int":
            return quant
        if self.kind == "gptq":
            return "gptq" + quant[3:]
        if self.kind == "palette":
            tail = {"channel": "", "tensor": ":tensor", "group": f":g{self.group_size}"}[self.palette]
            return f"pal{self.n_clusters}{tail}"
        if self.kind == "sparse_int":
            return f"sparse{self.sparsity:g}+{quant}"
        if self.kind == "nm_int":
            return f"{self.n}:{self.m}+{quant}"
        return f"lowrank{self.ratio:g}"

    def __str__(self) -> str:
        return self.name

    @property
    def calibrated(self) -> bool:
        """Whether the encoding needs the layer's calibration inputs (GPTQ)."""
        return self.kind == "gptq"

    def _quantize(self, shape: Sequence[int], layout: str) -> Optional[dict[str, Any]]:
        axis = channel_axis(shape, layout)
        options: dict[str, Any] = {"bits": self.bits, "axis": axis}
        if self.group_size:
            if len(shape) > 2 and axis not in (0, len(shape) - 1):
                return None  # a depthwise Keras kernel has no input-channel x kernel groups
            reduced = math.prod(shape) // max(shape[axis], 1)
            if reduced % self.group_size or reduced == self.group_size:
                return None  # does not divide, or is plain per-channel
            options["group_size"] = self.group_size
        if self.scale_dtype != "float32":
            options["scale_dtype"] = self.scale_dtype
        return {"quantize": options}

    def stages_for(self, shape: Sequence[int], layout: str = "keras") -> Optional[list[dict[str, Any]]]:
        """The recipe stages (without ``include``) that apply this candidate to
        a floating tensor of ``shape``, or ``None`` when it cannot apply.
        ``keep`` gives an empty list."""
        _check_layout(layout)
        shape = tuple(int(d) for d in shape)
        if self.kind == "keep":
            return []
        if self.kind == "float16":
            return [{"quantize": {"method": "float16"}}]
        if len(shape) < 2 or math.prod(shape) == 0:
            return None
        if self.kind in ("int", "gptq"):
            stage = self._quantize(shape, layout)
            if stage is None:
                return None
            if self.kind == "gptq":
                options = stage["quantize"]
                stage = {"quantize": {"method": "gptq", "bits": self.bits, "group_size": options.get("group_size")}}
                if self.scale_dtype != "float32":
                    stage["quantize"]["scale_dtype"] = self.scale_dtype
            return [stage]
        if self.kind == "palette":
            options: dict[str, Any] = {"n_clusters": self.n_clusters}
            if self.palette != "tensor":
                axis = channel_axis(shape, layout)
                options["axis"] = axis
                if self.palette == "group":
                    if shape[axis] % self.group_size or shape[axis] == self.group_size:
                        return None
                    options["group_size"] = self.group_size
            return [{"cluster": options}]
        if self.kind in ("sparse_int", "nm_int"):
            stage = self._quantize(shape, layout)
            if stage is None:
                return None
            if self.kind == "sparse_int":
                return [{"prune": {"method": "magnitude", "sparsity": self.sparsity}}, stage]
            axis = input_axis(shape, layout)
            if shape[axis] % self.m:
                return None
            return [{"prune": {"method": "nm", "n": self.n, "m": self.m, "axis": axis}}, stage]
        # low rank: never a factorization that is not smaller than the tensor
        rows, columns = _factor_shape(shape, layout)
        rank = math.floor(self.ratio * rows * columns / (rows + columns))
        if rank < 1 or rank * (rows + columns) >= rows * columns:
            return None
        return [{"low_rank": {"ratio": self.ratio, "layout": layout}}]


def _factor_shape(shape: Sequence[int], layout: str) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    if layout == "keras":
        return math.prod(shape[:-1]), shape[-1]
    return shape[0], math.prod(shape[1:])


_BITS = r"int([2-8])(?::g(\d+))?(:f16)?"


def parse_candidate(text: str) -> Candidate:
    """The :class:`Candidate` a spelling names (see the module docstring).

    Raises
    ------
    ValueError
        An unknown spelling, or parameters out of range.
    """
    if isinstance(text, Candidate):
        return text
    if not isinstance(text, str):
        raise TypeError(f"a candidate is a string such as 'int4:g32' or 'pal16', got {text!r}")
    spec = text.strip().lower()
    if spec in ("float32", "keep"):
        return Candidate("keep")
    if spec in ("float16", "fp16"):
        return Candidate("float16")
    match = re.fullmatch(_BITS, spec)
    if match:
        return Candidate("int", bits=int(match[1]), group_size=_group(match[2], text), scale_dtype=_scales(match[3]))
    match = re.fullmatch("gptq" + _BITS[3:], spec)
    if match:
        return Candidate("gptq", bits=int(match[1]), group_size=_group(match[2], text), scale_dtype=_scales(match[3]))
    match = re.fullmatch(r"pal(\d+)(?::(g\d+|tensor|channel))?", spec)
    if match:
        k = int(match[1])
        if not 2 <= k <= 65536:
            raise ValueError(f"candidate {text!r}: a palette needs 2..65536 colours")
        tail = match[2] or "channel"
        if tail.startswith("g"):
            return Candidate("palette", n_clusters=k, palette="group", group_size=_group(tail[1:], text))
        return Candidate("palette", n_clusters=k, palette=tail)
    match = re.fullmatch(r"(\d+):(\d+)\+" + _BITS, spec)
    if match:
        n, m = int(match[1]), int(match[2])
        if not 1 <= n < m:
            raise ValueError(f"candidate {text!r}: N:M sparsity needs 1 <= N < M")
        return Candidate("nm_int", n=n, m=m, bits=int(match[3]), group_size=_group(match[4], text),
                         scale_dtype=_scales(match[5]))
    match = re.fullmatch(r"sparse([0-9.]+)\+" + _BITS, spec)
    if match:
        sparsity = float(match[1])
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"candidate {text!r}: sparsity must be in (0, 1)")
        return Candidate("sparse_int", sparsity=sparsity, bits=int(match[2]), group_size=_group(match[3], text),
                         scale_dtype=_scales(match[4]))
    match = re.fullmatch(r"low_?rank([0-9.]+)", spec)
    if match:
        ratio = float(match[1])
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"candidate {text!r}: the low-rank ratio must be in (0, 1)")
        return Candidate("low_rank", ratio=ratio)
    raise ValueError(f"unknown candidate {text!r}; expected e.g. float16, int8, int4:g32, int4:f16, gptq4, pal16, pal16:g4, "
                     "2:4+int8, sparse0.5+int8, lowrank0.5")


def _scales(suffix: Optional[str]) -> str:
    return "float16" if suffix else "float32"


def _group(text: Optional[str], spec: str) -> Optional[int]:
    if text is None:
        return None
    value = int(text)
    if value < 1:
        raise ValueError(f"candidate {spec!r}: the group size must be >= 1")
    return value


DEFAULT_SPELLINGS = (
    "float32", "float16",
    "int8", "int6", "int5", "int4", "int3",
    "int8:g32", "int6:g32", "int5:g32", "int4:g32", "int3:g32", "int4:g128", "int3:g128",
    "pal16", "pal8", "pal4", "pal16:g4", "pal256:tensor",
    "2:4+int8", "2:4+int4", "sparse0.5+int8",
    "lowrank0.5", "lowrank0.25",
)


def default_candidates(names: Optional[Iterable[str]] = None) -> list[Candidate]:
    """The planner's default set (or the given spellings), parsed: int8/6/5/4/3
    per channel and in groups, palettes per channel, per group of channels and
    per tensor, N:M and unstructured sparsity + quantization, low-rank ratios,
    float16, and float32 (keep)."""
    return [parse_candidate(name) for name in (DEFAULT_SPELLINGS if names is None else names)]
