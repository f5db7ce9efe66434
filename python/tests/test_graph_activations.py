"""Activation importance of ONNX models, progress bars of prune_model, ``sp.graph``.

The reference means are computed here with NumPy from the model's own
weights (convolution as a sliding-window einsum, float64), not with
onnxruntime: the scores must equal mean |output| per channel of every
Conv / Gemm over all samples and positions.
"""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason='needs onnx: pip install "swiftprune[onnx]"')
pytest.importorskip("onnxruntime", reason='needs onnxruntime: pip install "swiftprune[onnx]"')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import _graph_onnx_models as models  # noqa: E402
from swiftprune import _progress  # noqa: E402
from swiftprune.graph import activation_scores, load_graph, onnx_activation_scores, prune_model  # noqa: E402


def small_cnn(batch=None):
    """x (N,3,8,8) -> conv1 3->6 k3 pad1 -> Relu -> conv2 6->5 k3 s2 pad1 -> GAP -> Flatten -> fc 5->4 (transB)."""
    rng = np.random.default_rng(7)
    w1, b1 = rng.normal(0, 0.5, (6, 3, 3, 3)), rng.normal(0, 0.2, 6)
    w2, b2 = rng.normal(0, 0.5, (5, 6, 3, 3)), rng.normal(0, 0.2, 5)
    w3, b3 = rng.normal(0, 0.5, (4, 5)), rng.normal(0, 0.2, 4)
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n)
             for n, v in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2), ("w3", w3), ("b3", b3)]]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4, strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3}


