"""A tiny autoencoder and tiny denoisers learn a fixed batch in 20 steps."""

from __future__ import annotations

import pytest
import torch

from ldm_med.nets import (
    AutoencoderConfig,
    DenoiserConfig,
    autoencoder_losses,
    build_autoencoder,
    build_denoiser,
    build_discriminator,
    discriminator_loss,
    kl_loss,
)


def smooth_images(n: int, size: int = 16) -> torch.Tensor:
    """``(n, 1, size, size)`` blobs and ramps: structure an autoencoder can learn quickly."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    c = torch.rand(n, 4, generator=g) * 2 - 1
    img = (
        torch.exp(-((xx - c[:, :1, None]) ** 2 + (yy - c[:, 1:2, None]) ** 2) * 4)
        + 0.3 * c[:, 2:3, None] * xx
    )
    return img.unsqueeze(1)


def test_kl_loss_is_zero_for_the_prior_and_positive_otherwise():
    zeros = torch.zeros(2, 4, 3, 3)
    assert kl_loss(zeros, zeros) == 0
    assert kl_loss(zeros + 1, zeros) == pytest.approx(0.5 * 36)


def test_tiny_autoencoder_learns_with_adversarial_loss():
    torch.manual_seed(0)
    ae = build_autoencoder(
        AutoencoderConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=8)
    )
    disc = build_discriminator(spatial_dims=2, channels=8, num_layers=2)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    x = smooth_images(8)
    l1 = []
    for _ in range(20):
        losses = autoencoder_losses(ae, x, disc=disc, adv_weight=0.01)
        assert set(losses) == {"l1", "kl", "adv", "total", "recon"}
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        d_loss = discriminator_loss(disc, x, losses["recon"])
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        l1.append(losses["l1"].item())
    assert losses["adv"] > 0 and torch.isfinite(d_loss)
    assert l1[-1] < 0.5 * l1[0]


def test_autoencoder_losses_skip_the_discriminator_without_weight():
    ae = build_autoencoder(
        AutoencoderConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=8)
    )
    called = []
    disc = build_discriminator(spatial_dims=2, channels=8, num_layers=2)
    disc.register_forward_hook(lambda *a: called.append(1))
    losses = autoencoder_losses(ae, smooth_images(2), disc=disc, adv_weight=0.0)
    assert losses["adv"] == 0 and not called


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_tiny_denoiser_learns_a_fixed_batch(arch):
    torch.manual_seed(0)
    cfg = DenoiserConfig(
        arch=arch,
        spatial_dims=2,
        in_channels=1,
        cond_channels=1,
        channels=(8, 16),
        attention_levels=(False, False),
        norm_num_groups=8,
        num_head_channels=8,
        hidden_size=32,
        depth=2,
        num_heads=2,
    )
    model = build_denoiser(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x0 = smooth_images(8)
    eps = torch.randn_like(x0)
    t = torch.linspace(100, 900, 8)
    alpha = torch.cos(t / 1000 * torch.pi / 2).view(-1, 1, 1, 1)
    xt = alpha * x0 + (1 - alpha**2).sqrt() * eps
    losses = []
    for _ in range(20):
        loss = (model(xt, t, cond=x0 * 0.5) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
