"""Attribute steering: the differentiable measure agrees with the class's own, and steering moves the
measured attribute toward the request."""
import numpy as np
import pytest
import torch

import ldm_med
from ldm_med.data.presets import get_preset, radius_of_gyration
from ldm_med.errors import InputError
from ldm_med.generation.steer import soft_radius_of_gyration, steerable
from ldm_med.options import GenerateOptions

REQUEST = "radius_of_gyration"


def _opts(ckpt, **kw):
    kw.setdefault("steps", 20)  # the default: six steps in the steered window
    return GenerateOptions(preset="molecular", checkpoint=str(ckpt), decoder_noise=False, **kw)


@pytest.mark.parametrize("dims", [2, 3])
def test_the_differentiable_radius_is_the_measure_and_has_a_gradient(dims):
    data = get_preset("molecular").sample(1000 + dims, dims).data.astype(np.float64)
    spacing = (1.0, 1.0, 1.0)[:dims]
    x = torch.from_numpy(data).requires_grad_(True)
    value = soft_radius_of_gyration(x, spacing)
    assert float(value.detach()) == pytest.approx(radius_of_gyration(data, spacing), rel=1e-9)
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # moving density outward from the centre raises the radius: the gradient points that way
    assert float(soft_radius_of_gyration(x.detach() + 1e-3 * grad / grad.norm(), spacing)) > float(value)


def test_only_the_radius_is_steerable():
    assert steerable(REQUEST) and not steerable("n_sources") and not steerable("body_diameter")


def test_steering_moves_the_measured_radius_toward_the_request(tiny_generator):
    misses = {}
    for strength in (0.0, 1.0):
        for target in (6.5, 9.0):
            vol = ldm_med.generate(_opts(tiny_generator, attrs=((REQUEST, target),), seed=4, steer=strength))
            measured = vol.volumes[0].metadata["provenance"]["measured"][REQUEST]
            misses[strength, target] = abs(measured - target)
            record = vol.volumes[0].metadata["provenance"].get("steering")
            assert (record is None) == (strength == 0.0)
            if record:
                assert record["attribute"] == REQUEST and record["measured_before_each_edit"]
    assert misses[1.0, 6.5] < misses[0.0, 6.5] and misses[1.0, 9.0] < misses[0.0, 9.0]
    assert max(misses[1.0, 6.5], misses[1.0, 9.0]) < 1.0  # angstrom


def test_steering_is_reproducible_and_off_without_a_request(tiny_generator):
    request = ((REQUEST, 10.0),)
    a = ldm_med.generate(_opts(tiny_generator, attrs=request, seed=2, steer=1.0)).volumes[0].data
    b = ldm_med.generate(_opts(tiny_generator, attrs=request, seed=2, steer=1.0)).volumes[0].data
    np.testing.assert_array_equal(a, b)
    plain = ldm_med.generate(_opts(tiny_generator, seed=2, steer=0.0)).volumes[0]
    free = ldm_med.generate(_opts(tiny_generator, seed=2, steer=1.0)).volumes[0]
    np.testing.assert_array_equal(plain.data, free.data)  # nothing requested: nothing steered
    assert "steering" not in free.metadata["provenance"]


def test_steering_strength_is_checked():
    with pytest.raises(InputError, match="--steer"):
        GenerateOptions(preset="molecular", steer=3.0)


def test_recorded_steering_is_used_and_listed(recorded):
    model, listing = recorded("molecular", "--guidance", "2", "--steer", "1")
    assert "--attr steered at 1" in listing
    vol = ldm_med.generate(_opts(model, attrs=((REQUEST, 9.0),))).volumes[0]
    assert vol.metadata["provenance"]["steer"] == 1.0 and vol.metadata["provenance"]["steering"]


@pytest.mark.parametrize("preset", ["molecular", "astronomical", "medical-ct"])
def test_the_tensor_stretch_and_debias_match_the_numpy_ones(preset):
    from ldm_med.generation.grain import debias, debias_tensor

    y = np.linspace(-1.2, 1.2, 257, dtype=np.float32)
    stretch = get_preset(preset).stretch
    np.testing.assert_allclose(stretch.inverse_tensor(torch.from_numpy(y)).numpy(), stretch.inverse(y),
                               rtol=1e-5, atol=1e-3)
    bias = [[-1.0, 0.1], [-0.2, 0.05], [0.5, -0.02], [1.0, 0.0]]
    np.testing.assert_allclose(debias_tensor(torch.from_numpy(y), bias).numpy(), debias(y, bias), atol=1e-6)