def conv_nchw(x, w, b, stride=1, pad=1):
    """Direct NumPy convolution (float64)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def reference_means(p, x):
    c1 = conv_nchw(x, p["w1"], p["b1"])
    c2 = conv_nchw(np.maximum(c1, 0), p["w2"], p["b2"], stride=2)
    y = c2.mean(axis=(2, 3)) @ p["w3"].T + p["b3"]
    return {"conv1": np.abs(c1).mean(axis=(0, 2, 3)), "conv2": np.abs(c2).mean(axis=(0, 2, 3)),
            "fc": np.abs(y).mean(axis=0)}


def test_onnx_activation_scores_equal_numpy_means(tmp_path):
    model, p = small_cnn()
    x = np.random.default_rng(1).normal(size=(10, 3, 8, 8)).astype(np.float32)
    expected = reference_means(p, x)
    onnx.save(model, tmp_path / "cnn.onnx")
    for scores in (onnx_activation_scores(model, x, batch_size=4),            # batches of 4, 4, 2
                   activation_scores(tmp_path / "cnn.onnx", [x[:3], x[3:]]),   # batches given as a list
                   onnx_activation_scores(model, {"x": x})):                    # a mapping, one batch
        assert set(scores) == set(expected)
        for name in expected:
            np.testing.assert_allclose(scores[name], expected[name], rtol=1e-5, atol=1e-6)


def test_activation_importance_keeps_the_most_active_channels(tmp_path):
    model, p = small_cnn()
    x = np.random.default_rng(2).normal(size=(6, 3, 8, 8)).astype(np.float32)
    expected = reference_means(p, x)
    onnx.save(model, tmp_path / "cnn.onnx")
    result = prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "small.onnx", importance="activation",
                         calibration=x, progress=False)
    # one class per channel (relu, pooling pass them through): round(0.5 * n) removed (5 - round(2.5) = 3 kept)
    for name, n, kept in (("conv1", 6, 3), ("conv2", 5, 3)):
        top = np.sort(np.argsort(-expected[name], kind="stable")[:kept])
        np.testing.assert_array_equal(np.sort(result.kept[name]), top)
    # and they differ from what the weight norm would keep on this model for at least one layer, so the
    # scores were really used
    by_norm = prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "norm.onnx", progress=False)
    assert any(not np.array_equal(np.sort(by_norm.kept[k]), np.sort(result.kept[k])) for k in ("conv1", "conv2"))


def test_activation_scores_bad_inputs(tmp_path):
    model = models.residual()          # fixed batch size 2
    x = np.random.default_rng(0).normal(size=(6, 3, 16, 16)).astype(np.float32)
    whole, batches = onnx_activation_scores(model, x), onnx_activation_scores(model, [x[:2], x[2:4], x[4:]])
    assert set(whole) == {n.name for n in load_graph(model).nodes if n.op in ("conv", "dense")} == set(batches)
    for name in whole:
        np.testing.assert_allclose(whole[name], batches[name], rtol=1e-6)
    with pytest.raises(ValueError, match="fixed at 2"):
        onnx_activation_scores(model, x[:5])
    with pytest.raises(ValueError, match="NaN"):
        onnx_activation_scores(model, np.full((2, 3, 16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match="lacks model input"):
        onnx_activation_scores(model, [{"y": x[:2]}])
    with pytest.raises(ValueError, match="onnxruntime could not run"):
        onnx_activation_scores(model, x[:, :2])
    with pytest.raises(ValueError, match="batch_size"):
        onnx_activation_scores(model, x, batch_size=0)
    with pytest.raises(FileNotFoundError):
        onnx_activation_scores(tmp_path / "missing.onnx", x)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="importance='activation' only"):
        prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx", calibration=x, progress=False)
    with pytest.raises(ValueError, match="needs calibration inputs"):
        prune_model(tmp_path / "m.onnx", 0.5, tmp_path / "s.onnx", importance="activation", progress=False)
    assert not (tmp_path / "s.onnx").exists()


def test_prune_channels_cli_activation(tmp_path, capsys):
    from swiftprune.cli import main
    model, _ = small_cnn()
    x = np.random.default_rng(3).normal(size=(6, 3, 8, 8)).astype(np.float32)
    onnx.save(model, tmp_path / "cnn.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["prune-channels", str(tmp_path / "cnn.onnx"), "-o", str(tmp_path / "a.onnx"), "--amount", "0.5",
                 "--importance", "activation", "--calibration", str(tmp_path / "x.npz")]) == 0
    expected = prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "b.onnx", importance="activation", calibration=x,
                           progress=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert expected.params_after < expected.params_before
    capsys.readouterr()
    assert main(["prune-channels", str(tmp_path / "cnn.onnx"), "-o", str(tmp_path / "c.onnx"), "--amount", "0.5",
                 "--importance", "activation"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert not (tmp_path / "c.onnx").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prune_model_progress_bar(tmp_path, monkeypatch):
    pytest.importorskip("tqdm")
    model, _ = small_cnn()
    onnx.save(model, tmp_path / "cnn.onnx")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "quiet.onnx")          # quick: no bar
    assert terminal.getvalue() == ""
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)                              # every run counts as long
    prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "off.onnx", progress=False)
    assert terminal.getvalue() == ""
    prune_model(tmp_path / "cnn.onnx", 0.5, tmp_path / "small.onnx")
    text = terminal.getvalue()
    assert "prune channels" in text and "5/5" in text and "done" in text
    assert text.rstrip("\r").endswith("\n"), "the finished bar stays on screen"


def test_sp_graph_is_lazy():
    """``sp.graph`` works after ``import swiftprune``, which imports none of onnx / h5py / keras / graph."""
    code = ("import sys, swiftprune as sp\n"
            "heavy = {'onnx', 'onnxruntime', 'h5py', 'keras', 'swiftprune.graph'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "assert sp.graph.prune_model is sp.graph.prune.prune_model\n"
            "assert 'graph' in dir(sp)\n"
            "assert not {'onnx', 'h5py', 'keras'} & set(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    # and the graph of a model read through sp.graph is the one load_graph reads
    model, _ = small_cnn()
    assert [n.name for n in load_graph(model).nodes][-1] == "fc"
