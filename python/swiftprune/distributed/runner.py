"""``compress_sharded``: a recipe over a sharded checkpoint, in bounded memory.

The coordinator (this process) plans one job per input shard. Model-scope
stages first run their statistics passes (:mod:`.two_pass`); then the output
pass writes every job's tensors as parts into a staging folder beside the
destination, ``.{prefix}.swiftprune-staging/``, each part complete and
checksummed, with a manifest per finished job. At the end the parts are
renamed to ``{prefix}-NNNNN-of-NNNNN.safetensors``, the index is written
(atomically, last) and the staging folder removed.

A job that fails or is interrupted leaves no partial shard: parts appear
only complete (atomic renames), temporary files die with their writer, and a
later run removes any a killed process left. ``resume=True`` reuses the jobs
whose manifest matches this run (same recipe, options, input shard size and
modification time) and whose parts' SHA-256 still match.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Sequence

import numpy as np

from .. import _core
from .._progress import byte_bar
from .._version import __version__
from ..io import PathLike, SafetensorsFile, SafetensorsWriter, atomic_path, header_size_estimate, save_weights
from ..compressed_file import _json_default
from ..compressed_schema import dense_row, document_text, parse_document
from ..recipe import check_patterns as _check_patterns
from ..recipe import load_recipe
from ..report import Report
from .checkpoint import ShardedCheckpoint, is_sharded_path
from .executors import Executor, make_executor
from .jobs import JobSpec
from .layout import DEFAULT_MAX_SHARD_SIZE, destination_layout, parse_size, shard_name, stale_shards, write_index
from .parts import raw_bytes, sha256_of
from .two_pass import TwoPassPlan, two_pass_plan

__all__ = ["compress_sharded"]

_FINALIZE = "finalize.json"


def _recipe_text(recipe: Any) -> str:
    """A canonical text of the recipe for the resume fingerprint (a file: its contents)."""
    if isinstance(recipe, (str, os.PathLike)):
        with open(os.fspath(recipe), encoding="utf-8") as f:
            return f.read()
    return json.dumps(recipe, sort_keys=True, default=repr)


def _plan_text(plans: dict[int, TwoPassPlan]) -> str:
    return json.dumps({str(i): vars(plan) for i, plan in sorted(plans.items())}, sort_keys=True, default=repr)


def _fingerprint(spec: JobSpec, shared: str) -> str:
    stat = os.stat(spec.shard)
    text = json.dumps({"shared": shared, "shard": os.path.basename(spec.shard), "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, "names": spec.names})
    return hashlib.sha256(text.encode()).hexdigest()


def _manifest_path(staging: str, index: int) -> str:
    return os.path.join(staging, f"job-{index:05d}.json")


def _write_json(path: str, document: Any) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(document, f, default=_json_default)


def _valid_manifest(staging: str, index: int, fingerprint: str) -> dict[str, Any] | None:
    """The manifest of a finished job if it matches this run and its parts' checksums, else None."""
    try:
        with open(_manifest_path(staging, index), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    for part in manifest.get("parts", []):
        path = os.path.join(staging, part["file"])
        if not os.path.isfile(path) or sha256_of(path) != part["sha256"]:
            return None
    return manifest


def _undo_finalize(staging: str, directory: str) -> None:
    """A run killed while renaming parts into place: move them back to the staging folder."""
    path = os.path.join(staging, _FINALIZE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        moves = json.load(f)
    for staged, final in moves:
        staged_path, final_path = os.path.join(staging, staged), os.path.join(directory, final)
        if not os.path.exists(staged_path) and os.path.exists(final_path):
            os.replace(final_path, staged_path)
    os.unlink(path)


def _clean_staging(staging: str, keep: set[str]) -> None:
    """Removes everything in the staging folder but ``keep`` (temporary files of a killed run, stale parts)."""
    for entry in os.listdir(staging):
        if entry not in keep:
            path = os.path.join(staging, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _run_statistics(plan: TwoPassPlan, stage_index: int, checkpoint: ShardedCheckpoint, jobs: list[JobSpec],
                    executor: Executor, bar: Any, selected: set[str]) -> None:
    """Statistics passes for one model-scope stage until its plan is complete."""
    while not plan.complete:
        specs = []
        for job in jobs:
            wanted = [n for n in job.names if n in selected and plan.needs(n)]
            if not wanted:
                continue
            specs.append(JobSpec(job.index, job.shard, job.names, job.recipe, {**job.plans, stage_index: plan},
                                 stats_stage=stage_index, nbytes=sum(checkpoint.nbytes(n) for n in wanted)))
        bar.total = (bar.total or 0) + sum(s.nbytes for s in specs)
        bar.refresh()
        collected: dict[str, Any] = {}
        for _, result in executor.run(specs, bar.update):
            collected.update(result["stats"])
        order = [n for n in checkpoint.names if n in collected]
        plan.merge([(name, collected[name]) for name in order])
        for job in jobs:
            job.plans = {**job.plans, stage_index: plan}


def _merge_into_file(parts: list[str], destination: str, compressed: bool) -> None:
    """Copies the tensors of the parts, in order, into one safetensors file (raw bytes, dtypes kept)."""
    opened = [SafetensorsFile(p) for p in parts]
    ndims = {n: len(f.shape(n)) for f in opened for n in f.names}
    layout: list[Any] = []
    rows: list[Any] = []
    container = "mapping"
    for f in opened:
        if compressed:
            document = parse_document(f.metadata["swiftprune"], set(f.names),
                                      describe=lambda name, f=f: dense_row(name, f[name]))
            layout.extend(document["tensors"])
            rows.extend(document["report"])
            container = document.get("container", container)
    reserve = header_size_estimate(ndims) + (len(json.dumps(layout)) + len(json.dumps(rows)) + 4096 if compressed else 0)
    with SafetensorsWriter(destination, header_reserve=min(reserve, 100_000_000)) as writer:
        for f in opened:
            for name in f.names:
                _core.safetensors_writer_add(writer._handle, name, f.dtype_name(name), f.shape(name), raw_bytes(f, name))
                f.release(name)
        if compressed:
            writer.set_metadata("swiftprune", document_text(container, layout, rows, default=_json_default))


def compress_sharded(source: PathLike, destination: PathLike, recipe: Any, *, dense: bool | None = None,
                     max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE, workers: int = 1, backend: str = "local",
                     scheduler: Any = None, resume: bool = False, progress: bool = True) -> Report:
    """Compresses a sharded checkpoint (or into one), one tensor at a time per worker.

    Parameters
    ----------
    source : str or os.PathLike
        A checkpoint folder, its ``*.safetensors.index.json``, or one
        ``.safetensors`` file.
    destination : str or os.PathLike
        A folder or an ``*.safetensors.index.json`` path (sharded output:
        ``{prefix}-NNNNN-of-NNNNN.safetensors`` plus the index), or a single
        ``.safetensors`` / ``.npz`` / ``.h5`` file.
    recipe : list of mappings, or a YAML/JSON path
        As for :func:`~swiftprune.compress`.
    dense : bool, optional
        Plain tensors in the source's dtype (F16 stays F16, BF16 stays BF16,
        rounded to nearest even) instead of the compressed form. Default:
        compressed, except for ``.npz`` / ``.h5`` destinations.
    max_shard_size : int or str, default "5GB"
        The most tensor bytes per output shard (``"5GB"`` = 5·10^9,
        ``"2GiB"`` = 2^31); a larger single tensor gets a shard of its own.
    workers : int, default 1
        Local worker processes (``backend="local"``); each holds one tensor
        and its outputs at a time.
    backend : {"local", "dask"}
        ``"dask"`` runs the jobs on a ``dask.distributed`` cluster whose
        workers see the same paths (needs ``pip install "swiftprune[dask]"``).
    scheduler : str or distributed.Client, optional
        The Dask scheduler address or client (default: the current client).
    resume : bool, default False
        Reuse the finished jobs of an interrupted run into the same
        destination when their checksums match.
    progress : bool, default True
        One progress bar over the bytes read, with throughput.

    Returns
    -------
    Report
        One row per tensor, in checkpoint order.
    """
    if backend not in ("local", "dask"):
        raise ValueError(f"backend must be 'local' or 'dask', got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    limit = parse_size(max_shard_size)
    stages = load_recipe(recipe)
    recipe_payload = os.path.abspath(os.fspath(recipe)) if isinstance(recipe, (str, os.PathLike)) else list(recipe)
    checkpoint = ShardedCheckpoint(source)
    for shard in checkpoint.shards:
        if "swiftprune" in checkpoint._open(shard).metadata:
            raise ValueError(f"{shard} is already a swiftprune compressed file; compress the original weights")
    names = checkpoint.names
    _check_patterns(stages, names)

    sharded_out = is_sharded_path(destination, destination=True)
    target = os.fspath(destination)
    if sharded_out:
        directory, index_name, prefix = destination_layout(destination)
        compressed = not dense if dense is not None else True
    else:
        lower = target.lower()
        if not lower.endswith((".safetensors", ".npz", ".h5", ".hdf5")):
            raise ValueError(f"cannot tell the weight-file format of {target!r}: use a folder, an .index.json, "
                             "or a .safetensors, .npz or .h5 file name")
        if dense is False and not lower.endswith(".safetensors"):
            raise ValueError(f"the compressed form is saved as .safetensors; {target!r} can only take dense=True")
        compressed = (not dense if dense is not None else True) and lower.endswith(".safetensors")
        if max_shard_size != DEFAULT_MAX_SHARD_SIZE:
            raise ValueError(f"max_shard_size is for a sharded destination (a folder or an .index.json), not {target!r}")
        directory = os.path.dirname(os.path.abspath(target))
        prefix, index_name = os.path.basename(target), ""
        limit = 1 << 62  # one part per job; merged at the end
    os.makedirs(directory, exist_ok=True)
    if any(os.path.dirname(os.path.abspath(s)) == directory for s in checkpoint.shards) and sharded_out:
        raise ValueError(f"the destination folder {directory} holds the source shards; write to another folder")

    # Jobs: one per input shard, in checkpoint order.
    jobs: list[JobSpec] = []
    for index, shard in enumerate(checkpoint.shards):
        shard_names = checkpoint.names_in(shard)
        jobs.append(JobSpec(index, shard, shard_names, recipe_payload, {}, staging="", stem=f"job-{index:05d}",
                            max_shard_size=limit, compressed=compressed,
                            ndims={n: len(checkpoint.shape(n)) for n in shard_names},
                            nbytes=sum(checkpoint.nbytes(n) for n in shard_names)))

    staging = os.path.join(directory, f".{prefix}.swiftprune-staging")
    bar = byte_bar(total=sum(j.nbytes for j in jobs), description="compress", enabled=progress)
    executor = make_executor(backend, workers, scheduler)
    written_this_run = False
    try:
        # Statistics passes of the model-scope stages, in recipe order.
        for stage in stages:
            if stage.method.scope != "model":
                continue
            plan = two_pass_plan(stage.stage, stage.method.name, stage.options, stage.where)
            selected = {n for n in names if stage.selects(n, checkpoint.shape(n), _info_dtype(checkpoint, n))}
            _run_statistics(plan, stage.index, checkpoint, jobs, executor, bar, selected)

        # Output pass.
        shared = json.dumps({"version": __version__, "recipe": _recipe_text(recipe), "compressed": compressed,
                             "max_shard_size": limit, "plans": _plan_text(jobs[0].plans if jobs else {})})
        if os.path.isdir(staging) and resume:
            _undo_finalize(staging, directory)
        elif os.path.isdir(staging):
            shutil.rmtree(staging)
        os.makedirs(staging, exist_ok=True)
        manifests: dict[int, dict[str, Any]] = {}
        todo: list[JobSpec] = []
        for job in jobs:
            job.staging = staging
            fingerprint = _fingerprint(job, shared)
            manifest = _valid_manifest(staging, job.index, fingerprint) if resume else None
            if manifest is None:
                todo.append(job)
            else:
                manifests[job.index] = manifest
                bar.update(job.nbytes)
        if index_name:  # an index's temporary file, left by a run killed while writing it
            for entry in os.listdir(directory):
                if entry.startswith(f".{index_name}.") and entry.endswith(".tmp"):
                    os.unlink(os.path.join(directory, entry))
        keep = {os.path.basename(_manifest_path(staging, i)) for i in manifests}
        keep |= {part["file"] for m in manifests.values() for part in m["parts"]}
        _clean_staging(staging, keep)
        for job, result in executor.run(todo, bar.update):
            manifest = {"fingerprint": _fingerprint(job, shared), "job": job.index, "shard": job.shard,
                        "parts": result["parts"], "rows": result["rows"]}
            _write_json(_manifest_path(staging, job.index), manifest)
            manifests[job.index] = manifest
            written_this_run = True
    except BaseException:
        bar.close()
        executor.close()
        if os.path.isdir(staging) and not written_this_run and not resume:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    executor.close()
    bar.close()

    rows = Report()
    parts: list[tuple[str, dict[str, Any]]] = []
    for job in jobs:
        manifest = manifests[job.index]
        for row in manifest["rows"]:
            rows.append(dict(row, shape=tuple(row["shape"])))
        parts.extend((os.path.join(staging, p["file"]), p) for p in manifest["parts"])

    if sharded_out:
        _finalize_sharded(staging, directory, index_name, prefix, parts, rows, compressed)
    elif compressed or target.lower().endswith(".safetensors"):
        _merge_into_file([p for p, _ in parts], target, compressed)
    else:
        merged = {}
        for path, _ in parts:
            opened = SafetensorsFile(path)
            merged.update({n: opened[n] for n in opened.names})
        save_weights(target, merged)
    shutil.rmtree(staging, ignore_errors=True)
    return rows


def _info_dtype(checkpoint: ShardedCheckpoint, name: str) -> np.dtype:
    """The dtype stage selection sees (as ``compress`` sees a safetensors file): float32 for any float."""
    return np.dtype(np.float32) if checkpoint.is_float(name) else np.dtype(np.int8)


def _finalize_sharded(staging: str, directory: str, index_name: str, prefix: str,
                      parts: Sequence[tuple[str, dict[str, Any]]], rows: Report, compressed: bool) -> None:
    """Renames the staged parts to their final shard names and writes the index last."""
    count = len(parts)
    moves = [(os.path.basename(path), shard_name(prefix, i + 1, count)) for i, (path, _) in enumerate(parts)]
    _write_json(os.path.join(staging, _FINALIZE), moves)
    weight_map: dict[str, str] = {}
    checksums: dict[str, str] = {}
    total = 0
    for (staged, final), (_, part) in zip(moves, parts):
        os.replace(os.path.join(staging, staged), os.path.join(directory, final))
        for key in part["keys"]:
            weight_map[key] = final
        checksums[final] = part["sha256"]
        total += int(part["bytes"])
    for stale in stale_shards(directory, prefix, {final for _, final in moves}):
        os.unlink(stale)
    extra = {"swiftprune": {"format_version": 1, "swiftprune_version": __version__,
                            "form": "compressed" if compressed else "dense", "sha256": checksums,
                            "report": json.loads(json.dumps(list(rows), default=_json_default))}}
    write_index(os.path.join(directory, index_name), weight_map, total, extra)

