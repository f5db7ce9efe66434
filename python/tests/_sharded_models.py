"""Small sharded checkpoints for the distributed tests, written with the
`safetensors` package (a peer's writer, so our reader is checked against it)."""
from __future__ import annotations

import json
import os

import numpy as np


def tensors(seed: int = 0, dtype: str = "float32", ties: bool = True) -> dict[str, np.ndarray]:
    """A toy transformer-like state dict: weights of several shapes, 1-D norms and an int buffer.
    With ``ties``, values are rounded to a coarse grid so many magnitudes are equal across tensors."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for layer in range(3):
        for part, shape in (("attn.q.weight", (32, 64)), ("mlp.up.weight", (64, 32)), ("norm.weight", (64,))):
            w = rng.normal(size=shape)
            if ties and part != "norm.weight":
                w = np.round(w * 8) / 8
            out[f"layers.{layer}.{part}"] = w
    out["embed.weight"] = rng.normal(size=(40, 32))
    out["lm_head.weight"] = np.zeros((8, 32))  # all ties at magnitude 0
    cast = {}
    for name, w in out.items():
        if dtype == "bfloat16":
            import ml_dtypes
            cast[name] = w.astype(ml_dtypes.bfloat16)
        else:
            cast[name] = w.astype(dtype)
    cast["steps"] = np.array([7], dtype=np.int64)
    return cast


def write_checkpoint(directory: str, weights: dict[str, np.ndarray], shards: int = 3) -> list[str]:
    """Writes ``weights`` as ``shards`` files with the safetensors package, plus an HF-style index
    (weight_map sorted by name, as transformers writes it). Tensor order follows the dict."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    names = list(weights)
    groups = np.array_split(np.arange(len(names)), shards)
    files, weight_map, total = [], {}, 0
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {names[j]: weights[names[j]] for j in group}
        save_file(part, os.path.join(directory, file), metadata={"format": "pt"})
        for name, array in part.items():
            weight_map[name] = file
            total += array.nbytes
        files.append(os.path.join(directory, file))
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f)
    return files


def checkpoint_order(directory: str) -> list[str]:
    """Tensor order as the contract defines it: shard files by name, then each file's header
    (JSON) order — read here with the json module, independently of swiftprune's reader."""
    order = []
    for file in sorted(f for f in os.listdir(directory) if f.endswith(".safetensors")):
        with open(os.path.join(directory, file), "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        order.extend(k for k in header if k != "__metadata__")
    return order
