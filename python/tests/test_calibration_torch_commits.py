"""The PyTorch source in sequential mode applies every committed tensor,
not only Linear/Conv2d weights: a corrected bias and a folded norm scale
committed for an earlier layer reach the later layers' captures. Checked
against a float64 torch copy of the model with the same tensors set by
hand (the layer input recomputed there), and against the capture without
the commit (which must differ)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import swiftprune as sp

torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")

RNG = np.random.default_rng(91)


class Net(torch.nn.Module):
    """x(16) -> fc1 -> relu -> LayerNorm -> fc2(8): fc2's input depends on fc1's weight and bias and the norm."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.fc2 = torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(self.norm(torch.relu(self.fc1(x))))


def make_net():
    torch.manual_seed(3)
    net = Net()
    with torch.no_grad():  # a norm scale and shift that are not 1 and 0, as a trained model's
        net.norm.weight.copy_(torch.from_numpy(RNG.uniform(0.5, 2.0, 32).astype(np.float32)))
        net.norm.bias.copy_(torch.from_numpy(RNG.standard_normal(32).astype(np.float32)))
    return net


def fc2_input(net, tensors, x):
    """fc2's input in float64, through a copy of `net` holding `tensors` (state_dict name -> array)."""
    reference = copy.deepcopy(net).double()
    state = reference.state_dict()
    with torch.no_grad():
        for name, value in tensors.items():
            state[name].copy_(torch.from_numpy(np.asarray(value, np.float64)))
        x64 = torch.from_numpy(x.astype(np.float64))
        return reference.norm(torch.relu(reference.fc1(x64))).numpy()


def gram(x):
    return x.T @ x


