"""The unit of work: one input shard, in one process (local worker or Dask worker).

A job opens its shard from the (shared) path, runs the recipe's stages on
each of its tensors in order — tensor-scope stages as ``compress`` does,
model-scope stages through their completed :class:`~.two_pass.TwoPassPlan`
— and either returns statistics for a plan (a statistics pass) or writes
its finished tensors as parts (the output pass). Only one tensor (and its
outputs) is in memory at a time; its pages of the mapped shard are released
as soon as it is done.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..io import _SAFETENSORS_TO_NUMPY, SafetensorsFile
from ..model import _info_getter
from ..pipeline import Track as _Track
from ..pipeline import _apply, _check_order, _finish, run_tensor_stages
from ..recipe import load_recipe
from ..report import report_row as _report_row
from .parts import PartWriter, dense_output, raw_bytes
from .read_ahead import read_ahead
from .two_pass import TwoPassPlan

__all__ = ["JobSpec", "run_job", "set_progress_sink"]

_NUMPY_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}

# Where a worker reports the input bytes it has finished, as (job index, bytes)
# (set by the pool initializer: a queue's put, or a callable in this process).
_progress_sink: Callable[[tuple[int, int, int]], None] | None = None


def set_progress_sink(sink: Any) -> None:
    """Installs the per-process progress sink: a callable taking ``(run, job index, bytes)``,
    or a queue (its ``put`` is called with that triple)."""
    global _progress_sink
    _progress_sink = sink if callable(sink) or sink is None else sink.put


@dataclass
class JobSpec:
    """One job: a shard and what to do with it (picklable, sent to workers)."""

    index: int
    shard: str
    names: list[str]
    recipe: list[Any]
    plans: dict[int, TwoPassPlan]
    stats_stage: int | None = None              # a statistics pass for this stage; None: the output pass
    staging: str = ""
    stem: str = ""
    max_shard_size: int = 0
    compressed: bool = False
    ndims: dict[str, int] = field(default_factory=dict)
    nbytes: int = 0                             # input bytes the job reads (progress)
    run: int = 0                                # which executor run sent a progress message (stale ones are dropped)


def _buffer(file: SafetensorsFile, name: str) -> Any:
    """Room for the stored bytes of a tensor whose read can fill it (see :func:`_read`), else None."""
    dtype_name = file.dtype_name(name)
    if file.mmap or (dtype_name != "BF16" and dtype_name not in _SAFETENSORS_TO_NUMPY):
        return None
    if dtype_name == "BF16" and importlib.util.find_spec("ml_dtypes") is None:
        return None  # (read widened to float32 by file[name])
    return np.empty(file.nbytes(name), dtype=np.uint8)


def _read(file: SafetensorsFile, name: str, buffer: Any = None) -> Any:
    """The tensor as the pipeline's original: a BF16 tensor stays a zero-copy
    ``ml_dtypes.bfloat16`` view of the mapping when ml_dtypes is installed
    (its float32 copy is made once, by the first stage), otherwise the
    widened float32 copy :class:`SafetensorsFile` gives. Values, masks and
    report numbers are the same either way; the view saves a float32 copy
    of the largest tensor per worker."""
    dtype_name = file.dtype_name(name)
    if dtype_name == "BF16":
        try:
            import ml_dtypes
        except ImportError:
            return file[name]
        return file.raw_bytes(name, buffer).view(ml_dtypes.bfloat16).reshape(file.shape(name))
    if buffer is not None and dtype_name in _SAFETENSORS_TO_NUMPY:  # (file[name], read into the buffer)
        return file.raw_bytes(name, buffer).view(_SAFETENSORS_TO_NUMPY[dtype_name]).reshape(file.shape(name))
    return file[name]


def _planned(stage: Any, track: _Track, plan: TwoPassPlan) -> None:
    """Runs a model-scope stage on one tensor through its completed plan."""
    _check_order(stage, track)
    try:
        output = plan.apply(track.name, track.weights())
    except (TypeError, ValueError) as error:
        raise type(error)(f"{stage.where} on tensor {track.name!r}: {error}") from None
    _finish(stage, track, output)


def _run_stages(stages: list[Any], selected: dict[int, set[str]], plans: dict[int, TwoPassPlan],
                track: _Track, *, fused: bool = False) -> None:
    chosen = [stage for stage in stages if track.name in selected[stage.index]]
    if fused and all(stage.method.scope == "tensor" for stage in chosen):
        run_tensor_stages(chosen, track, fused=True)  # (the fused pass when the recipe is its shape)
        return
    for stage in stages:
        if track.name not in selected[stage.index]:
            continue
        if stage.method.scope == "model":
            _planned(stage, track, plans[stage.index])
        else:
            _apply(stage, [track])


def _honest_row(track: _Track, file: SafetensorsFile) -> dict[str, Any]:
    """The report row, with the stored dtype and size of the source (a BF16
    tensor is read widened to float32, but it is 2 bytes per entry on disk)."""
    row = _report_row(track)
    dtype_name = file.dtype_name(track.name)
    stored = file.nbytes(track.name)
    row["dtype"] = _NUMPY_NAMES.get(dtype_name, row["dtype"])
    row["bytes_before"] = stored
    if track.form is None:
        row["bytes_after"] = stored
    row["bits"] = row["bytes_after"] * 8 / row["params"] if row["params"] else 0.0
    return row


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Runs one job; returns ``{"stats": [(name, summary), ...]}`` for a
    statistics pass, ``{"parts": [...], "rows": [...]}`` for the output pass."""
    stages = load_recipe(spec.recipe)
    file = SafetensorsFile(spec.shard)
    info = _info_getter(file, file.__getitem__)
    missing = [name for name in spec.names if name not in file]
    if missing:
        raise ValueError(f"{spec.shard}: tensor {missing[0]!r} is not in this shard (changed since the job was planned?)")
    limit = len(stages) if spec.stats_stage is None else spec.stats_stage
    selected = {stage.index: {n for n in spec.names if stage.selects(n, *info(n))} for stage in stages[:limit + 1]}
    sink = _progress_sink
    if spec.stats_stage is not None:
        stage = stages[spec.stats_stage]
        plan = spec.plans[spec.stats_stage]
        stats: list[tuple[str, Any]] = []
        for name in spec.names:
            if name not in selected[stage.index] or not plan.needs(name):
                continue
            track = _Track(name, _read(file, name))
            _run_stages(stages[:spec.stats_stage], selected, spec.plans, track)
            _check_order(stage, track)
            try:
                stats.append((name, plan.statistics(name, track.weights())))
            except (TypeError, ValueError) as error:
                raise type(error)(f"{stage.where}: {error}") from None
            file.release(name)
            if sink is not None:
                sink((spec.run, spec.index, file.nbytes(name)))
        return {"stats": stats}

    writer = PartWriter(spec.staging, spec.stem, spec.max_shard_size, compressed=spec.compressed,
                        container="mapping", ndims=spec.ndims)
    rows: list[dict[str, Any]] = []
    try:
        for name, original in read_ahead(spec.names, lambda n, buffer: _read(file, n, buffer),
                                         allocate=lambda n: _buffer(file, n)):
            track = _Track(name, original)
            del original
            _run_stages(stages, selected, spec.plans, track, fused=spec.compressed)
            row = _honest_row(track, file)
            rows.append(row)
            dtype_name, shape = file.dtype_name(name), file.shape(name)
            if track.form is None:
                writer.add_dense(name, dtype_name, shape, raw_bytes(file, name), row)
            elif spec.compressed:
                writer.add_form(name, track.form, track.keep_mask, row)
            else:
                out_dtype, values = dense_output(track.dense, dtype_name)
                writer.add_dense(name, out_dtype, shape, values, row)
            del track
            file.release(name)
            if sink is not None:
                sink((spec.run, spec.index, file.nbytes(name)))
        parts = writer.finish()
    except BaseException:
        writer.discard()
        raise
    return {"parts": parts, "rows": rows}
