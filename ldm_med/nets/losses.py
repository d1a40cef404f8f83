"""Autoencoder training losses: L1 reconstruction, KL, least-squares PatchGAN.

No perceptual loss: MONAI's downloads pretrained weights at run time, which cannot work offline.
"""

from __future__ import annotations

from monai.losses import PatchAdversarialLoss
from torch import Tensor, nn

from ldm_med.nets.autoencoder import VolumeAutoencoder

_ADV = PatchAdversarialLoss(criterion="least_squares")


def kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latent elements, averaged over the batch."""
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


def autoencoder_losses(
    ae: VolumeAutoencoder,
    x: Tensor,
    disc: nn.Module | None = None,
    adv_weight: float = 0.0,
    kl_weight: float = 1e-6,
) -> dict[str, Tensor]:
    """Generator-side losses on a batch ``x (B, C, *spatial)`` (slices for a 2D autoencoder).

    Returns:
        ``l1``, ``kl``, ``adv`` (least-squares generator loss, unweighted; computed only when
        ``disc`` is given and ``adv_weight > 0``, else 0),
        ``total = l1 + kl_weight * kl + adv_weight * adv``, and ``recon`` (the reconstruction, for
        the discriminator step: ``discriminator_loss``).
    """
    recon, mu, logvar = ae(x)
    l1 = (recon - x).abs().mean()
    kl = kl_loss(mu, logvar)
    adv = recon.new_zeros(())
    if disc is not None and adv_weight > 0:
        adv = _ADV(disc(recon)[-1], target_is_real=True, for_discriminator=False)
    total = l1 + kl_weight * kl + adv_weight * adv
    return {"l1": l1, "kl": kl, "adv": adv, "total": total, "recon": recon}


def discriminator_loss(disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Least-squares PatchGAN loss for the discriminator step (``fake`` is detached here)."""
    loss_fake = _ADV(disc(fake.detach())[-1], target_is_real=False, for_discriminator=True)
    loss_real = _ADV(disc(real)[-1], target_is_real=True, for_discriminator=True)
    return 0.5 * (loss_fake + loss_real)


__all__ = ["autoencoder_losses", "discriminator_loss", "kl_loss"]
