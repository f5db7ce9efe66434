"""The ``swiftprune`` command line (``python -m swiftprune``).

Exit codes: 0 success, 1 failure (bad file, bad recipe, a stage failing),
2 usage error (bad command-line syntax). Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import numpy as np

from . import __version__

EPILOG = """\
examples:
  swiftprune compress model.safetensors -o small.safetensors --prune magnitude:0.8
  swiftprune compress model.safetensors -o small.safetensors --recipe recipe.yaml
  swiftprune compress model.safetensors -o int8.safetensors --quantize int8
  swiftprune compress model.safetensors -o w4.safetensors --prune nm:2:4 --quantize int4:128
  swiftprune compress weights.npz -o pruned.npz --prune 0.5 --include '*kernel*'
  swiftprune compress model.safetensors -o small.safetensors --max-damage 0.01 --candidates int8,int4,pal16
  swiftprune inspect small.safetensors
  swiftprune export small.safetensors --onnx model.onnx -o model.int4.onnx
  swiftprune prune-channels model.keras -o small.keras --amount 0.5 --round-to 8
  swiftprune demo
"""

COMPRESS_EPILOG = """\
A recipe file (YAML or JSON) is a list of stages, e.g.:

  - prune: {method: magnitude, sparsity: 0.8}
    include: ["*.weight"]        # glob patterns (default: every tensor)
    exclude: ["lm_head.*"]
    min_rank: 2                  # 1-D tensors (biases, norms) skipped unless named
  - quantize: {bits: 8, axis: 0}

Flags build the same stages, in the order prune, low-rank, cluster, quantize:
  --prune METHOD:VALUE[:VALUE]  magnitude:0.8 (or just 0.8), global_magnitude:0.8
                                (one threshold over all tensors), random:0.5,
                                structured:0.25 (whole channels along
                                --channel-axis), nm:2:4 (groups along the
                                last axis: PyTorch's inputs; nm:2:4:axis=0
                                for Keras kernels), block:0.5; extra options
                                as key=value, e.g. block:0.5:block=2x4,
                                random:0.5:seed=3
  --quantize intB[:GROUP]       int8, int4:128 (B from 2 to 8); per channel
                                along --channel-axis, in groups of GROUP along
                                the other axis (2-D weights only: pick them
                                with --include); extra options,
                                e.g. int4:128:method=mse, int8:symmetric=false
  --cluster N                   weight sharing with N centroids (pruned entries
                                get a centroid of exactly 0)
  --low-rank KIND:VALUE         energy:0.95, rank:64 or ratio:0.5; conv kernels
                                are flattened per --channel-axis (0: PyTorch,
                                -1: Keras); e.g. energy:0.9:method=svd
  --channel-axis AXIS           the output-channel axis: 0 for PyTorch (out, in)
                                weights (default), -1 for Keras (in, out) kernels

Budgeted compression: --target-ratio R (e.g. --target-ratio 6 --calibration
inputs.npz; or --target-bytes N, --max-damage D)
measures every tensor's sensitivity to every candidate encoding (--candidates;
damage = weight error, or diag(x^T x)-weighted error with --calibration), picks
one encoding per tensor to meet the target, prints the plan, then runs it.
--layout keras|torch says where output channels sit (default: torch, or keras
with --channel-axis -1).

--quantize, --cluster and --low-rank each encode the values: give at most one,
and --low-rank not with --prune (its product is dense). A recipe file can
apply them to different tensors with include/exclude.

A .safetensors output holds the compressed form (packed values, masks,
scales; read it back with swiftprune.load_compressed) unless --dense; .npz
and .weights.h5 outputs hold dense float weights. Large .safetensors inputs
are streamed one tensor at a time.

examples:
  swiftprune compress model.safetensors -o small.safetensors --prune magnitude:0.8
  swiftprune compress model.safetensors -o w4.safetensors --prune nm:2:4 --quantize int4:128
  swiftprune compress model.safetensors -o c16.safetensors --prune 0.5 --cluster 16
  swiftprune compress model.safetensors -o lr.safetensors --low-rank energy:0.95 --exclude 'embed*'
  swiftprune compress keras.weights.h5 -o pruned.weights.h5 --prune 0.5 --channel-axis -1
  swiftprune compress model.safetensors -o q.safetensors --quantize int4:128:method=gptq --calibration x.npz
  swiftprune compress model.onnx -o sparse.safetensors --prune sparsegpt:0.5 --calibration inputs.npz
  swiftprune compress model.onnx -o awq.onnx --quantize int4:128:method=awq --calibration inputs.npz
  swiftprune compress llama/ -o llama-w4/ --prune nm:2:4 --quantize int4:128 --workers 2
  swiftprune compress llama/model.safetensors.index.json -o out/ --prune global_magnitude:0.5 --resume

