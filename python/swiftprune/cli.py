"""The ``swiftprune`` command line (``python -m swiftprune``).

Exit codes: 0 success, 1 failure, 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from . import __version__
from .pruning import prune_magnitude


def _demo(args: argparse.Namespace) -> int:
    """Prunes the weights of a small seeded MLP and prints what it kept."""
    rng = np.random.default_rng(0)
    layers = {"dense_1/kernel": rng.normal(0, 0.1, (64, 128)), "dense_2/kernel": rng.normal(0, 0.1, (128, 10))}
    print(f"swiftprune {__version__} demo: magnitude pruning of a 64-128-10 MLP")
    print(f"{'tensor':<16} {'sparsity':>8} {'nonzeros':>9} {'rel. error':>10}")
    for name, w in layers.items():
        for sparsity in (0.5, 0.8, 0.9):
            pruned = prune_magnitude(w, sparsity)
            error = np.linalg.norm(pruned - w) / np.linalg.norm(w)
            print(f"{name:<16} {sparsity:>8.2f} {np.count_nonzero(pruned):>9d} {error:>10.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swiftprune", description="Compress trained neural-network weights.")
    parser.add_argument("--version", action="version", version=f"swiftprune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="compress a small model and print the report")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, TypeError, OSError, MemoryError) as error:
        print(f"swiftprune: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
