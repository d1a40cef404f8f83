"""Networks built from typed configs: KL autoencoders (2D slice-aligned or 3D) and denoisers
(U-Net or DiT, 2D or 3D) sharing ``forward(x, t, cond=None, labels=None)``; the slice-gap refiner.

Names are imported on first use: the refiner (``ldm_med.nets.refiner``), all a default reconstruction
runs, does not pay for importing MONAI (2 s of a job's start-up).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ldm_med.lazy import lazy_attributes

# public name -> the submodule that defines it
_LAZY = {
    "SliceDecoder": "autoencoder", "VolumeAutoencoder": "autoencoder", "build_autoencoder": "autoencoder",
    "pad_to_multiple": "autoencoder",
    "DEFAULT_DIT_3D": "config", "DEFAULT_UNET_3D": "config", "DIT_PRESETS": "config",
    "AutoencoderConfig": "config", "DenoiserConfig": "config",
    "DENOISERS": "denoisers", "build_denoiser": "denoisers",
    "build_discriminator": "discriminator",
    "DiTDenoiser": "dit",
    "autoencoder_losses": "losses", "discriminator_loss": "losses", "kl_loss": "losses",
    "DenoiserBase": "unet", "UNetDenoiser": "unet", "expand_input_channels": "unet",
    "parameter_count": "unet", "required_multiple": "unet",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports them
    from ldm_med.nets.autoencoder import (  # noqa: F401
        SliceDecoder,
        VolumeAutoencoder,
        build_autoencoder,
        pad_to_multiple,
    )
    from ldm_med.nets.config import (  # noqa: F401
        DEFAULT_DIT_3D,
        DEFAULT_UNET_3D,
        DIT_PRESETS,
        AutoencoderConfig,
        DenoiserConfig,
    )
    from ldm_med.nets.denoisers import DENOISERS, build_denoiser  # noqa: F401
    from ldm_med.nets.discriminator import build_discriminator  # noqa: F401
    from ldm_med.nets.dit import DiTDenoiser  # noqa: F401
    from ldm_med.nets.losses import autoencoder_losses, discriminator_loss, kl_loss  # noqa: F401
    from ldm_med.nets.unet import (  # noqa: F401
        DenoiserBase,
        UNetDenoiser,
        expand_input_channels,
        parameter_count,
        required_multiple,
    )


__getattr__, __dir__ = lazy_attributes("ldm_med.nets", {n: f"ldm_med.nets.{m}" for n, m in _LAZY.items()},
                                       globals())