Calibrated methods (--prune wanda:S, --prune sparsegpt:S or sparsegpt:n=2:m=4,
--quantize intB:GROUP:method=gptq, plus act_order=true, mse=true, ...) need
--calibration: an .npz of each layer's inputs {layer: (samples, in)} (layer =
the weight's name without .weight), or, when IN is an .onnx/.keras model (or
with --model), an .npz of the model's input batches keyed by input name.
AWQ and SmoothQuant (--quantize int4:128:method=awq, int8:method=smoothquant:
alpha=0.5) fold their per-channel scales into the LayerNorm / BatchNorm /
linear layer before each layer, so they need the model: IN an .onnx/.keras
file; -o OUT.onnx / OUT.keras writes the model with the quantized weights and
the adjusted ops (layers with no such op are left as they were, with a warning;
with :insert_scale=true, ONNX only, they get an inserted Mul by 1/s instead: the
way to scale post-LN transformers such as BERT).

Sharded checkpoints: IN may be a folder of .safetensors shards or its
*.safetensors.index.json; OUT a folder (or an .index.json path) gets
model-NNNNN-of-NNNNN.safetensors shards of at most --max-shard-size and the
index, written last. Memory stays near --workers x the largest tensor;
global_magnitude runs in streaming passes, exactly as in memory. An
interrupted run leaves no partial shard; rerun with --resume to keep the
finished ones. On a Dask cluster whose workers see the same paths, add
--scheduler tcp://HOST:8786 (pip install "swiftprune[dask]").
"""

# The option(s) that the positional values of `--prune METHOD:...` fill.
PRUNE_POSITIONAL = {
    "magnitude": ("sparsity",), "random": ("sparsity",), "global_magnitude": ("sparsity",),
    "block": ("sparsity",), "structured": ("amount",), "nm": ("n", "m"),
    "wanda": ("sparsity",), "sparsegpt": ("sparsity",),
}
# Quantize methods whose layout comes from their calibration (no axis option).
CALIBRATED_QUANTIZE = ("gptq", "awq", "smoothquant")


class UsageError(Exception):
    """A command-line syntax error: exit code 2."""


def _number(text: str) -> Any:
    """`text` as an int, a float or (failing both) the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _options(flag: str, parts: Sequence[str], positional: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    free = list(positional)
    for part in parts:
        if "=" in part:
            key, _, value = part.partition("=")
            options[key.strip()] = _number(value.strip())
        elif free:
            options[free.pop(0)] = _number(part)
        else:
            raise UsageError(f"{flag}: unexpected value {part!r}")
    return options


def parse_prune(text: str, axis: int | None = None) -> dict[str, Any]:
    """``magnitude:0.8`` → ``{"method": "magnitude", "sparsity": 0.8}``; a bare
    number means magnitude; ``structured`` prunes along `axis` unless told."""
    parts = [p for p in text.split(":")]
    if isinstance(_number(parts[0]), (int, float)):
        parts.insert(0, "magnitude")
    method, rest = parts[0].strip(), parts[1:]
    if not method:
        raise UsageError(f"--prune: expected METHOD:VALUE such as magnitude:0.8, got {text!r}")
    options = {"method": method, **_options("--prune", rest, PRUNE_POSITIONAL.get(method, ("sparsity",)))}
    if method == "structured" and axis is not None:
        options.setdefault("axis", axis)
    return options


def parse_quantize(text: str, axis: int | None) -> dict[str, Any]:
    """``int8`` → ``{"bits": 8, "axis": axis}``; ``int4:128`` adds ``group_size``."""
    head, *rest = text.split(":")
    if not head.lower().startswith("int") or not head[3:].isdigit():
        raise UsageError(f"--quantize: expected int8, int4 or intB:GROUP, got {text!r}")
    options: dict[str, Any] = {"bits": int(head[3:]), "axis": axis}
    options.update(_options("--quantize", rest, ("group_size",)))
    if options.get("method") in CALIBRATED_QUANTIZE:
        options.pop("axis", None)  # the calibration knows each weight's layout
    if options.get("group_size") in ("none", "None", "null"):
        options["group_size"] = None
    return options


def parse_low_rank(text: str, axis: int | None = None) -> dict[str, Any]:
    """``energy:0.95`` / ``rank:64`` / ``ratio:0.5`` → the matching option; conv
    kernels are flattened as PyTorch's (``axis`` 0) or Keras' (-1) layout."""
    kind, sep, value = text.partition(":")
    if kind not in ("energy", "rank", "ratio") or not sep:
        raise UsageError(f"--low-rank: expected energy:F, rank:N or ratio:F, got {text!r}")
    head, *rest = value.split(":")
    options = {kind: _number(head), **_options("--low-rank", rest, ())}
    if axis in (0, -1):
        options.setdefault("layout", "torch" if axis == 0 else "keras")
    return options


def recipe_from_flags(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The stages that --prune / --low-rank / --cluster / --quantize describe."""
    encodings = [flag for flag, given in (("--low-rank", args.low_rank), ("--cluster", args.cluster is not None),
                                          ("--quantize", args.quantize)) if given]
    if len(encodings) > 1:
        raise UsageError(f"{' and '.join(encodings)} both encode the values of the same tensors; give one "
                         "(a recipe file can apply them to different tensors with include/exclude)")
    if args.prune and args.low_rank:
        raise UsageError("--low-rank cannot keep pruned entries zero; give --prune or --low-rank "
                         "(a recipe file can apply them to different tensors with include/exclude)")
    stages: list[dict[str, Any]] = []
    if args.prune:
        stages.append({"prune": parse_prune(args.prune, args.channel_axis)})
    if args.low_rank:
        stages.append({"low_rank": parse_low_rank(args.low_rank, args.channel_axis)})
    if args.cluster is not None:
        stages.append({"cluster": {"n_clusters": args.cluster}})
    if args.quantize:
        stages.append({"quantize": parse_quantize(args.quantize, args.channel_axis)})
    for stage in stages:
        if args.include:
            stage["include"] = args.include
        if args.exclude:
            stage["exclude"] = args.exclude
        if args.min_rank is not None:
            stage["min_rank"] = args.min_rank
        if args.on_unfit is not None:
            stage["on_unfit"] = args.on_unfit
    return stages


def _planned_recipe(args: argparse.Namespace, flags: bool) -> tuple[list[dict[str, Any]], Any]:
    """Measures sensitivity, solves the budget, prints the plan; returns its recipe and the
    calibration source its GPTQ stages need (None without them)."""
    import json
    import os

    from .io import load_weights
    from .plan import plan

    targets = [name for name, value in (("--target-ratio", args.target_ratio), ("--target-bytes", args.target_bytes),
                                        ("--max-damage", args.max_damage)) if value is not None]
    if len(targets) > 1:
        raise UsageError(f"give one of --target-ratio, --target-bytes, --max-damage, not {' and '.join(targets)}")
    if args.recipe or flags:
        raise UsageError(f"{targets[0]} plans the recipe itself; give it without --recipe/--prune/--quantize/"
                         "--cluster/--low-rank (choose the encodings with --candidates)")
    if args.include or args.exclude:
        raise UsageError("--include/--exclude go with the stage flags; a plan covers every tensor of rank >= "
                         "--min-rank")
    layout = args.layout or ("keras" if args.channel_axis == -1 else "torch")
    candidates = None
    if args.candidates:
        candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    calibration = None
    if args.calibration:
        if not os.fspath(args.calibration).lower().endswith(".npz"):
            raise ValueError(f"--calibration takes an .npz file of layer inputs {{tensor name: (samples, features)}}, "
                             f"got {args.calibration!r}")
        from .candidates import parse_candidate

        if any(parse_candidate(c).calibrated for c in candidates or []):
            from .calibration import load_calibration

            # GPTQ candidates quantize with the layers' statistics; damages come from them too
            calibration = load_calibration(args.calibration, layout=args.calibration_layout)
        else:
            with np.load(args.calibration, allow_pickle=False) as data:
                calibration = {name: data[name] for name in data.files}
    weights = load_weights(args.input)
    chosen = plan(weights, target_ratio=args.target_ratio, target_bytes=args.target_bytes,
                  max_damage=args.max_damage, candidates=candidates, calibration=calibration, layout=layout,
                  min_rank=2 if args.min_rank is None else args.min_rank, progress=not args.no_progress)
    print(chosen.summary())
    if args.save_recipe:
        from .io import atomic_path

        with atomic_path(args.save_recipe) as temporary:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(chosen.recipe, f, indent=1)
        print(f"wrote the plan's recipe to {args.save_recipe}")
    print()
    return chosen.recipe, chosen.calibration


def _compress(args: argparse.Namespace) -> int:
    from .model import compress_file

    flags = any(v is not None and v is not False for v in (args.prune, args.quantize, args.low_rank, args.cluster))
    if args.target_ratio is not None or args.target_bytes is not None or args.max_damage is not None:
        recipe, source = _planned_recipe(args, flags)
        if not recipe:
            raise ValueError("the plan keeps every tensor as it is; nothing to write")
        report = compress_file(args.input, args.output, recipe, dense=True if args.dense else None,
                               progress=not args.no_progress, **({} if source is None else {"calibration": source}))
        if not args.quiet:
            print(report.summary())
        import os

        print(f"wrote {args.output} ({os.path.getsize(args.output):,d} bytes)",
              file=sys.stderr if args.quiet else sys.stdout)
        return 0
    if args.candidates or args.save_recipe:
        raise UsageError("--candidates and --save-recipe go with --target-ratio, --target-bytes or --max-damage")
    if args.recipe and flags:
        raise UsageError("give either --recipe or --prune/--quantize/--cluster/--low-rank, not both")
    if args.recipe:
        if args.include or args.exclude or args.min_rank is not None or args.on_unfit is not None:
            raise UsageError("--include/--exclude/--min-rank/--on-unfit go with the stage flags; "
                             "put them in the recipe file")
        recipe: Any = args.recipe
    elif flags:
        recipe = recipe_from_flags(args)
    else:
        raise UsageError("nothing to do: give --recipe FILE or at least one of --prune, --quantize, --cluster, --low-rank")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler and args.workers != 1:
        raise UsageError("--workers is for this machine; with --scheduler the Dask cluster's workers run the jobs")
    calibration = _calibration(args)
    if args.input.lower().endswith((".onnx", ".keras")):
        report = _compress_model(args, recipe, calibration)
    else:
        extra = {} if calibration is None else {"calibration": calibration}
        report = compress_file(args.input, args.output, recipe, dense=True if args.dense else None,
                               progress=not args.no_progress, workers=args.workers,
                               backend="dask" if args.scheduler else "local", scheduler=args.scheduler,
                               max_shard_size=args.max_shard_size, resume=args.resume, **extra)
    if not args.quiet:
        print(report.summary())
    kind = "dense weights" if report.dense_output else "compressed"
    size = report.file_bytes if report.file_bytes is not None else _output_bytes(args.output)
    print(f"wrote {args.output} ({size:,} bytes, {kind})", file=sys.stderr if args.quiet else sys.stdout)
    return 0


def _output_bytes(path: str) -> int:
    """The measured size of an output: a file, or every file of a (sharded) folder."""
    import os

    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names
                   if not name.startswith("."))
    return os.path.getsize(path)


def _calibration(args: argparse.Namespace) -> Any:
    """The calibration source the flags describe (None without --calibration)."""
    if args.calibration is None:
        if args.model is not None:
            raise UsageError("--model needs --calibration INPUTS.npz (the model's input batches)")
        return None
    from .calibration import from_keras, from_onnx, load_calibration
    from .io import load_weights

    model = args.model
    if model is None and args.input.lower().endswith((".onnx", ".keras")):
        model = args.input
    if model is None:
        return load_calibration(args.calibration, layout=args.calibration_layout)
    inputs = load_weights(args.calibration)
    if model.lower().endswith(".onnx"):
        return from_onnx(model, inputs, mode=args.calibration_mode)
    if model.lower().endswith(".keras"):
        return from_keras(model, inputs, mode=args.calibration_mode)
    raise UsageError(f"--model must be an .onnx or .keras file, got {model!r}")


def _compress_model(args: argparse.Namespace, recipe: Any, calibration: Any) -> Any:
    """Compresses the weights of an .onnx / .keras model file (its initializers / variables)."""
    from .io import save_weights
    from .model import compress

    if calibration is None:
        from .calibration import from_keras, from_onnx

        source = (from_onnx if args.input.lower().endswith(".onnx") else from_keras)(args.input, None)
    else:
        source = calibration
    result = compress(source.weights(), recipe, progress=not args.no_progress, calibration=calibration)
    if args.output.lower().endswith((".onnx", ".keras")):
        # The model file itself: quantized weights in the runtime's form, plus the ops that
        # absorbed AWQ / SmoothQuant scales (their weights alone would compute something else).
        kind = args.output.lower().rsplit(".", 1)[-1]
        if not args.input.lower().endswith("." + kind):
            raise UsageError(f"-o {args.output}: a .{kind} output needs a .{kind} model as IN, got {args.input!r}")
        if kind == "onnx":
            from .export.onnx import to_onnx

            to_onnx(args.input, args.output, result)
        else:
            from .export.keras import to_keras

            to_keras(args.input, args.output, result)
        return result.report
    if args.output.lower().endswith(".safetensors") and not args.dense:
        result.save(args.output)
    else:
        save_weights(args.output, result.weights)
    return result.report


def _inspect(args: argparse.Namespace) -> int:
    import json

    from ._progress import progress
    from .io import SafetensorsFile, load_weights, weight_format
    from .model import Report

    from .distributed.checkpoint import ShardedCheckpoint, is_sharded_path
    path = args.file
    if is_sharded_path(path):
        source = ShardedCheckpoint(path)
        names = source.names
        dtype_of = source.dtype_name
    elif weight_format(path) == "safetensors":
        source: Any = SafetensorsFile(path)
        if "swiftprune" in source.metadata and not args.parts:
            try:
                return _inspect_compressed(source, args)
            except ValueError as error:
                # Crafted or damaged metadata: say why, then list the stored parts as they are.
                print(f"{error}; listing the stored parts instead", file=sys.stderr)
        names = source.names
        dtype_of = source.dtype_name
    else:
        source = load_weights(path)
        names = list(source)
        dtype_of = lambda name: str(source[name].dtype)  # noqa: E731
    rows = []
    for name in progress(names, total=len(names), description="inspect", enabled=not args.no_progress):
        array = source[name]
        zeros = array.size - int(np.count_nonzero(array))
        rows.append((name, dtype_of(name), "x".join(map(str, array.shape)) or "()", array.size,
                     zeros / array.size if array.size else 0.0,
                     source.nbytes(name) if isinstance(source, (SafetensorsFile, ShardedCheckpoint)) else array.nbytes))
        if isinstance(source, (SafetensorsFile, ShardedCheckpoint)):
            source.release(name)
    headers = ("tensor", "dtype", "shape", "params", "sparsity", "bytes")
    text = [(r[0], r[1], r[2], f"{r[3]:,}", f"{r[4]:.1%}", f"{r[5]:,}") for r in rows]
    total_params = sum(r[3] for r in rows)
    total_bytes = sum(r[5] for r in rows)
    total_zero = sum(r[3] * r[4] for r in rows)
    footer = ("total", "", "", f"{total_params:,}", f"{(total_zero / total_params if total_params else 0):.1%}",
              f"{total_bytes:,}")
    widths = [max(len(line[i]) for line in [headers, footer, *text]) for i in range(6)]

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    shards = f" in {len(source.shards)} shards" if isinstance(source, ShardedCheckpoint) else ""
    print(f"{path}: {len(rows)} tensors{shards}")
    print("\n".join([fmt(headers), rule, *map(fmt, text), rule, fmt(footer)]))
    metadata = getattr(source, "metadata", {})
    if isinstance(source, ShardedCheckpoint):
        # The index's metadata: total_size, and a swiftprune object (checksums, the report) when we wrote it.
        info = metadata.get("swiftprune") if isinstance(metadata.get("swiftprune"), dict) else {}
        metadata = {k: str(v) for k, v in metadata.items() if k != "swiftprune"}
        if info.get("report"):
            metadata["swiftprune"] = json.dumps({"swiftprune_version": info.get("swiftprune_version", "?"),
                                                 "report": info["report"]})
    if "swiftprune" in metadata:
        from .compressed_schema import parse_document

        try:
            from .compressed_schema import dense_row

            describe = (lambda name: dense_row(name, source[name])) if isinstance(source, SafetensorsFile) else None
            document = parse_document(metadata["swiftprune"], set(names), describe)
            report = Report(document["report"])
            version = document.get("swiftprune_version", "?")
        except ValueError as error:
            report, version = None, "?"
            print(f"{path}: {error}", file=sys.stderr)
        print("")
        print(f"compressed by swiftprune {version}; stored report:")
        print(report.summary() if report else "(unreadable)")
    other = {k: v for k, v in metadata.items() if k != "swiftprune"}
    if other:
        print("")
        print("metadata: " + ", ".join(f"{k}={v if len(v) < 60 else v[:57] + '...'}" for k, v in other.items()))
    return 0


def _describe(form: Any, entry: dict[str, Any]) -> str:
    """What a compressed tensor is stored as, e.g. ``int4 bitmask`` or ``pruned nm 2:4``."""
    attrs = entry.get("attrs", {})
    kind = entry.get("kind", "dense")
    if kind == "quantized":
        text = f"{'int' if attrs.get('symmetric', True) else 'uint'}{attrs.get('bits')}"
        if attrs.get("group_size"):
            text += f" g{attrs['group_size']}"
        layout = attrs.get("layout", "packed")
    elif kind == "pruned":
        text, layout = "pruned f32", attrs.get("layout", "bitmask")
    elif kind == "clustered":
        text, layout = f"clustered {attrs.get('index_bits')}-bit", "packed"
    else:
        return kind
    if layout == "nm" and "nm" in attrs:
        layout = f"{attrs['nm'][0]}:{attrs['nm'][1]}"
    return f"{text} {layout}" if layout != "packed" else text


def _inspect_compressed(source: Any, args: argparse.Namespace) -> int:
    """A swiftprune file: one row per original tensor, with the sparsity of its
    decoded weights and the bytes its stored parts take."""
    from .compressed_file import read_compressed
    from .model import Report

    from .compressed_schema import dense_row, parse_document

    stored = read_compressed(source.path)  # checks the document first
    document = parse_document(source.metadata["swiftprune"], describe=lambda name: dense_row(name, source[name]))
    entries = {entry["name"]: entry for entry in document["tensors"]}
    rows = []
    for name, dense in zip(stored.tensors, stored.dense):
        entry = entries[name]
        keys = list(entry.get("parts", {}).values()) + ([entry["mask"]["key"]] if "mask" in entry else [])
        size = sum(source.nbytes(key) for key in keys) if keys else source.nbytes(name)
        array = np.asarray(dense)
        zeros = array.size - int(np.count_nonzero(array))
        rows.append((name, _describe(stored.tensors[name], entry), "x".join(map(str, array.shape)) or "()",
                     array.size, zeros / array.size if array.size else 0.0, size))
    headers = ("tensor", "stored as", "shape", "params", "sparsity", "bytes")
    text = [(r[0], r[1], r[2], f"{r[3]:,}", f"{r[4]:.1%}", f"{r[5]:,}") for r in rows]
    params = sum(r[3] for r in rows)
    data = sum(r[5] for r in rows)
    zero = sum(r[3] * r[4] for r in rows)
    import os

    file_bytes = os.path.getsize(source.path)
    footer = ("total", "", "", f"{params:,}", f"{(zero / params if params else 0):.1%}", f"{data:,}")
    widths = [max(len(line[i]) for line in [headers, footer, *text]) for i in range(6)]

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    print(f"{source.path}: swiftprune compressed file, {len(rows)} tensors, {file_bytes:,} bytes "
          f"({file_bytes - data:,} of header and metadata)")
    print("\n".join([fmt(headers), rule, *map(fmt, text), rule, fmt(footer)]))
    print("(sparsity: zeros of the decoded weights; bytes: the stored parts)")
    report = Report(stored.report)
    if len(report):
        print("")
        print(f"compressed by swiftprune {document.get('swiftprune_version', '?')}; stored report:")
        print(report.summary())
    return 0


def _export(args: argparse.Namespace) -> int:
    targets = [flag for flag, value in (("--onnx", args.onnx), ("--keras", args.keras),
                                        ("--compressed-tensors", args.compressed_tensors)) if value]
    if len(targets) != 1:
        raise UsageError("give exactly one of --onnx MODEL.onnx, --keras MODEL.keras, --compressed-tensors")
    import os

    if (args.input is None) == (args.recipe is None):
        raise UsageError("give a compressed file IN or --recipe FILE (to compress the model's weights first)")
    if args.recipe is not None and args.compressed_tensors:
        raise UsageError("--compressed-tensors takes a compressed file IN (swiftprune compress a state_dict first)")
    if args.input is not None and not os.path.exists(args.input):
        raise FileNotFoundError(2, "No such file", args.input)
    if args.onnx:
        from .export.onnx import to_onnx

        done: Any = to_onnx(args.onnx, args.output, args.input, recipe=args.recipe,
                            matmul_nbits=not args.no_matmul_nbits)
        where = args.output
    elif args.keras:
        from .export.keras import to_keras

        done = to_keras(args.keras, args.output, args.input, recipe=args.recipe)
        where = args.output
    else:
        from .export.compressed_tensors import to_compressed_tensors

        done = to_compressed_tensors(args.input, args.output, config=args.config)
        where = os.path.join(args.output, "model.safetensors")
    if not args.quiet:
        width = max((len(name) for name in done.weights), default=0)
        for name, how in done.weights.items():
            print(f"{name.ljust(width)}  {how}")
    print(f"wrote {where} ({done.nbytes:,} bytes)", file=sys.stderr if args.quiet else sys.stdout)
    return 0


def _prune_channels(args: argparse.Namespace) -> int:
    import os

    from .graph import prune_model

    for flag, value in (("--amount", args.amount),):
        if not 0 <= value <= 1:
            raise UsageError(f"{flag} must be in [0, 1], got {value}")
    calibration = None
    if args.importance == "activation" and not args.calibration:
        raise UsageError("--importance activation needs --calibration FILE.npz (the model's inputs)")
    if args.calibration:
        if args.importance != "activation":
            raise UsageError("--calibration is used by --importance activation only")
        if not os.fspath(args.calibration).lower().endswith(".npz"):
            raise UsageError(f"--calibration takes an .npz of model inputs, got {args.calibration!r}")
        with np.load(args.calibration, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        # one array feeds a one-input model whatever its name; several are matched to the inputs by name
        calibration = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    result = prune_model(args.input, args.amount, args.output, importance=args.importance,
                         global_pruning=args.global_pruning, round_to=args.round_to,
                         min_channels=args.min_channels, include=args.include or (), exclude=args.exclude or (),
                         allow_layernorm=args.allow_layernorm, calibration=calibration,
                         progress=not args.no_progress)
    if args.report:
        print(result.summary())
        for name, reason in sorted(result.frozen_reasons.items()):
            print(f"frozen: {name}: {reason}")
    else:
        print(result.summary().splitlines()[-1])
    print(f"wrote {args.output} ({result.file_size:,} bytes)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(progress=not args.no_progress)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="swiftprune", formatter_class=formatter, epilog=EPILOG,
        description="Compress trained neural-network weights: pruning, quantization, clustering, low-rank.")
    parser.add_argument("--version", action="version", version=f"swiftprune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    compress = commands.add_parser("compress", help="compress a weight file", formatter_class=formatter,
                                   epilog=COMPRESS_EPILOG,
                                   description="Compress the tensors of a .safetensors, .npz or .weights.h5 file.")
    compress.add_argument("input", metavar="IN", help="the weight file to compress")
    compress.add_argument("-o", "--output", metavar="OUT", required=True, help="where to write the result")
    compress.add_argument("--recipe", metavar="FILE", help="YAML or JSON list of stages")
    compress.add_argument("--prune", metavar="METHOD:VALUE", help="e.g. magnitude:0.8, nm:2:4")
    compress.add_argument("--quantize", metavar="intB[:GROUP]", help="e.g. int8, int4:128")
    compress.add_argument("--cluster", metavar="N", type=_int, help="weight clustering with N centroids")
    compress.add_argument("--low-rank", metavar="KIND:VALUE", help="energy:0.95, rank:64 or ratio:0.5")
    compress.add_argument("--channel-axis", metavar="AXIS", type=_int, default=0,
                          help="output-channel axis (quantization scales, structured pruning, low-rank "
                               "flattening): 0 for PyTorch (default), -1 for Keras")
    compress.add_argument("--include", metavar="GLOB", action="append", help="only tensors matching (repeatable)")
    compress.add_argument("--exclude", metavar="GLOB", action="append", help="skip tensors matching (repeatable)")
    compress.add_argument("--min-rank", metavar="N", type=_int, help="smallest rank compressed (default 2)")
    compress.add_argument("--on-unfit", choices=("skip", "warn", "error"),
                          help="a stage that cannot apply to a tensor, would grow it or gives rank 0: "
                               "skip it with a warning (default), keep the result with a warning, or fail")
    compress.add_argument("--target-ratio", metavar="R", type=_positive_float,
                          help="plan each tensor's encoding so the file is R times smaller than the float weights")
    compress.add_argument("--target-bytes", metavar="N", type=_positive_float,
                          help="plan each tensor's encoding so the file takes at most N bytes")
    compress.add_argument("--max-damage", metavar="D", type=_positive_float,
                          help="plan the smallest file whose summed damage stays within D")
    compress.add_argument("--candidates", metavar="LIST",
                          help="encodings the plan chooses from, comma separated (default: all), e.g. "
                               "float16,int8,int4:g32,pal16,pal16:g4,2:4+int8,lowrank0.5")
    compress.add_argument("--calibration", metavar="FILE",
                          help="calibration data: an .npz of per-layer inputs {layer: (samples, in)} (gptq/sparsegpt/"
                               "wanda stages; with --target-*: damage weighted by diag(x^T x)), or (with a "
                               "model) the model's input batches")
    compress.add_argument("--model", metavar="MODEL",
                          help="an .onnx or .keras model whose layer inputs are captured on the --calibration "
                               "inputs (IN may itself be the .onnx/.keras model)")
    compress.add_argument("--calibration-mode", choices=("sequential", "independent"), default="sequential",
                          help="with a model: recompute each layer's inputs through the layers already "
                               "compressed (sequential, default) or take them all from the original model")
    compress.add_argument("--calibration-layout", choices=("torch", "keras"), default="torch",
                          help="per-layer input arrays: the weights are (out, in) (torch, default) or "
                               "(in, out) kernels (keras)")
    compress.add_argument("--layout", choices=("keras", "torch"),
                          help="where output channels sit, for the plan (default: from --channel-axis)")
    compress.add_argument("--save-recipe", metavar="FILE.json", help="also write the plan's recipe")
    compress.add_argument("--dense", action="store_true", help="write dense float weights, not the compressed form")
    compress.add_argument("--workers", metavar="N", type=_int, default=1,
                          help="worker processes on this machine, one shard each (default 1)")
    compress.add_argument("--scheduler", metavar="ADDRESS",
                          help="run the shards on a Dask cluster (tcp://host:8786); needs swiftprune[dask]")
    compress.add_argument("--max-shard-size", metavar="SIZE",
                          help="sharded output: most bytes per shard, e.g. 5GB (default), 500MiB")
    compress.add_argument("--resume", action="store_true",
                          help="sharded output: keep the finished shards of an interrupted run (checksums verified)")
    compress.add_argument("--no-progress", action="store_true", help="no progress bar")
    compress.add_argument("-q", "--quiet", action="store_true", help="no summary table")
    compress.set_defaults(run=_compress, parser=compress)

    inspect = commands.add_parser("inspect", help="list the tensors of a weight file", formatter_class=formatter,
                                  description="Per-tensor dtype, shape, size and sparsity of a weight file; "
                                              "for a swiftprune file, also its stored report.",
                                  epilog="examples:\n  swiftprune inspect model.safetensors\n  swiftprune inspect llama/  "
                                         "(a sharded checkpoint folder or its .index.json)")
    inspect.add_argument("file", metavar="FILE")
    inspect.add_argument("--parts", action="store_true",
                         help="for a swiftprune compressed file: list the stored parts (w::values, w::mask, ...) "
                              "instead of the decoded tensors")
    inspect.add_argument("--no-progress", action="store_true", help="no progress bar")
    inspect.set_defaults(run=_inspect, parser=inspect)

    export = commands.add_parser(
        "export", help="write a compressed file into a runtime format (ONNX, Keras, compressed-tensors)",
        formatter_class=formatter,
        description="Puts the compressed tensors of IN (written by `swiftprune compress` or result.save) into "
                    "a model runtimes load: an .onnx (DequantizeLinear / MatMulNBits; needs onnx), a .keras "
                    "(Keras 3 int8/int4 layers; needs keras) or a compressed-tensors checkpoint directory.",
        epilog="examples:\n"
               "  swiftprune export small.safetensors --onnx model.onnx -o model.int4.onnx\n"
               "  swiftprune export small.safetensors --keras model.keras -o model.int8.keras\n"
               "  swiftprune export --recipe int4.yaml --onnx model.onnx -o model.int4.onnx\n"
               "  swiftprune export small.safetensors --compressed-tensors -o checkpoint/ --config config.json\n"
               "Tensor names must be those of the model: float_weights() in swiftprune.export.onnx / .keras "
               "gives them (ONNX initializer names, Keras variable paths).")
    export.add_argument("input", metavar="IN", nargs="?", help="a compressed .safetensors file")
    export.add_argument("--recipe", metavar="FILE", help="instead of IN: compress the model's weights with this "
                                                         "YAML/JSON recipe first")
    export.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="the .onnx / .keras file, or the compressed-tensors directory")
    export.add_argument("--onnx", metavar="MODEL", help="the float .onnx model the tensors come from")
    export.add_argument("--keras", metavar="MODEL", help="the float .keras model the tensors come from")
    export.add_argument("--compressed-tensors", action="store_true",
                        help="write a compressed-tensors checkpoint (PyTorch (out, in) weights)")
    export.add_argument("--config", metavar="FILE", help="with --compressed-tensors: the model's config.json")
    export.add_argument("--no-matmul-nbits", action="store_true",
                        help="with --onnx: DequantizeLinear for int4 MatMul weights too")
    export.add_argument("-q", "--quiet", action="store_true", help="no per-tensor lines")
    export.set_defaults(run=_export, parser=export)

    channels = commands.add_parser(
        "prune-channels", help="remove whole channels from a .keras or .onnx model", formatter_class=formatter,
        description="Remove whole channels (filters, units) through the model's channel dependency graph "
                    "(residual adds, concatenations, depthwise/grouped convs, flatten) and write a physically "
                    "smaller model of the same format. Layers not understood freeze the channels through them.",
        epilog="examples:\n  swiftprune prune-channels model.keras -o small.keras --amount 0.5\n"
               "  swiftprune prune-channels model.onnx -o small.onnx --amount 0.3 --round-to 8 --report\n"
               "  swiftprune prune-channels model.keras -o small.keras --amount 0.5 --exclude 'stem*'")
    channels.add_argument("input", metavar="IN", help="a .keras or .onnx model file")
    channels.add_argument("-o", "--output", metavar="OUT", required=True, help="the pruned model (same format)")
    channels.add_argument("--amount", type=float, required=True, help="fraction of each group's channels removed")
    channels.add_argument("--round-to", metavar="N", type=_int, default=1, help="kept channels a multiple of N")
    channels.add_argument("--min-channels", metavar="N", type=_int, default=1, help="keep at least N per group")
    channels.add_argument("--importance", choices=("l2", "l1", "bn", "activation"), default="l2",
                          help="channel ranking (activation: mean |activation| on --calibration inputs)")
    channels.add_argument("--calibration", metavar="FILE.npz",
                          help="model inputs for --importance activation (one array, or one per input name)")
    channels.add_argument("--no-progress", action="store_true", help="no progress bar")
    channels.add_argument("--global", dest="global_pruning", action="store_true",
                          help="one threshold over all groups instead of the amount in each")
    channels.add_argument("--include", metavar="GLOB", action="append", help="only layers matching (repeatable)")
    channels.add_argument("--exclude", metavar="GLOB", action="append", help="never prune layers matching")
    channels.add_argument("--allow-layernorm", action="store_true",
                          help="prune through LayerNorm over channels (changes outputs; fine-tune after)")
    channels.add_argument("--report", action="store_true", help="per-layer table and frozen layers")
    channels.set_defaults(run=_prune_channels, parser=channels)

    demo = commands.add_parser("demo", help="train a small MLP, compress it three ways, compare",
                               formatter_class=formatter,
                               description="Trains a 64-512-10 MLP on scikit-learn's digits (needs "
                                           "scikit-learn), compresses it with three recipes and prints "
                                           "accuracy and size against the original.")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo, parser=demo)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def console_main() -> int:
    """The ``swiftprune`` command (and ``python -m swiftprune``): :func:`main`
    in a process of our own, so freed tensor buffers are kept for reuse
    (see :mod:`swiftprune._allocator`)."""
    from ._allocator import keep_freed_buffers

    keep_freed_buffers()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on a syntax error
    import warnings

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"swiftprune: warning: {_one_line(message) if isinstance(message, BaseException) else message}",
              file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = show
            return int(args.run(args))
    except UsageError as error:
        getattr(args, "parser", parser).print_usage(sys.stderr)
        print(f"swiftprune: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        text = f"no such file: {error.filename}" if error.filename else _one_line(error)
        print(f"swiftprune: error: {text}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, MemoryError, ImportError, KeyError) as error:
        print(f"swiftprune: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("swiftprune: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
