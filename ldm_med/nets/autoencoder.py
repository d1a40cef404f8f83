"""``VolumeAutoencoder``: MONAI's ``AutoencoderKL`` with volume-level encode/decode.

A 2D autoencoder (``spatial_dims=2``) is applied slice by slice along dim 2 of a ``(B, C, D, H, W)``
volume, so latent slice ``k`` is computed from image slice ``k`` alone (slice aligned): a slice mask
is exact in latent space. A 3D autoencoder downsamples every axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL
from torch import Tensor, nn

from ldm_med.errors import InputError
from ldm_med.nets.config import AutoencoderConfig
from ldm_med.nets.cpu import slice_batch, use_onednn_convs


def pad_to_multiple(
    x: Tensor, multiple: int | Sequence[int], mode: str = "replicate"
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Pad the trailing spatial dims of ``x`` at their ends up to multiples of ``multiple``.

    Args:
        x: ``(B, C, *spatial)``.
        multiple: an int (every spatial dim) or one int per trailing dim, e.g. ``(f, f)`` pads only
            H and W of a ``(B, C, D, H, W)`` volume; ``ae.volume_multiple`` suits ``encode_volume``.
        mode: ``"replicate"`` (always valid) or ``"reflect"`` (needs pad < size).

    Returns:
        ``(x_padded, crop)``: ``crop(y)`` cuts any ``y`` with ``x_padded``'s trailing spatial shape
        back to ``x``'s.
    """
    nsp = x.ndim - 2
    mult = (multiple,) * nsp if isinstance(multiple, int) else tuple(multiple)
    if not 1 <= len(mult) <= nsp:
        raise InputError(f"pad_to_multiple: {len(mult)} multiples for {nsp} spatial dims")
    sizes = x.shape[x.ndim - len(mult) :]
    pads = [-s % m for s, m in zip(sizes, mult)]
    if not any(pads):
        return x, lambda y: y
    flat = [v for p in reversed(pads) for v in (0, p)]  # F.pad wants (last_lo, last_hi, ...)
    # replicate/reflect pad exactly the last 1-3 dims of a (N, 1, ...) tensor: fold the rest into N
    lead = x.shape[: x.ndim - len(mult)]
    xp = F.pad(x.reshape(-1, 1, *sizes), flat, mode=mode)
    xp = xp.reshape(*lead, *xp.shape[2:])
    index = (Ellipsis, *(slice(0, s) for s in sizes))
    return xp, lambda y: y[index]


