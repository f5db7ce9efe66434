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
  swiftprune inspect small.safetensors
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
  swiftprune compress llama/ -o llama-w4/ --prune nm:2:4 --quantize int4:128 --workers 2
  swiftprune compress llama/model.safetensors.index.json -o out/ --prune global_magnitude:0.5 --resume

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
}


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
    return stages


def _compress(args: argparse.Namespace) -> int:
    from .model import compress_file

    flags = any(v is not None and v is not False for v in (args.prune, args.quantize, args.low_rank, args.cluster))
    if args.recipe and flags:
        raise UsageError("give either --recipe or --prune/--quantize/--cluster/--low-rank, not both")
    if args.recipe:
        if args.include or args.exclude or args.min_rank is not None:
            raise UsageError("--include/--exclude/--min-rank go with the stage flags; put them in the recipe file")
        recipe: Any = args.recipe
    elif flags:
        recipe = recipe_from_flags(args)
    else:
        raise UsageError("nothing to do: give --recipe FILE or at least one of --prune, --quantize, --cluster, --low-rank")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.scheduler and args.workers != 1:
        raise UsageError("--workers is for this machine; with --scheduler the Dask cluster's workers run the jobs")
    report = compress_file(args.input, args.output, recipe, dense=True if args.dense else None,
                           progress=not args.no_progress, workers=args.workers,
                           backend="dask" if args.scheduler else "local", scheduler=args.scheduler,
                           max_shard_size=args.max_shard_size, resume=args.resume)
    if not args.quiet:
        print(report.summary())
    print(f"wrote {args.output}", file=sys.stderr if args.quiet else sys.stdout)
    return 0


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
            document = parse_document(metadata["swiftprune"], set(names))
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


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(progress=not args.no_progress)


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
    inspect.add_argument("--no-progress", action="store_true", help="no progress bar")
    inspect.set_defaults(run=_inspect, parser=inspect)

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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on a syntax error
    try:
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
