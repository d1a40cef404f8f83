"""The denoiser families by name: ``build_denoiser(cfg)`` builds the one ``cfg.arch`` names."""
from __future__ import annotations

from torch import nn

from ldm_med.nets.config import DenoiserConfig
from ldm_med.nets.dit import DiTDenoiser
from ldm_med.nets.unet import DenoiserBase, UNetDenoiser

DENOISERS: dict[str, type[DenoiserBase]] = {"unet": UNetDenoiser, "dit": DiTDenoiser}


def build_denoiser(cfg: DenoiserConfig) -> nn.Module:
    """Build the denoiser named by ``cfg.arch`` (see ``DENOISERS``)."""
    return DENOISERS[cfg.arch](cfg)  # cfg.arch is validated by DenoiserConfig
