"""The PyTorch source stops a capture's forward pass once every captured layer has seen its inputs: the
statistics stay those of the whole pass (float64 recomputations through a copy of the model holding the
commits set by hand, and bit for bit a capture run to the end), the modules after the group are never
called, a module called twice (weight sharing) is waited for twice, group layers called in another order
than recorded are still all waited for, and the model is left as it was (no hook left, training flags put
back, the same outputs as a copy holding the same commits)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import swiftprune as sp

torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")

from test_calibration_torch_groups import (  # noqa: E402  (the q/k/v, gate/up model and its references)
    LAYERS, assert_gram, layer_inputs, make_batches, make_net, perturbed)

RNG = np.random.default_rng(1211)


def hook_counts(model):
    """Every hook dictionary of every module, by size (what a capture must leave as it found it)."""
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


def calls_per_module(cal):
    """Counters of the calls of every captured module from now on (pre-hooks: a stopped pass counts the
    modules it reached), and of the forward passes the working module finished."""
    calls = {name: 0 for name in cal.layers}
    for name in calls:
        cal._modules[name].register_forward_pre_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    finished = [0]
    cal.model.register_forward_hook(lambda *_: finished.__setitem__(0, finished[0] + 1))
    return calls, finished


def sequential_hessians(cal, names, commits):
    """Each layer's statistics in order, committing `commits[name]` after it (as compress() does)."""
    out = {}
    for name in names:
        out[name] = cal.statistics(name).hessian_.copy()
        cal.commit(name, commits[name])
    return out


def test_stopped_passes_give_the_statistics_of_whole_passes_and_skip_the_layers_after():
    net = make_net()
    batches = make_batches(3)
    commits = {name: perturbed(net.state_dict()[name].numpy()) for name in LAYERS}
    whole = sp.calibration.from_torch(net, batches, mode="sequential")
    whole.stop_early = False
    stopped = sp.calibration.from_torch(net, batches, mode="sequential")
    calls, finished = calls_per_module(stopped)
    expected = sequential_hessians(whole, LAYERS, commits)
    committed = {}
    for i, name in enumerate(LAYERS):
        before = dict(calls)
        captured = stopped.statistics(name).hessian_.copy()
        np.testing.assert_array_equal(captured, expected[name])
        assert_gram(captured, layer_inputs(net, committed, batches, name))
        ran = {k: calls[k] - before[k] for k in calls}
        if any(ran.values()):  # a capture ran: it went as far as the last layer it captured, not further
            captured_now = [k for k in LAYERS if stopped._cache.get(k) is not None and k not in committed]
            last = max(LAYERS.index(k) for k in captured_now)
            assert all(ran[k] == len(batches) for k in LAYERS[i:last + 1]), ran
            assert all(ran[k] == 0 for k in LAYERS[last + 1:]), ran
        committed[name] = commits[name]
        stopped.commit(name, commits[name])
    assert finished[0] == 0  # every capture ended inside the model (the last layer is in its last block)


def test_compress_gives_the_same_weights_stopped_or_run_to_the_end():
    batches = make_batches(2)
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}, "include": LAYERS}]
    results = []
    for stop in (True, False):
        cal = sp.calibration.from_torch(make_net(), batches, mode="sequential")
        cal.stop_early = stop
        results.append(sp.compress(cal.weights(), recipe, progress=False, calibration=cal).weights)
    for name in LAYERS:
        np.testing.assert_array_equal(results[0][name], results[1][name])


class Shared(torch.nn.Module):
    """`shared` runs twice (its weight reaches its own second input), `middle` between the two calls."""

    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(8, 8)
        self.middle = torch.nn.Linear(8, 8)
        self.last = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = torch.tanh(self.shared(x))
        h = torch.tanh(self.middle(h))
        return self.last(torch.tanh(self.shared(h)))


def shared_reference(weights, x):
    """The inputs of `shared` (both calls), `middle` and `last` in float64 from the weights by hand."""
    def linear(name, h):
        return h @ weights[f"{name}.weight"].astype(np.float64).T + weights[f"{name}.bias"].astype(np.float64)
    x = x.astype(np.float64)
    h1 = np.tanh(linear("shared", x))
    h2 = np.tanh(linear("middle", h1))
    return {"shared.weight": [x, h2], "middle.weight": [h1], "last.weight": [np.tanh(linear("shared", h2))]}