def assert_gram(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def differs(a, b):
    """`a` and `b` differ by far more than the float32 capture's tolerance."""
    return np.abs(a - b).max() > 1e-2 * np.abs(b).max()


def test_bias_correction_of_an_earlier_layer_reaches_the_later_capture():
    net = make_net()
    x = (RNG.standard_normal((400, 16)) + 1.5).astype(np.float32)  # nonzero mean: a real bias shift
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    recipe = [{"quantize": {"bits": 3, "axis": 0}, "bias_correction": True}]
    result = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    rows = {r["name"]: r["stages"] for r in result.report}
    assert rows["fc1.bias"] == "bias-corrected" and rows["fc2.bias"] == "bias-corrected"

    w1_hat, b1_new = result.weights["fc1.weight"], result.weights["fc1.bias"]
    b1 = before["fc1.bias"].numpy()
    assert differs(b1_new, b1)
    committed = fc2_input(net, {"fc1.weight": w1_hat, "fc1.bias": b1_new}, x)
    uncommitted_bias = fc2_input(net, {"fc1.weight": w1_hat}, x)  # the bias commit ignored (the old behaviour)
    captured = cal.statistics("fc2.weight")  # the capture fc2 was quantized and corrected with
    assert_gram(captured.hessian_, gram(committed))
    assert differs(gram(uncommitted_bias), gram(committed))
    # fc2's own bias correction used the mean of those inputs: b2 + (W2 - Ŵ2) E[x2], float64.
    w2 = before["fc2.weight"].numpy().astype(np.float64)
    expected_b2 = before["fc2.bias"].numpy() + (w2 - result.weights["fc2.weight"]) @ committed.mean(0)
    np.testing.assert_allclose(result.weights["fc2.bias"], expected_b2, rtol=0, atol=1e-4)
    stale_b2 = before["fc2.bias"].numpy() + (w2 - result.weights["fc2.weight"]) @ uncommitted_bias.mean(0)
    assert np.abs(stale_b2 - expected_b2).max() > 1e-2

    # The caller's module is untouched, and a second run starts from the original model again.
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    again = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
    for name in result.weights:
        np.testing.assert_array_equal(again.weights[name], result.weights[name])


def test_a_committed_norm_scale_reaches_the_later_capture():
    # What the AWQ / SmoothQuant fold pass commits for the op before a layer: its norm's scale and shift.
    net = make_net()
    x = RNG.standard_normal((300, 16)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    original = fc2_input(net, {}, x)
    assert_gram(cal.statistics("fc2.weight").hessian_, gram(original))
    s = RNG.uniform(0.25, 4.0, 32)
    gamma = (net.norm.weight.detach().numpy() / s).astype(np.float32)
    beta = (net.norm.bias.detach().numpy() / s).astype(np.float32)
    cal.commit("norm.weight", gamma)
    cal.commit("norm.bias", beta)
    folded = fc2_input(net, {"norm.weight": gamma, "norm.bias": beta}, x)
    captured = cal.statistics("fc2.weight")
    assert_gram(captured.hessian_, gram(folded))
    np.testing.assert_allclose(captured.sum_, folded.sum(0), rtol=0, atol=1e-5 * np.abs(folded).sum(0).max())
    assert differs(gram(original), gram(folded))
    # fc1 reads the model input: no commit after it changes its statistics.
    assert_gram(cal.statistics("fc1.weight").hessian_, gram(x.astype(np.float64)))


def test_unknown_tensors_are_refused_and_upstream_sets():
    net = make_net()
    x = RNG.standard_normal((100, 16)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    with pytest.raises(ValueError, match="'decoder.weight'.*no floating-point parameter or buffer"):
        cal.commit("decoder.weight", np.zeros((8, 32), np.float32))
    with pytest.raises(ValueError, match="'fc1.bias' has 5 values.*\\(32,\\)"):
        cal.commit("fc1.bias", np.zeros(5, np.float32))
    assert not cal.committed  # a refused tensor does not count as committed
    # Upstream sets: fc2 depends on everything before it, fc1 on nothing of the model's own tensors.
    assert {"fc1.weight", "fc1.bias", "norm.weight", "norm.bias"} <= cal.layers["fc2.weight"].upstream
    assert not {"fc2.weight", "fc2.bias"} & cal.layers["fc2.weight"].upstream
    assert not cal.layers["fc1.weight"].upstream & {"fc1.weight", "fc1.bias", "norm.weight", "fc2.weight"}


def test_a_commit_of_a_tied_weight_reaches_the_layers_after_its_alias():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(16, 16)
            self.mid = torch.nn.Linear(16, 16)
            self.out = torch.nn.Linear(16, 16)
            self.out.weight = self.inp.weight  # one parameter, two state_dict names

        def forward(self, x):
            return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x)))))

    torch.manual_seed(5)
    net = Tied()
    x = RNG.standard_normal((200, 16)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    assert "out.weight" in cal.layers["mid.weight"].upstream  # through its alias inp.weight
    cal.statistics("mid.weight")
    w = RNG.standard_normal((16, 16)).astype(np.float32)
    cal.commit("out.weight", w)
    with torch.no_grad():
        x64 = torch.from_numpy(x.astype(np.float64))
        mid_in = torch.tanh(x64 @ torch.from_numpy(w.astype(np.float64)).T + net.inp.bias.double()).numpy()
    assert_gram(cal.statistics("mid.weight").hessian_, gram(mid_in))


def test_an_independent_source_ignores_commits():
    net = make_net()
    x = RNG.standard_normal((100, 16)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="independent")
    before = cal.statistics("fc2.weight").hessian_.copy()
    cal.commit("fc1.bias", np.zeros(32, np.float32))
    np.testing.assert_array_equal(cal.statistics("fc2.weight").hessian_, before)
    assert torch.equal(net.fc1.bias, make_net().fc1.bias)  # independent mode runs the caller's module: unchanged


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_scripted_submodule_counts_as_reaching_every_layer():
    plain = make_net()
    net = copy.deepcopy(plain)
    net.norm = torch.jit.script(net.norm)  # takes no hooks: where it runs is unknown
    x = RNG.standard_normal((100, 16)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x, mode="sequential")
    assert {"norm.weight", "norm.bias"} <= cal.layers["fc1.weight"].upstream  # conservatively
    gamma = net.norm.weight.detach().numpy() * 2.0
    cal.statistics("fc2.weight")
    cal.commit("norm.weight", gamma)
    assert_gram(cal.statistics("fc2.weight").hessian_, gram(fc2_input(plain, {"norm.weight": gamma}, x)))