class VolumeAutoencoder(nn.Module):
    """KL autoencoder over slices (2D) or volumes (3D).

    Attributes:
        cfg: the ``AutoencoderConfig`` it was built from.
        downsample: ``f``, the in-plane (2D) or per-axis (3D) downsampling factor.
        ae: the wrapped ``monai.networks.nets.AutoencoderKL``.
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.downsample = cfg.downsample
        self.ae = AutoencoderKL(
            spatial_dims=cfg.spatial_dims,
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            num_res_blocks=cfg.num_res_blocks,
            channels=cfg.channels,
            attention_levels=cfg.attention_levels,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.norm_num_groups,
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
            use_flash_attention=True,
        )
        use_onednn_convs(self)

    @property
    def volume_multiple(self) -> tuple[int, int, int]:
        """Required multiple of each of ``(D, H, W)`` for ``encode_volume``."""
        f = self.downsample
        return (1, f, f) if self.cfg.spatial_dims == 2 else (f, f, f)

    # -- per-sample (slices for 2D, volumes for 3D) ---------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, *spatial)`` -> ``(mu, logvar)``, each ``(B, Cz, *spatial / f)``."""
        self._check_multiple(x.shape[2:], (self.downsample,) * self.cfg.spatial_dims)
        h = self.ae.encoder(x)
        mu = self.ae.quant_conv_mu(h)
        logvar = torch.clamp(self.ae.quant_conv_log_sigma(h), -30.0, 20.0)  # as MONAI clamps
        return mu.contiguous(), logvar.contiguous()  # oneDNN may hand back channels-last

    def decode(self, z: Tensor) -> Tensor:
        """``z (B, Cz, *latent)`` -> ``(B, C, *latent * f)``."""
        return self.ae.decode(z).contiguous()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass on ``(B, C, *spatial)``: ``(recon, mu, logvar)`` with a sampled latent."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    # -- volumes -------------------------------------------------------------------------------
    def encode_volume(
        self,
        x: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        batch_slices: int = 64,
    ) -> Tensor:
        """Encode volumes.

        Args:
            x: ``(B, C, D, H, W)``; H, W (and D for 3D) multiples of ``downsample``
                (see ``pad_to_multiple``).
            sample: draw ``z = mu + sigma * eps`` instead of returning ``mu``.
            generator: for ``eps``.
            batch_slices: 2D only: slices per encoder call (bounds memory).

        Returns:
            ``(B, Cz, D, H/f, W/f)`` for 2D (latent slice k from image slice k),
            ``(B, Cz, D/f, H/f, W/f)`` for 3D.
        """
        self._check_volume(x)
        if self.cfg.spatial_dims == 3:
            mu, logvar = self.encode(x)
        else:
            b, d = x.shape[0], x.shape[2]
            batch = slice_batch(batch_slices, x.shape[-2] * x.shape[-1], x.device)
            parts = [self.encode(s) for s in _to_slices(x).split(batch)]
            mu, logvar = (_from_slices(torch.cat(p), b, d) for p in zip(*parts))
        if not sample:
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode_volume(self, z: Tensor, batch_slices: int = 64) -> Tensor:
        """Inverse of ``encode_volume``: ``z (B, Cz, D, h, w)`` -> ``(B, C, D, h*f, w*f)`` (2D)."""
        if z.ndim != 5:
            raise InputError(
                f"decode_volume expects latents (B, Cz, D, H, W), got shape {tuple(z.shape)}"
            )
        if self.cfg.spatial_dims == 3:
            return self.decode(z)
        b, d = z.shape[0], z.shape[2]
        batch = slice_batch(batch_slices, z.shape[-2] * z.shape[-1] * self.downsample**2, z.device)
        return _from_slices(torch.cat([self.decode(s) for s in _to_slices(z).split(batch)]), b, d)

    def _check_volume(self, x: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            raise InputError(
                f"encode_volume expects (B, {self.cfg.in_channels}, D, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        self._check_multiple(x.shape[2:], self.volume_multiple)

    def _check_multiple(self, shape: Sequence[int], mult: Sequence[int]) -> None:
        shape = tuple(shape)[-len(mult) :]
        if any(s % m for s, m in zip(shape, mult)):
            raise InputError(
                f"spatial shape {shape} is not a multiple of {tuple(mult)} "
                f"(autoencoder downsamples by "
                f"{self.downsample}); pad with ldm_med.nets.pad_to_multiple first"
            )


def _to_slices(x: Tensor) -> Tensor:
    """``(B, C, D, H, W)`` -> ``(B*D, C, H, W)``."""
    return x.transpose(1, 2).reshape(-1, x.shape[1], *x.shape[3:])


def _from_slices(s: Tensor, b: int, d: int) -> Tensor:
    """``(B*D, C, H, W)`` -> ``(B, C, D, H, W)``."""
    return s.reshape(b, d, *s.shape[1:]).transpose(1, 2).contiguous()


class SliceDecoder(nn.Module):
    """A decoder alone for a 2D ``VolumeAutoencoder``'s latents (``decode`` only): MONAI's ``Decoder`` and
    the 1x1 convolution before it, as ``AutoencoderKL`` builds them, from an ``AutoencoderConfig``.

    The uncertainty map decodes every posterior sample; a smaller decoder distilled from the
    autoencoder's own (``ldm_med.train.decoder``) does that at a third of the cost.
    """

    def __init__(self, cfg: AutoencoderConfig) -> None:
        from monai.networks.blocks import Convolution
        from monai.networks.nets.autoencoderkl import Decoder

        super().__init__()
        if cfg.spatial_dims != 2:
            raise InputError("SliceDecoder: slice decoders are 2D (spatial_dims=2)")
        self.cfg, self.downsample = cfg, cfg.downsample
        z = cfg.latent_channels
        self.post_quant_conv = Convolution(spatial_dims=2, in_channels=z, out_channels=z, strides=1,
                                           kernel_size=1, padding=0, conv_only=True)
        self.decoder = Decoder(spatial_dims=2, channels=cfg.channels, in_channels=z,
                               out_channels=cfg.in_channels,
                               num_res_blocks=(cfg.num_res_blocks,) * len(cfg.channels),
                               norm_num_groups=cfg.norm_num_groups, norm_eps=1e-6,
                               attention_levels=cfg.attention_levels, with_nonlocal_attn=False,
                               use_flash_attention=True)
        use_onednn_convs(self)

    def decode(self, z: Tensor) -> Tensor:
        """``z (B, Cz, h, w)`` -> ``(B, C, h * f, w * f)``, as ``VolumeAutoencoder.decode``."""
        return self.decoder(self.post_quant_conv(z)).contiguous()


def build_autoencoder(cfg: AutoencoderConfig) -> VolumeAutoencoder:
    """Build the autoencoder described by ``cfg``."""
    return VolumeAutoencoder(cfg)
