"""A GPTQ layer that received no calibration sample at all is an error
naming the layer and the likely cause (the model never ran it, or its
arrays are empty); the stage option ``no_samples: rtn`` rounds such layers
to nearest instead, with a warning naming the layer. The rounded result is
checked against ``sp.quantize`` (plain round-to-nearest), the GPTQ layers
of the same run against ``sp.gptq`` on the same inputs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import CalibrationWarning

RNG = np.random.default_rng(77)
GPTQ = {"method": "gptq", "bits": 4, "group_size": None}


def layers():
    weights = {"enc.weight": RNG.standard_normal((8, 32)).astype(np.float32),
               "aux.weight": RNG.standard_normal((6, 32)).astype(np.float32)}
    x = RNG.standard_normal((256, 32)).astype(np.float32)
    return weights, x


def test_zero_samples_is_an_error_naming_the_layer():
    weights, x = layers()
    calibration = {"enc": x, "aux": np.zeros((0, 32), np.float32)}  # aux's capture came back empty
    with pytest.raises(ValueError) as caught:
        sp.compress(weights, [{"quantize": GPTQ}], progress=False, calibration=calibration)
    message = str(caught.value)
    assert "'aux.weight'" in message and "layer 'aux' received 0 calibration samples" in message
    assert "never ran it" in message and "no_samples: rtn" in message
    # min_samples: 0 ("GPTQ whatever the count") does not turn a missing calibration into a silent one.
    with pytest.raises(ValueError, match="layer 'aux' received 0 calibration samples"):
        sp.compress(weights, [{"quantize": dict(GPTQ, min_samples=0)}], progress=False, calibration=calibration)


def test_no_samples_rtn_rounds_that_layer_to_nearest_and_says_which():
    weights, x = layers()
    calibration = {"enc": x, "aux": np.zeros((0, 32), np.float32)}
    with pytest.warns(CalibrationWarning, match=r"'aux\.weight'.*layer 'aux' received 0 calibration samples"):
        result = sp.compress(weights, [{"quantize": dict(GPTQ, no_samples="rtn")}], progress=False,
                             calibration=calibration)
    np.testing.assert_array_equal(result.tensors["aux.weight"].dequantize(),
                                  sp.quantize(weights["aux.weight"], 4, axis=0).dequantize())
    np.testing.assert_array_equal(result.tensors["enc.weight"].dequantize(),
                                  sp.gptq(weights["enc.weight"], x, 4, None).dequantize())
    stages = {r["name"]: r["stages"] for r in result.report}
    assert stages == {"enc.weight": "quantize.gptq", "aux.weight": "quantize.gptq(fallback minmax)"}
    with pytest.raises(ValueError, match="no_samples must be one of 'error', 'rtn'"):
        sp.compress(weights, [{"quantize": dict(GPTQ, no_samples="skip")}], progress=False, calibration=calibration)


def test_too_few_samples_still_round_to_nearest_with_the_layer_named():
    weights, x = layers()
    with pytest.warns(CalibrationWarning, match=r"layer 'aux': 20 calibration samples for 32 inputs"):
        result = sp.compress(weights, [{"quantize": GPTQ}], progress=False, calibration={"enc": x, "aux": x[:20]})
    np.testing.assert_array_equal(result.tensors["aux.weight"].dequantize(),
                                  sp.quantize(weights["aux.weight"], 4, axis=0).dequantize())


def test_a_torch_module_the_forward_pass_never_runs():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional; pip install torch)")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(32, 16)
            self.unused = torch.nn.Linear(32, 4)  # e.g. a head the calibration inputs do not reach

        def forward(self, x):
            return self.enc(x)

    torch.manual_seed(0)
    net = Net()
    x = RNG.standard_normal((128, 32)).astype(np.float32)
    cal = sp.calibration.from_torch(net, x)
    with pytest.raises(ValueError, match=r"'unused\.weight'.*layer 'unused\.weight' received 0 calibration samples"):
        sp.compress(cal.weights(), [{"quantize": GPTQ}], progress=False, calibration=cal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        result = sp.compress(cal.weights(), [{"quantize": dict(GPTQ, no_samples="rtn")}], progress=False,
                             calibration=cal)
    unused = net.unused.weight.detach().numpy()
    np.testing.assert_array_equal(result.tensors["unused.weight"].dequantize(),
                                  sp.quantize(unused, 4, axis=0).dequantize())
    np.testing.assert_array_equal(result.tensors["enc.weight"].dequantize(),
                                  sp.gptq(net.enc.weight.detach().numpy(), x, 4, None).dequantize())


@pytest.mark.parametrize("stage", [{"prune": {"method": "sparsegpt", "sparsity": 0.5}},
                                   {"prune": {"method": "wanda", "sparsity": 0.5}}])
def test_other_calibrated_methods_refuse_zero_samples_too(stage):
    weights, x = layers()
    with pytest.raises(ValueError, match=r"'aux\.weight'.*layer 'aux': no calibration samples were added.*never ran"):
        sp.compress(weights, [stage], progress=False, calibration={"enc": x, "aux": np.zeros((0, 32), np.float32)})
