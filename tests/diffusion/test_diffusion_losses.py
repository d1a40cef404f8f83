"""diffusion_loss: Min-SNR weights, reproducibility, gradients, masking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldm_med.diffusion.losses import diffusion_loss, snr_weight, stratified_times
from ldm_med.diffusion.precond import PREDICTIONS, Denoiser
from ldm_med.diffusion.sde import VPSDE
from ldm_med.errors import InputError
from ldm_med.utils import randn


class PointwiseNet(nn.Module):
    """A 1x1x1 convolution: each output element depends only on the same input element."""

    def __init__(self, channels: int = 2):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 1)

    def forward(self, x, t, cond=None, labels=None):
        return self.conv(x) + 1e-3 * t.view(-1, 1, 1, 1, 1)


def test_min_snr_weights_by_hand():
    snr = torch.tensor([0.1, 1.0, 5.0, 20.0], dtype=torch.float64)
    g = 5.0
    clipped = torch.tensor([0.1, 1.0, 5.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(snr_weight(snr, "eps", gamma=g), clipped / snr)
    torch.testing.assert_close(snr_weight(snr, "v", gamma=g), clipped / (snr + 1))
    torch.testing.assert_close(snr_weight(snr, "x0", gamma=g), clipped)
    torch.testing.assert_close(snr_weight(snr, "v", "none"), torch.ones_like(snr))
    with pytest.raises(InputError, match="min-snr, none"):
        snr_weight(snr, "v", "p2")


def test_stratified_times_cover_the_interval():
    t = stratified_times(8, torch.Generator().manual_seed(3), t_eps=1e-3)
    assert t.dtype == torch.float64 and t.min() >= 1e-3 and t.max() < 1.0
    u = (t - 1e-3) / (1 - 1e-3)
    assert sorted((u * 8).floor().long().tolist()) == list(range(8))  # one per stratum


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_loss_matches_hand_computation(prediction):
    sde = VPSDE()
    net = PointwiseNet()
    den = Denoiser(net, sde, prediction=prediction)
    x0 = torch.randn(4, 2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    loss = diffusion_loss(den, x0, generator=torch.Generator().manual_seed(7))
    assert loss.ndim == 0 and loss.dtype == torch.float32 and loss.requires_grad

    # replay the same random draws
    gen = torch.Generator().manual_seed(7)
    t = stratified_times(4, gen, t_eps=1e-3)
    noise = randn(x0.shape, generator=gen)
    x_t = sde.marginal(x0, t, noise)
    with torch.no_grad():
        err = (
            (den.net_output(x_t, t) - den.training_target(x0, noise, t)).square().flatten(1).mean(1)
        )
    snr = torch.exp(sde.log_snr(t))
    clipped = snr.clamp(max=5.0)
    w = {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]
    torch.testing.assert_close(loss.detach(), (w.float() * err).mean())

    loss.backward()
    assert net.conv.weight.grad is not None and net.conv.weight.grad.abs().sum() > 0


def test_same_generator_same_loss():
    den = Denoiser(PointwiseNet(), VPSDE("cosine"))
    x0 = torch.randn(3, 2, 2, 2, 2)
    a = diffusion_loss(den, x0, generator=torch.Generator().manual_seed(1))
    b = diffusion_loss(den, x0, generator=torch.Generator().manual_seed(1))
    c = diffusion_loss(den, x0, generator=torch.Generator().manual_seed(2))
    assert a.item() == b.item() and a.item() != c.item()


def test_masked_elements_are_ignored():
    den = Denoiser(PointwiseNet(), VPSDE(), prediction="eps")
    x0 = torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(3, 1, 4, 1, 1, dtype=torch.bool)
    mask[:, :, 1:3] = True  # e.g. acquired slices along the depth axis
    garbage = x0.clone()
    garbage[:, :, 1:3] = 1e3
    loss = diffusion_loss(den, x0, mask=mask, generator=torch.Generator().manual_seed(4))
    same = diffusion_loss(den, garbage, mask=mask, generator=torch.Generator().manual_seed(4))
    unmasked = diffusion_loss(den, garbage, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(loss, same)
    assert unmasked.item() > 100 * loss.item()

    everything = torch.ones(3, 1, 4, 3, 3, dtype=torch.bool)
    zero = diffusion_loss(den, x0, mask=everything, generator=torch.Generator().manual_seed(4))
    assert zero.item() == 0.0 and zero.requires_grad
