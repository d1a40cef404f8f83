"""Denoiser: eps/v/x0 parameterisations are exact inverses of their training targets; guidance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldm_med.diffusion.precond import PREDICTIONS, Denoiser, guided
from ldm_med.diffusion.sde import VPSDE
from ldm_med.errors import InputError


class OracleNet(nn.Module):
    """Returns a preset output and records what it was called with."""

    def __init__(self, output: torch.Tensor | None = None):
        super().__init__()
        self.output = output
        self.calls: list[dict] = []
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond=None, labels=None):
        self.calls.append({"x": x, "t": t, "cond": cond, "labels": labels})
        out = self.output if self.output is not None else x
        return out.to(x.dtype) * self.scale.to(x.dtype)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("shape", [(6, 2, 5, 7), (6, 2, 3, 4, 5)])
def test_exact_target_recovers_x0(schedule, prediction, shape):
    sde = VPSDE(schedule)
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    t = torch.tensor([1e-3, 0.1, 0.3, 0.6, 0.9, 0.97])
    net = OracleNet()
    den = Denoiser(net, sde, prediction=prediction)
    x_t = sde.marginal(x0, t, noise)
    net.output = den.training_target(x0, noise, t)
    x0_hat = den(x_t, t)
    assert x0_hat.dtype == torch.float32 and x0_hat.shape == x0.shape
    torch.testing.assert_close(x0_hat, x0, rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(den.eps_from_x0(x_t, t, x0), noise, rtol=1e-3, atol=1e-3)
    s = sde.sigma(t).float().view(-1, *[1] * (len(shape) - 1))
    torch.testing.assert_close(den.score(x_t, t, x0), -noise / s, rtol=1e-3, atol=1e-2)


def test_net_inputs_time_scale_cond_and_labels():
    sde = VPSDE()
    net = OracleNet()
    den = Denoiser(net, sde, prediction="x0", time_scale=1000.0)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    cond = torch.randn(3, 1, 4, 4)
    labels = torch.tensor([0, 2, 1])
    den(x, 0.25, cond=cond, labels=labels)  # a scalar time is repeated over the batch
    call = net.calls[-1]
    assert call["x"].dtype == torch.float32  # cast to the net's dtype
    assert call["t"].dtype == torch.float32 and call["t"].shape == (3,)
    torch.testing.assert_close(call["t"], torch.full((3,), 250.0))
    assert call["cond"] is not None and torch.equal(call["cond"], cond)
    assert torch.equal(call["labels"], labels)
    with pytest.raises(ValueError, match="times must be"):
        den(x, torch.rand(2))


def wrap(module: nn.Module) -> nn.Module:
    """A net with the Denoiser calling convention around a plain module."""

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, x, t, cond=None, labels=None):
            return self.m(x)

    return Wrap()


def test_half_precision_net_and_autocast():
    sde = VPSDE()
    conv = nn.Conv3d(2, 2, 1).to(torch.bfloat16)
    den = Denoiser(wrap(conv), sde, prediction="v")
    x = torch.randn(2, 2, 3, 4, 5)
    out = den(x, torch.tensor([0.2, 0.7]))
    assert out.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert Denoiser(wrap(nn.Conv3d(2, 2, 1)), sde)(x, 0.5).dtype == torch.float32


def test_bad_prediction_and_output_shape():
    with pytest.raises(InputError, match="eps, v, x0"):
        Denoiser(OracleNet(), VPSDE(), prediction="score")
    den = Denoiser(OracleNet(torch.zeros(2, 1, 4)), VPSDE())
    with pytest.raises(ValueError, match="output shape"):
        den(torch.zeros(2, 3, 4), 0.5)


class LabelNet(nn.Module):
    """x0-prediction that depends on the label, counting calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.batch_sizes: list[int] = []

    def forward(self, x, t, cond=None, labels=None):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        return x * 0.5 + labels.to(x.dtype).view(-1, *[1] * (x.ndim - 1)) + cond


def test_guided_one_call_and_formula():
    sde = VPSDE()
    net = LabelNet()
    den = Denoiser(net, sde, prediction="x0")
    x = torch.randn(4, 2, 3, 3)
    cond = torch.randn(4, 2, 3, 3)
    labels = torch.tensor([1, 2, 3, 1])
    t = torch.full((4,), 0.4)

    conditional = den(x, t, cond=cond, labels=labels)
    net.calls = 0
    torch.testing.assert_close(
        guided(den, 1.0, null_label=0)(x, t, cond=cond, labels=labels), conditional
    )
    assert net.calls == 1

    null = torch.zeros_like(labels)
    unconditional = den(x, t, cond=cond, labels=null)
    net.calls, net.batch_sizes = 0, []
    out = guided(den, 3.0, null_label=0)(x, t, cond=cond, labels=labels)
    assert net.calls == 1 and net.batch_sizes == [8]  # one batched call for both estimates
    torch.testing.assert_close(out, unconditional + 3.0 * (conditional - unconditional))
    torch.testing.assert_close(
        guided(den, 0.0, null_label=0)(x, t, cond=cond, labels=labels), unconditional
    )
    with pytest.raises(ValueError, match="labels"):
        guided(den, 2.0, null_label=0)(x, t)
