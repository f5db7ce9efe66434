"""Sequential calibration of a real PyTorch model through ``sp.calibration.from_torch``: forward passes and CPU
time, with the layers that read one tensor captured together (q/k/v, as the source does) or one layer at a time
(``--one-at-a-time``: every layer its own input key; the upstream sets stay the grouped ones, so the first block's
k and v are not captured again after q's commit: 70 captures, where the source before grouping took 72 — run this
script with that version's ``python/`` on ``PYTHONPATH`` to compare with it). A capture's pass stops once its
layers have their inputs (``TorchCalibration.stop_early``); ``--run-to-end`` runs every pass to the model's end,
as before that.

The model is the Hugging Face ``MPNetModel`` of all-mpnet-base-v2 (12 blocks, 72 Linear layers: q, k, v, o,
intermediate, output per block) loaded offline from its sentence-transformers folder (``--model``; default
``$SWIFTPRUNE_MPNET_CACHE/all-mpnet-base-v2``, see ``calibration_mpnet.py`` for getting it). Calibration text:
the standard library's docstring sentences (``calibration_minilm.stdlib_sentences``), ``--sentences`` of
them in batches of ``--batch``.

``--what capture`` (default) times the capture alone: for every layer in forward order, its statistics, then a
commit of a 4-bit round-to-nearest copy of its weight (so every later layer is captured again through it).
``--what compress`` times ``sp.compress`` with GPTQ int4 g128 on the 72 Linear weights. Prints one JSON line:
the forward passes started, counted by a pre-hook on the working module (the pass recording the layer order
excluded), captures (passes / batches), the calls of the 72 Linear modules (how much of the model the passes ran),
CPU seconds (``time.process_time``: every thread of the process) and wall seconds.

    PYTHONPATH=python python benchmarks/torch_sequential_capture.py [--one-at-a-time] [--run-to-end] [--threads N]
        [--what compress]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_minilm import stdlib_sentences  # noqa: E402

import swiftprune as sp  # noqa: E402


def default_model() -> Path:
    cache = Path(os.environ.get("SWIFTPRUNE_MPNET_CACHE", Path.home() / ".cache" / "swiftprune" / "mpnet"))
    return cache / "all-mpnet-base-v2"


def load(folder: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, MPNetModel

    return (MPNetModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False).eval(),
            AutoTokenizer.from_pretrained(str(folder), local_files_only=True))


def calibration_batches(tokenizer, count: int, size: int, max_len: int) -> list[dict[str, np.ndarray]]:
    texts = stdlib_sentences()[:count]
    out = []
    for start in range(0, len(texts), size):
        encoded = tokenizer(texts[start:start + size], padding=True, truncation=True, max_length=max_len,
                            return_tensors="np")
        out.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    return out


def rtn4(w: np.ndarray) -> np.ndarray:
    """Per-row symmetric 4-bit round-to-nearest: a commit that changes every later layer's input."""
    scale = np.abs(w).max(axis=1, keepdims=True) / 7
    scale[scale == 0] = 1
    return (np.clip(np.round(w / scale), -8, 7) * scale).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--what", choices=("capture", "compress"), default="capture")
    parser.add_argument("--one-at-a-time", action="store_true")
    parser.add_argument("--run-to-end", action="store_true", help="no early stop of the capture passes")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sp.set_num_threads(args.threads)
    model, tokenizer = load(args.model)
    batches = calibration_batches(tokenizer, args.sentences, args.batch, args.max_len)
    cal = sp.calibration.from_torch(model, batches, mode="sequential")
    if args.one_at_a_time:
        for name, layer in cal.layers.items():
            layer.input = name
    cal.stop_early = not args.run_to_end
    passes, calls = [0], [0]
    cal.model.register_forward_pre_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    linear = [name for name in cal.layers if ".layer." in name]
    for name in linear:
        cal._modules[name].register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))

    cpu, wall = time.process_time(), time.perf_counter()
    if args.what == "capture":
        weights = cal.weights()
        for name in linear:
            cal.statistics(name)
            cal.commit(name, rtn4(weights[name]))
    else:
        recipe = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128}, "include": linear}]
        sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"what": args.what, "grouped": not args.one_at_a_time, "stop_early": cal.stop_early,
                      "threads": args.threads, "layers": len(linear), "batches": len(batches), "passes": passes[0],
                      "linear_calls": calls[0],
                      "captures": passes[0] / len(batches), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