def test_a_module_called_twice_is_waited_for_twice():
    torch.manual_seed(5)
    net = Shared()
    batches = [RNG.standard_normal((20, 8)).astype(np.float32) for _ in range(2)]
    cal = sp.calibration.from_torch(net, batches, mode="sequential")
    assert list(cal.layers) == ["shared.weight", "middle.weight", "last.weight"]
    assert "shared.weight" in cal.layers["shared.weight"].upstream  # (its second input goes through itself)
    calls, _ = calls_per_module(cal)
    weights = {k: v.copy() for k, v in cal.weights().items()}

    def check(name):
        rows = [r for x in batches for r in shared_reference(weights, x)[name]]
        before = dict(calls)
        assert_gram(cal.statistics(name).hessian_, np.concatenate(rows))
        return {k: (calls[k] - before[k]) // len(batches) for k in calls}  # calls per pass

    assert check("shared.weight") == {"shared.weight": 2, "middle.weight": 1, "last.weight": 1}  # (all layers)
    for name in cal.layers:
        weights[name] = perturbed(weights[name])
        cal.commit(name, weights[name])
    # A commit reaching every layer, then each alone: `middle` stops before `shared`'s second call, `shared`
    # after it (never at its first), `last` at the end.
    weights["shared.bias"] = perturbed(weights["shared.bias"])
    cal.commit("shared.bias", weights["shared.bias"])
    assert check("middle.weight") == {"shared.weight": 1, "middle.weight": 1, "last.weight": 0}
    assert check("shared.weight") == {"shared.weight": 2, "middle.weight": 1, "last.weight": 0}
    assert check("last.weight") == {"shared.weight": 2, "middle.weight": 1, "last.weight": 1}


class Swapping(torch.nn.Module):
    """`a` and `b` read one tensor; a batch whose first value is negative calls them in the other order."""

    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(6, 6)
        self.a = torch.nn.Linear(6, 5)
        self.b = torch.nn.Linear(6, 5)
        self.post = torch.nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.pre(x))
        if x[0, 0] >= 0:
            y = self.a(h) * self.b(h)
        else:
            y = self.b(h) - self.a(h)
        return self.post(y)


def test_group_layers_called_in_another_order_are_all_waited_for():
    torch.manual_seed(6)
    net = Swapping()
    batches = [RNG.standard_normal((30, 6)).astype(np.float32) for _ in range(3)]
    batches[0][0, 0], batches[1][0, 0], batches[2][0, 0] = 1.0, -1.0, -1.0  # recorded a, b; then b, a
    cal = sp.calibration.from_torch(net, batches, mode="sequential")
    assert cal.layers["a.weight"].input == cal.layers["b.weight"].input
    calls, finished = calls_per_module(cal)
    w = {k: v.astype(np.float64) for k, v in cal.weights().items()}
    cal.statistics("pre.weight")
    new = perturbed(w["pre.weight"])
    cal.commit("pre.weight", new)
    before = dict(calls)
    x = np.concatenate(batches).astype(np.float64)
    h = np.maximum(x @ new.astype(np.float64).T + w["pre.bias"], 0)
    for name in ("a.weight", "b.weight"):
        assert_gram(cal.statistics(name).hessian_, h)
    ran = {k: calls[k] - before[k] for k in calls}
    assert ran == {"pre.weight": 3, "a.weight": 3, "b.weight": 3, "post.weight": 0} and finished[0] == 0


class Toggling(torch.nn.Module):
    """Sets its inner block to training mode around the call, without a `finally` (a stop inside leaves it
    set unless the capture puts it back), and retries a failed `optional` on other inputs (a stop raised in
    its hook too: the retry's inputs are not the model's and must not be counted)."""

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(7, 7), torch.nn.Dropout(0.0))
        self.optional = torch.nn.Linear(7, 7)
        self.out = torch.nn.Linear(7, 2)

    def forward(self, x):
        self.inner.train()
        h = self.inner(x)
        self.inner.eval()
        try:
            h = h + self.optional(h)
        except Exception:  # noqa: BLE001 - (a model's retry on another input: takes the stop too, goes on)
            h = h + self.optional(h + 1)
        return self.out(h)


def test_a_stopped_pass_leaves_the_model_as_it_was():
    torch.manual_seed(7)
    net = Toggling()
    batches = [RNG.standard_normal((16, 7)).astype(np.float32) for _ in range(2)]
    cal = sp.calibration.from_torch(net, batches, mode="sequential")
    modes = [m.training for m in cal.model.modules()]
    calls, finished = calls_per_module(cal)
    hooks = hook_counts(cal.model)  # (with the counters)
    x = np.concatenate(batches).astype(np.float64)
    assert_gram(cal.statistics("inner.0.weight").hessian_, x)  # (the first capture: all layers)
    for name in ("inner.0.weight", "inner.0.bias"):
        cal.commit(name, perturbed(cal.weights()[name]))
    # inner.0 alone: its pass stops inside the model's training-mode window (and inside `inner`)
    cal.invalidate(["inner.0.weight"])  # (no commit reaches it: its input is the model's)
    before = dict(calls)
    assert_gram(cal.statistics("inner.0.weight").hessian_, x)
    assert calls["optional.weight"] == before["optional.weight"] and finished[0] == 0
    assert [m.training for m in cal.model.modules()] == modes and not cal.model.inner.training
    # optional's capture stops inside the model's try: the model takes the stop for an error, retries and
    # goes on to its end; optional's inputs are those of its first call only.
    c = {k: v.astype(np.float64) for k, v in cal.committed.items()}
    assert_gram(cal.statistics("optional.weight").hessian_, x @ c["inner.0.weight"].T + c["inner.0.bias"])
    assert finished[0] == len(batches)
    assert [m.training for m in cal.model.modules()] == modes
    assert hook_counts(cal.model) == hooks
    # the working module computes what a copy holding the same commits computes
    fresh = copy.deepcopy(net)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in cal.committed.items()}, strict=False)
    probe = torch.from_numpy(RNG.standard_normal((5, 7)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_array_equal(cal.model(probe).numpy(), fresh.eval()(probe).numpy())
