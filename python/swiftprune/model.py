"""Whole models: :func:`compress` runs a recipe over a model's weights,
:func:`compress_file` streams a weight file through it, and
:func:`load_compressed` reads a compressed file back.

Recipes are described in :mod:`swiftprune.recipe`; the stages run in
:mod:`swiftprune.pipeline`; the report is :mod:`swiftprune.report`; the
compressed file format is :mod:`swiftprune.compressed_file`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import _methods  # noqa: F401  (registers the built-in operations and codecs)
from .compressed_file import CompressedWriter, read_compressed
from .io import (PathLike, SafetensorsFile, SafetensorsWriter, _safetensors_dtype, exact_header_reserve, load_weights,
                 save_weights, weight_format)
from .pipeline import Track, run_stages
from .pruned_tensor import PrunedTensor
from .recipe import check_patterns, load_recipe
from .registry import (REQUIRED, Codec, Method, OptionError, available_methods, register_codec,
                       register_method)
from .report import Report, human_bytes, report_row

__all__ = [
    "compress",
    "compress_file",
    "load_compressed",
    "load_recipe",
    "CompressionResult",
    "Report",
    "PrunedTensor",
    "register_method",
    "register_codec",
    "available_methods",
    "Method",
    "Codec",
    "OptionError",
    "REQUIRED",
]


@dataclass
class CompressionResult:
    """What :func:`compress` returns.

    Attributes
    ----------
    weights : dict, list or tuple of numpy.ndarray
        The same kind of container as the input, with dense float32 arrays
        for compressed tensors (ready for ``set_weights`` /
        ``load_state_dict``) and the input arrays, unchanged, for the others.
    tensors : dict of str to object
        Per name, the compressed form (``PrunedTensor``, ``QuantizedTensor``,
        ...) or the original array for tensors no stage touched. Sequence
        inputs are named ``"0"``, ``"1"``, ...
    masks : dict of str to numpy.ndarray
        Keep-masks stored with a value encoding that cannot hold the pruned
        zeros itself (re-applied, so pruned entries stay exactly zero).
        Empty for the built-in quantize and cluster stages, which keep them.
    report : Report
        One row per tensor; ``report.summary()`` is a table.
    scaling : dict of str to str
        With AWQ / SmoothQuant stages: per layer weight they select, where its
        inverse input scale was folded (``"scaled; 1/s folded into
        LayerNormalization 'ln' (alpha=0.35)"``) or why it was not scaled
        (``"not scaled: its input 'h' also feeds Add 'add' ..."``). The
        tensors that absorbed ``1/s`` are in ``weights`` / ``tensors`` with
        their new values (the report's stages say ``absorbs-scale``).
    inserted_scales : list of InsertedScale
        With ``insert_scale: true``: the ``Mul`` ops by ``1/s`` to insert
        before layers whose input no op could absorb it
        (:class:`~swiftprune.activation_folding.InsertedScale`).
        :func:`~swiftprune.export.onnx.to_onnx` inserts them; ``tensors``
        holds those layers' scaled quantized weights ``Q(W·s)``, ``weights``
        their effective dense weights ``Q(W·s)·diag(1/s)``.
    input_rotations : dict of str to RotatedLayer
        With ``rotate_input: hadamard``: per layer weight, the rotation ``R``
        its input needs at run time (``x ↦ x R`` before the layer) and the
        weight's layout (:class:`~swiftprune.online_rotation.RotatedLayer`).
        :func:`~swiftprune.export.onnx.to_onnx` inserts it; ``tensors`` holds
        those layers' quantized rotated weights ``Q(W R)`` (``Q(Rᵀ K)`` for
        an ``(in, out)`` kernel), ``weights`` the equivalent dense weights
        for unrotated inputs, ``Q(W R) Rᵀ`` (a correct model by themselves,
        but no longer low-bit on a grid).
    """

    weights: Any
    tensors: dict[str, Any]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    container: str = "mapping"
    scaling: dict[str, str] = field(default_factory=dict)
    inserted_scales: list = field(default_factory=list)
    input_rotations: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        t = self.report.totals
        stages = sorted({r["stages"] for r in self.report if r.get("stages")})
        return (f"CompressionResult({len(self.tensors)} tensors in a {self.container}, "
                f"{human_bytes(t['bytes_before'])} -> {human_bytes(t['bytes_after'])}, ratio {t['ratio']:.2f}x, "
                f"stages={stages})")

    def check_no_inserted_ops(self, target: str) -> None:
        """Raises ``ValueError`` when the result needs ops inserted into the model
        (``insert_scale``'s Muls, ``rotate_input``'s rotations), which `target`
        (a format holding weights only, e.g. ``"a Keras model"``) cannot hold."""
        if self.inserted_scales:
            ops = f"Mul ops (insert_scale: on {', '.join(repr(i.tensor) for i in self.inserted_scales[:3])})"
        elif self.input_rotations:
            ops = f"Hadamard rotations (rotate_input: on {', '.join(repr(n) for n in list(self.input_rotations)[:3])})"
        else:
            return
        raise ValueError(f"this result needs {ops} inserted before some layers, which {target} cannot hold: write it "
                         "into the model with swiftprune.export.onnx.to_onnx(model, 'out.onnx', result) (CLI: -o "
                         "out.onnx), or save the effective dense weights with save_weights(path, result.weights)")

    def summary(self) -> str:
        """The report as a text table (see :meth:`Report.summary`)."""
        return self.report.summary()

    def save(self, path: PathLike) -> int:
        """Writes the compressed forms to a ``.safetensors`` file, atomically,
        and returns the size of the file written, in bytes.

        Packed values, scales, zero points, masks and factors are stored as
        tensors named ``"<tensor>::<part>"``; metadata key ``"swiftprune"``
        holds the layout and the report. :func:`load_compressed` restores it.
        The stored parts take exactly ``report.totals["bytes_after"]`` bytes;
        the rest of the file is its JSON header (padded only to the 8-byte
        alignment of the data). For plain dense weights use
        ``save_weights(path, result.weights)``.
        """
        path = os.fspath(path)
        if not path.lower().endswith(".safetensors"):
            raise ValueError(f"compressed results are saved as .safetensors, got {path!r}; "
                             "for dense weights in another format use save_weights(path, result.weights)")
        self.check_no_inserted_ops("a compressed .safetensors")
        ndims = {name: np.ndim(form) if isinstance(form, np.ndarray) else len(getattr(form, "shape", ()))
                 for name, form in self.tensors.items()}
        with CompressedWriter(path, self.container, ndims) as writer:
            for name, form in self.tensors.items():
                writer.add(name, form, self.masks.get(name))
            writer.report = list(self.report)
        return os.path.getsize(path)


def _container_of(weights: Any) -> tuple[str, list[str], Callable[[str], np.ndarray]]:
    if isinstance(weights, SafetensorsFile):
        return "mapping", weights.names, weights.__getitem__
    if isinstance(weights, Mapping):
        arrays: dict[str, np.ndarray] = {}
        for name, value in weights.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"weight names must be non-empty strings, got {name!r}")
            arrays[name] = np.asarray(value)
        return "mapping", list(arrays), arrays.__getitem__
    if isinstance(weights, (list, tuple)):
        arrays = {str(i): np.asarray(value) for i, value in enumerate(weights)}
        return "sequence", list(arrays), arrays.__getitem__
    raise TypeError("weights must be a mapping name -> array (a state_dict, load_weights(path)) or a list of "
                    f"arrays (Keras get_weights()), got {type(weights).__name__}")


def _info_getter(weights: Any, get: Callable[[str], np.ndarray]) -> Callable[[str], tuple[tuple[int, ...], np.dtype]]:
    if isinstance(weights, SafetensorsFile):
        def info(name: str) -> tuple[tuple[int, ...], np.dtype]:
            kind = weights.dtype_name(name)
            dtype = np.dtype(np.float32) if kind in ("F16", "F32", "F64", "BF16", "F8_E4M3", "F8_E5M2") else np.dtype(np.int8)
            return weights.shape(name), dtype
        return info
    return lambda name: (get(name).shape, get(name).dtype)


def _calibration_source(calibration: Any) -> Any:
    """``compress(calibration=...)`` as a Calibration (or None)."""
    if calibration is None:
        return None
    from .calibration import Calibration, from_arrays, load_calibration

    if isinstance(calibration, Calibration):
        return calibration
    if isinstance(calibration, (str, os.PathLike)):
        return load_calibration(calibration)
    if isinstance(calibration, Mapping):
        return from_arrays(calibration)
    raise TypeError("calibration must be a swiftprune.calibration.Calibration, a mapping layer -> (samples, in) "
                    f"array, or a .npz path, got {type(calibration).__name__}")


def compress(weights: Any, recipe: Any, progress: bool = True, *, calibration: Any = None) -> CompressionResult:
    """Compresses a whole model's weights with a recipe of stages.

    Parameters
    ----------
    weights : mapping of str to array_like, or list/tuple of array_like
        A PyTorch ``state_dict`` converted to NumPy, ``load_weights(path)``
        (or a :class:`~swiftprune.io.SafetensorsFile`), a Keras
        ``get_weights()`` list, ... Never modified.
    recipe : list of mappings, or str / os.PathLike
        The stages (see the module documentation) or a YAML/JSON file of them.
    progress : bool, default True
        Show a progress bar (tqdm, when installed and stderr is a terminal).
    calibration : Calibration, mapping or str, optional
        Layer inputs for calibrated methods (``gptq``, ``sparsegpt``,
        ``wanda``, ``awq``, ``smoothquant``; the last two need a model
        source, whose graph shows where to fold their scales): a :class:`~swiftprune.calibration.Calibration` (from
        arrays, a Keras or an ONNX model; sequential or independent), a
        mapping ``{layer: (samples, in) array}`` (PyTorch ``(out, in)``
        weights), or the path of an ``.npz`` of either.

    Returns
    -------
    CompressionResult
        ``.weights`` (same container kind as the input), ``.tensors``,
        ``.masks``, ``.report``, ``.summary()``, ``.save(path)``.

    Raises
    ------
    TypeError, ValueError
        A bad container or recipe (the message names the stage and field), or
        a stage failing on a tensor (the message names both).

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> w = {"fc.weight": np.random.default_rng(0).normal(size=(8, 8)), "fc.bias": np.zeros(8)}
    >>> result = sp.compress(w, [{"prune": {"sparsity": 0.75}}], progress=False)
    >>> int(np.count_nonzero(result.weights["fc.weight"]))
    16
    """
    stages = load_recipe(recipe)
    container, names, get = _container_of(weights)
    check_patterns(stages, names)
    calibration = _calibration_source(calibration)
    tracks: list[Track] = []
    # An open file's input pages are let go once each tensor is done (views stay valid).
    release = weights.release if isinstance(weights, SafetensorsFile) else None
    folds, rotations = run_stages(names, get, stages, tracks.append, release=release, show=progress,
                                  info=_info_getter(weights, get), calibration=calibration)
    position = {name: i for i, name in enumerate(names)}
    tracks.sort(key=lambda t: position[t.name])  # a calibration source may have reordered them
    report = Report(report_row(t) for t in tracks)
    dense = [t.dense if t.form is not None else t.original for t in tracks]
    if folds is not None and folds.unfolded:
        # Layers behind an inserted Mul: the dense weights hold Q(W·s)·diag(1/s), a correct model by themselves.
        dense = [folds.model_weight(t.name, d) for t, d in zip(tracks, dense)]
    if rotations is not None:
        # Layers behind an inserted rotation: the dense weights hold Q(W R) Rᵀ, for unrotated inputs.
        dense = [rotations.model_weight(t.name, d) for t, d in zip(tracks, dense)]
    if container == "sequence":
        out: Any = type(weights)(dense) if isinstance(weights, tuple) else dense
    elif isinstance(weights, dict):
        out = type(weights)() if type(weights) is not dict else {}
        try:
            out.update(zip(names, dense))
        except TypeError:
            out = dict(zip(names, dense))
    else:
        out = dict(zip(names, dense))
    tensors = {t.name: (t.form if t.form is not None else t.original) for t in tracks}
    masks = {t.name: t.keep_mask for t in tracks if t.keep_mask is not None}
    return CompressionResult(out, tensors, masks, report, container, dict(folds.notes) if folds is not None else {},
                             list(folds.inserted) if folds is not None else [],
                             dict(rotations.layers) if rotations is not None else {})


def compress_file(source: PathLike, destination: PathLike, recipe: Any, *, dense: bool | None = None,
                  progress: bool = True, workers: int = 1, backend: str = "local", scheduler: Any = None,
                  max_shard_size: int | str | None = None, resume: bool = False,
                  calibration: Any = None) -> Report:
    """Compresses a weight file into another, one tensor at a time.

    A ``.safetensors`` source is memory-mapped and streamed: each tensor is
    read, compressed, written to the destination's spool and dropped from
    memory before the next, so peak memory stays near the largest tensor and
    its outputs, not the whole model. (Stages of model scope, such as a
    global threshold, need every selected tensor at once; an ``.npz`` or
    ``.h5`` destination is written at the end, from outputs held in memory;
    ``.npz`` and ``.h5`` sources are loaded whole.)

    Parameters
    ----------
    source, destination : str or os.PathLike
        Weight files; see :func:`~swiftprune.load_weights` for the formats.
    recipe : list of mappings, or a YAML/JSON path
    dense : bool, optional
        Write dense float weights (any format) instead of the compressed form
        (``.safetensors`` only, readable by :func:`load_compressed`). Default:
        compressed for a ``.safetensors`` destination, dense otherwise.
    progress : bool, default True
    workers, backend, scheduler, max_shard_size, resume
        Sharded checkpoints (a folder or an ``*.safetensors.index.json`` as
        ``source`` or ``destination``) and the options below go through
        :func:`swiftprune.distributed.compress_sharded`: ``workers`` local
        processes or ``backend="dask"`` (with ``scheduler``), output shards of
        at most ``max_shard_size`` bytes (default ``"5GB"``), ``resume`` an
        interrupted job. Model-scope stages then run in streaming passes.
    calibration : optional
        Layer inputs for calibrated methods, as in :func:`compress` (not with
        sharded checkpoints).

    Returns
    -------
    Report
        The per-tensor rows; ``.summary()`` prints the table.
        ``.file_bytes`` is the measured size of the file written. For a
        dense output (``.npz``, ``.h5``, ``dense=True``) ``bytes_after`` is the
        size of each dense array written and ``.dense_output`` is True: the
        compression shows in the nonzeros and the error, not in the bytes.
    """
    from .distributed.checkpoint import is_sharded_path
    if (is_sharded_path(source) or is_sharded_path(destination, destination=True) or workers != 1
            or backend != "local" or scheduler is not None or resume or max_shard_size is not None):
        if calibration is not None:
            raise ValueError("calibrated compression (calibration=...) of sharded checkpoints or with workers is "
                             "not supported yet; compress the model in one process")
        from .distributed.runner import compress_sharded
        extra = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        return compress_sharded(source, destination, recipe, dense=dense, workers=workers, backend=backend,
                                scheduler=scheduler, resume=resume, progress=progress, **extra)
    stages = load_recipe(recipe)
    inserting = next((stage for stage in stages if stage.options.get("insert_scale")), None)
    if inserting is not None:
        raise ValueError(f"{inserting.where}: insert_scale adds Mul ops to the model graph, which a weight file "
                         "cannot hold: use compress(weights, recipe, calibration=source) and "
                         "swiftprune.export.onnx.to_onnx(model, 'out.onnx', result) (CLI: -o out.onnx)")
    rotating = next((stage for stage in stages if stage.rotate_input is not None), None)
    if rotating is not None:
        raise ValueError(f"{rotating.where}: rotate_input adds a Hadamard rotation op before the layers, which a "
                         "weight file cannot hold: use compress(weights, recipe, calibration=source) and "
                         "swiftprune.export.onnx.to_onnx(model, 'out.onnx', result) (CLI: -o out.onnx)")
    destination = os.fspath(destination)
    to_safetensors = destination.lower().endswith(".safetensors")
    weight_format(destination)  # fails early for an unknown format
    if dense is None:
        dense = not to_safetensors
    if not dense and not to_safetensors:
        raise ValueError(f"the compressed form is saved as .safetensors; {destination!r} can only take dense=True")
    source_file: Any = SafetensorsFile(source) if weight_format(source) == "safetensors" else load_weights(source)
    if isinstance(source_file, SafetensorsFile) and "swiftprune" in source_file.metadata:
        raise ValueError(f"{source_file.path} is already a swiftprune compressed file; "
                         "compress load_compressed(path).weights instead")
    container, names, get = _container_of(source_file)
    check_patterns(stages, names)
    calibration = _calibration_source(calibration)
    rows = Report()
    release = source_file.release if isinstance(source_file, SafetensorsFile) else None
    info = _info_getter(source_file, get)
    if to_safetensors:
        ndims = {name: len(info(name)[0]) for name in names}
        writer: Any = (SafetensorsWriter(destination, header_reserve=_dense_header_guess(source_file, names, stages, info))
                       if dense
                       else CompressedWriter(destination, container, ndims))
        with writer:
            written: dict[str, int] = {}

            def emit(track: Track) -> None:
                rows.append(report_row(track))
                if dense:
                    array = np.asarray(track.dense if track.form is not None else track.original)
                    writer.add(track.name, array)
                    written[track.name] = array.nbytes
                else:
                    writer.add(track.name, track.form if track.form is not None else np.asarray(track.original),
                               track.keep_mask)

            run_stages(names, get, stages, emit, release=release, show=progress, info=info, calibration=calibration,
                       fused=not dense)
            if dense:
                _as_dense_rows(rows, written)
            else:
                writer.report = list(rows)
        rows.file_bytes = os.path.getsize(destination)
        return rows
    collected: dict[str, np.ndarray] = {}

    def collect(track: Track) -> None:
        rows.append(report_row(track))
        collected[track.name] = track.dense if track.form is not None else track.original

    run_stages(names, get, stages, collect, release=release, show=progress, info=info, calibration=calibration)
    save_weights(destination, collected)
    _as_dense_rows(rows, {name: array.nbytes for name, array in collected.items()})
    rows.file_bytes = os.path.getsize(destination)
    return rows


def _dense_header_guess(source: Any, names: Sequence[str], stages: Sequence[Any],
                        info: Callable[[str], tuple[tuple[int, ...], np.dtype]]) -> int:
    """The header of a dense output if every tensor a stage selects comes out float32 and
    the others as read (exact unless a stage skips a tensor; then the writer moves the data once)."""
    entries = []
    for name in names:
        shape, dtype = info(name)
        count = math.prod(shape)
        if any(stage.selects(name, shape, dtype) for stage in stages):
            entries.append((name, "F32", shape, 4 * count))
        elif isinstance(source, SafetensorsFile):
            kind = source.dtype_name(name)
            widened = kind == "BF16"  # read widened to float32
            entries.append((name, "F32" if widened else kind, shape, source.nbytes(name) * (2 if widened else 1)))
        else:
            array = np.asarray(source[name])
            entries.append((name, _safetensors_dtype(name, array)[0], shape, array.nbytes))
    return exact_header_reserve(entries)


def _as_dense_rows(rows: Report, written: Mapping[str, int]) -> None:
    """Report rows of a dense output: ``bytes_after`` is what the dense array written takes."""
    for row in rows:
        after = int(written[row["name"]])
        row["bytes_after"] = after
        row["bits"] = after * 8 / row["params"] if row["params"] else 0.0
    rows.dense_output = True


def load_compressed(path: PathLike) -> CompressionResult:
    """Reads a file written by :meth:`CompressionResult.save` (or
    ``swiftprune compress``) back into a :class:`CompressionResult`; also a
    sharded output folder (or its ``.index.json``), joining its shards.

    The compressed forms, masks and report are exactly those saved;
    ``.weights`` holds their dense float32 reconstruction (and the stored
    arrays for untouched tensors), as a list when a list was compressed.

    Raises
    ------
    ValueError
        The file is not a valid safetensors file, was not written by
        swiftprune (use :func:`~swiftprune.load_weights` for plain weights),
        or stores a compressed type this build does not know.
    """
    from .distributed.checkpoint import is_sharded_path
    if is_sharded_path(path):
        from .distributed.compressed import load_compressed_sharded
        return load_compressed_sharded(path)
    stored = read_compressed(path)
    weights: Any = stored.dense if stored.container == "sequence" else dict(zip(stored.tensors, stored.dense))
    return CompressionResult(weights, stored.tensors, stored.masks, stored.report, stored.container)
