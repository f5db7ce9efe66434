"""The PyTorch source in sequential mode captures the layers that read the same input tensor (q/k/v of an
attention block, gate/up of a gated MLP) in one forward pass, and still gives every layer the statistics of
its input after all commits before it. Checked against float64 recomputations through a copy of the model
holding the committed tensors (set by hand), against a fresh capture of that copy, and by counting the
forward passes (a forward hook on the working module) against the count the model's structure gives."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import swiftprune as sp

torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")

RNG = np.random.default_rng(1210)
WIDTH, INNER, TOKENS = 12, 20, 6


class Block(torch.nn.Module):
    """Pre-norm attention (q, k, v read the norm's output; o) and a gated MLP (gate, up read the second
    norm's output; down): four distinct layer inputs, seven layers."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(WIDTH)
        self.q = torch.nn.Linear(WIDTH, WIDTH)
        self.k = torch.nn.Linear(WIDTH, WIDTH)
        self.v = torch.nn.Linear(WIDTH, WIDTH)
        self.o = torch.nn.Linear(WIDTH, WIDTH)
        self.norm2 = torch.nn.LayerNorm(WIDTH)
        self.gate = torch.nn.Linear(WIDTH, INNER)
        self.up = torch.nn.Linear(WIDTH, INNER)
        self.down = torch.nn.Linear(INNER, WIDTH)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(WIDTH), dim=-1)
        x = x + self.o(attention @ v)
        h = self.norm2(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


GROUPS = [["q", "k", "v"], ["o"], ["gate", "up"], ["down"]]  # per block, in forward order
LAYERS = [f"blocks.{b}.{name}.weight" for b in range(2) for group in GROUPS for name in group]


def make_net():
    torch.manual_seed(12)
    rng = np.random.default_rng(12)  # (the same model on every call)
    net = Net()
    with torch.no_grad():  # norms with a scale and shift that are not 1 and 0, as a trained model's
        for module in net.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, WIDTH).astype(np.float32)))
                module.bias.copy_(torch.from_numpy(0.3 * rng.standard_normal(WIDTH).astype(np.float32)))
    return net


def make_batches(count=3):
    return [RNG.standard_normal((4, TOKENS, WIDTH)).astype(np.float32) for _ in range(count)]


def count_passes(cal):
    """A counter of the forward passes the calibration starts from now on (its working copy of the module; a
    pre-hook: a capture's pass stops once its layers have their inputs, before the module's forward hooks)."""
    passes = [0]
    cal.model.register_forward_pre_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    return passes


def perturbed(array):
    """A committed tensor far from the original (as a coarse quantization would be)."""
    return (array + 0.5 * array.std() * RNG.standard_normal(array.shape)).astype(np.float32)


