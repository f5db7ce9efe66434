"""Short reprs for every result type (never the arrays), a clean public
namespace, and progress bars that appear for long runs and stay."""
from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _progress

BIG = np.random.default_rng(0).normal(size=(256, 512)).astype(np.float32)


def results() -> dict[str, object]:
    x = np.random.default_rng(1).normal(size=(64, 512)).astype(np.float32)
    compressed = sp.compress({"fc.weight": BIG, "fc.bias": BIG[0]}, [{"prune": {"sparsity": 0.8}}], progress=False)
    return {
        "LowRankFactors": sp.low_rank(BIG, rank=8),
        "QuantizedTensor": sp.quantize(BIG, 4, axis=0, group_size=128),
        "ClusteredTensor": sp.cluster(BIG, 16),
        "PrunedTensor": compressed.tensors["fc.weight"],
        "CSRMatrix": sp.CSRMatrix.from_dense(sp.prune_magnitude(BIG, 0.9)),
        "NMSparseMatrix": sp.NMSparseMatrix.from_dense(BIG),
        "CompressionResult": compressed,
        "Report": compressed.report,
        "GPTQ": sp.gptq(BIG, x, bits=4, group_size=128),
    }


@pytest.mark.parametrize("name", list(results()))
def test_reprs_are_short_and_say_what_it_is(name: str) -> None:
    value = results()[name]
    text = repr(value)
    assert len(text) < 250 and "\n" not in text, text
    assert text.startswith(type(value).__name__ + "("), text
    assert "array(" not in text and "..." not in text
    if name not in ("CompressionResult", "Report"):
        assert str(tuple(value.shape)) in text and f"nbytes={value.nbytes}" in text and "dtype=" in text
    else:
        assert re.search(r"\d+(\.\d+)? (B|KiB|MiB) -> \d+(\.\d+)? (B|KiB|MiB), ratio \d+\.\d\dx", text), text


def test_public_namespace_is_the_api() -> None:
    names = dir(sp)
    assert "annotations" not in names
    assert set(sp.__all__) <= set(names)
    extra = set(names) - set(sp.__all__)
    assert extra <= set(sp._API_MODULES), extra
    assert not {"pruning", "quantization", "schedules", "sparse", "linalg", "threads", "np"} & set(names)
    for name in sp.__all__:
        assert hasattr(sp, name), name
    namespace: dict = {}
    exec("from swiftprune import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(sp.__all__)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_appears_for_long_runs_and_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)  # every run counts as long
    assert list(_progress.progress(range(5), total=5, description="compress", enabled=True)) == list(range(5))
    text = terminal.getvalue()
    assert "compress" in text and "5/5" in text
    assert text.rstrip("\r").endswith("\n"), "the finished bar must stay on screen (leave=True)"


def test_progress_bar_stays_hidden_for_quick_runs_and_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _progress.DELAY_S >= 1.0
    assert list(_progress.progress(range(5), total=5, description="compress", enabled=True)) == list(range(5))
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    assert list(_progress.progress(range(5), total=5, description="compress", enabled=False)) == list(range(5))
    assert terminal.getvalue() == ""
