"""Networks built from typed configs: KL autoencoders (2D slice-aligned or 3D) and denoisers
(U-Net or DiT, 2D or 3D) sharing ``forward(x, t, cond=None, labels=None)``."""

from __future__ import annotations

from torch import nn

from ldm_med.nets.autoencoder import VolumeAutoencoder, build_autoencoder, pad_to_multiple
from ldm_med.nets.config import (
    DEFAULT_DIT_3D,
    DEFAULT_UNET_3D,
    DIT_PRESETS,
    AutoencoderConfig,
    DenoiserConfig,
)
from ldm_med.nets.discriminator import build_discriminator
from ldm_med.nets.dit import DiTDenoiser
from ldm_med.nets.losses import autoencoder_losses, discriminator_loss, kl_loss
from ldm_med.nets.unet import (
    DenoiserBase,
    UNetDenoiser,
    expand_input_channels,
    parameter_count,
    required_multiple,
)

DENOISERS: dict[str, type[DenoiserBase]] = {"unet": UNetDenoiser, "dit": DiTDenoiser}


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    """Build the denoiser named by ``cfg.arch`` (see ``DENOISERS``)."""
    return DENOISERS[cfg.arch](cfg)  # cfg.arch is validated by DenoiserConfig


__all__ = [
    "DEFAULT_DIT_3D",
    "DEFAULT_UNET_3D",
    "DENOISERS",
    "DIT_PRESETS",
    "AutoencoderConfig",
    "DenoiserBase",
    "DenoiserConfig",
    "DiTDenoiser",
    "UNetDenoiser",
    "VolumeAutoencoder",
    "autoencoder_losses",
    "build_autoencoder",
    "build_denoiser",
    "build_discriminator",
    "discriminator_loss",
    "expand_input_channels",
    "kl_loss",
    "pad_to_multiple",
    "parameter_count",
    "required_multiple",
]