def layer_inputs(net, tensors, batches, layer):
    """`layer`'s input rows in float64, through a float64 copy of `net` holding `tensors` (name -> array)."""
    reference = copy.deepcopy(net).double()
    state = reference.state_dict()
    rows = []
    module = reference.get_submodule(layer.rpartition(".")[0])
    handle = module.register_forward_hook(lambda m, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        for name, value in tensors.items():
            state[name].copy_(torch.from_numpy(np.asarray(value, np.float64)))
        for x in batches:
            reference(torch.from_numpy(x.astype(np.float64)))
    handle.remove()
    return torch.cat(rows).numpy()


def assert_gram(actual, x):
    expected = x.T @ x
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_layers_reading_one_tensor_share_an_input_and_not_each_others_commits():
    cal = sp.calibration.from_torch(make_net(), make_batches(1), mode="sequential")
    assert list(cal.layers) == LAYERS
    for b in range(2):
        layer = {name: cal.layers[f"blocks.{b}.{name}.weight"] for group in GROUPS for name in group}
        keys = [{layer[name].input for name in group} for group in GROUPS]
        assert all(len(k) == 1 for k in keys) and len(set.union(*keys)) == len(GROUPS)
        # k and v read the tensor q reads, made before q runs: q's commit does not reach them ...
        assert not {f"blocks.{b}.{n}.weight" for n in "qkv"} & layer["k"].upstream
        assert not {f"blocks.{b}.{n}.{p}" for n in ("gate", "up") for p in ("weight", "bias")} & layer["up"].upstream
        # ... the norm before them does, and o depends on all three.
        assert {f"blocks.{b}.norm.weight", f"blocks.{b}.norm.bias"} <= layer["v"].upstream
        assert {f"blocks.{b}.{n}.weight" for n in "qkv"} <= layer["o"].upstream
        assert {f"blocks.{b}.gate.weight", f"blocks.{b}.up.bias", f"blocks.{b}.norm2.weight"} <= layer["down"].upstream


def test_grouped_capture_equals_the_inputs_after_all_earlier_commits_with_one_pass_per_group():
    net = make_net()
    batches = make_batches(3)
    cal = sp.calibration.from_torch(net, batches, mode="sequential")
    passes = count_passes(cal)
    committed = {}
    for name in LAYERS:
        captured = cal.statistics(name).hessian_.copy()
        x = layer_inputs(net, committed, batches, name)
        assert_gram(captured, x)
        # A fresh capture of a copy holding the same commits (one layer, one capture): the same numbers.
        fresh = copy.deepcopy(net)
        fresh.load_state_dict({k: torch.from_numpy(v) for k, v in committed.items()}, strict=False)
        alone = sp.calibration.from_torch(fresh, batches, mode="independent").statistics(name).hessian_
        np.testing.assert_array_equal(captured, alone)
        committed[name] = perturbed(cal.weights()[name])
        cal.commit(name, committed[name])
    # The first request captures every layer through the original model; after that one capture per group
    # (the first block's q/k/v were captured through the original model, which no commit since has changed).
    groups = 2 * len(GROUPS)
    assert passes[0] == groups * len(batches)  # (one layer at a time: 12 captures, not 8)
    # The commits mattered: the last layer's inputs without them differ by far more than the tolerance.
    stale = layer_inputs(net, {}, batches, LAYERS[-1])
    fresh = layer_inputs(net, committed, batches, LAYERS[-1])
    assert np.abs(stale.T @ stale - fresh.T @ fresh).max() > 1e-2 * np.abs(fresh.T @ fresh).max()


def test_a_committed_norm_scale_before_q_k_v_reaches_all_three_in_one_pass():
    # What the AWQ / SmoothQuant fold commits for the op before q/k/v: the norm's scale and shift.
    net = make_net()
    batches = make_batches(2)
    cal = sp.calibration.from_torch(net, batches, mode="sequential")
    qkv = [f"blocks.1.{n}.weight" for n in "qkv"]
    for name in qkv:
        assert_gram(cal.statistics(name).hessian_, layer_inputs(net, {}, batches, name))
    passes = count_passes(cal)
    s = RNG.uniform(0.25, 4.0, WIDTH)
    folded = {"blocks.1.norm.weight": (net.blocks[1].norm.weight.detach().numpy() / s).astype(np.float32),
              "blocks.1.norm.bias": (net.blocks[1].norm.bias.detach().numpy() / s).astype(np.float32)}
    for name, value in folded.items():
        cal.commit(name, value)
    cal.commit(qkv[0], perturbed(cal.weights()[qkv[0]]))  # q's own commit reaches neither k nor v
    for name in qkv:
        x = layer_inputs(net, folded, batches, name)
        assert_gram(cal.statistics(name).hessian_, x)
        original = layer_inputs(net, {}, batches, name)
        assert np.abs(original.T @ original - x.T @ x).max() > 1e-2 * np.abs(x.T @ x).max()
    assert passes[0] == len(batches)  # k and v came with q's recapture


def test_compress_gives_the_same_weights_with_fewer_passes_than_one_layer_at_a_time():
    batches = make_batches(2)
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}, "include": LAYERS}]
    results, counts = [], []
    for grouped in (True, False):
        cal = sp.calibration.from_torch(make_net(), batches, mode="sequential")
        if not grouped:  # every layer its own input key: captured alone, as before the grouping
            for name, layer in cal.layers.items():
                layer.input = name
        passes = count_passes(cal)
        results.append(sp.compress(cal.weights(), recipe, progress=False, calibration=cal))
        counts.append(passes[0])
    for name in LAYERS:
        np.testing.assert_array_equal(results[0].weights[name], results[1].weights[name])
    # Grouped: the first capture (all layers), then one per group after block 0's q/k/v. Alone: the first
    # capture, then every layer but block 0's q/k/v (captured first, through weights no commit has changed).
    assert counts == [2 * len(GROUPS) * len(batches), (1 + len(LAYERS) - 3) * len(batches)]


def test_an_input_changed_in_place_between_two_layers_is_not_shared():
    class InPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(8, 8)
            self.b = torch.nn.Linear(8, 8)
            self.scale = torch.nn.Parameter(torch.linspace(0.5, 2.0, 8))

        def forward(self, x):
            h = x + 0  # (not the caller's batch: it is changed in place below)
            y = self.a(h)
            h.mul_(self.scale)  # the same tensor object, other values: b must not share a's capture
            return y + self.b(h)

    torch.manual_seed(4)
    net = InPlace()
    x = RNG.standard_normal((50, 8)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    assert cal.layers["a.weight"].input != cal.layers["b.weight"].input
    assert "scale" in cal.layers["b.weight"].upstream
    scale = net.scale.detach().numpy().astype(np.float64)
    assert_gram(cal.statistics("b.weight").hessian_, x * scale)
    cal.commit("a.weight", perturbed(net.a.weight.detach().numpy()))
    cal.commit("scale", np.float32(3.0) * net.scale.detach().numpy())
    assert_gram(cal.statistics("b.weight").hessian_, x * (3.0 * scale))
    assert_gram(cal.statistics("a.weight").hessian_, x.astype(np.float64))
