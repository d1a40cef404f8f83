"""The slice-inpainting formulation shared by training and reconstruction.

An interpolation estimate ``x_c`` (``ANCHOR``) anchors the result; the diffusion model generates, in the
latent space of a slice-aligned autoencoder ``E``/``D``, the residual that interpolation misses:

    z   = s E(x)                       latent of the true slab (s = latent_scale)
    z_c = s E(x_c)                     latent of the interpolated slab; equals z on acquired slices
    r   = (z - z_c) / s_r              the diffusion variable (s_r = residual_scale), zero on acquired slices
    cond = [z_c, m]                    m = 1 on missing slices

and in pixel space the result is ``x_c + D(z_c + s_r r) - D(z_c)`` on missing slices, so the decoder's own
error largely cancels (``../docs/method.md``); acquired slices are pasted from the input, bit-exact.
Because ``E`` works slice by slice, latent slice k is image slice k and the slice mask is exact in latent
space.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_med.inpainting.interpolate import fill_missing_batch

# Interpolation that anchors the result. Linear, because on CT and MR edges cubic splines overshoot and
# score below linear at every gap size we measured (phantoms and nibabel's EPI alike).
ANCHOR = "linear"


@dataclass
class InpaintingExample:
    """One training/conditioning example. Shapes: ``(B, Cz, D, h, w)`` and ``(B, Cz + 1, D, h, w)``."""

    target: Tensor
    cond: Tensor
    z_c: Tensor


def slice_weight(missing: Tensor, like: Tensor) -> Tensor:
    """``(B, D)`` bool -> float ``(B, 1, D, 1, ..., 1)`` broadcastable against ``like`` ``(B, C, D, *sp)``."""
    shape = missing.shape + (1,) * (like.ndim - 3)
    return missing.to(like.dtype).reshape(missing.shape[0], 1, *shape[1:])


def encode_slices(ae: torch.nn.Module, x: Tensor) -> Tensor:
    """Deterministic latent (the posterior mean) of slices ``x (N, 1, H, W)`` -> ``(N, Cz, h, w)``."""
    mu, _ = ae.encode(x)
    return mu


@torch.no_grad()
def anchor_latents(ae: torch.nn.Module, x: Tensor, x_c: Tensor, missing: Tensor,
                   latent_scale: float) -> tuple[Tensor, Tensor]:
    """Latents of the true slab ``z`` and of the interpolated slab ``z_c``, encoding each slice once.

    Args:
        x: ``(B, 1, D, H, W)`` slabs (values in missing slices may be anything for ``z_c``).
        x_c: ``(B, 1, D, H, W)`` the same slabs with missing slices interpolated.
        missing: ``(B, D)`` bool.

    Returns:
        ``z, z_c`` each ``(B, Cz, D, h, w)``; ``z_c`` equals ``z`` on acquired slices exactly.
    """
    z = ae.encode_volume(x) * latent_scale
    z_c = z.clone()
    miss_slices = x_c.transpose(1, 2)[missing]  # (N_missing, 1, H, W)
    if miss_slices.shape[0]:
        z_miss = encode_slices(ae, miss_slices) * latent_scale  # (N_missing, Cz, h, w)
        z_c.transpose(1, 2)[missing] = z_miss
    return z, z_c


def conditioning(z_c: Tensor, missing: Tensor) -> Tensor:
    """``[z_c, m]`` on channels: ``(B, Cz + 1, D, h, w)``."""
    m = slice_weight(missing, z_c).expand(z_c.shape[0], 1, *z_c.shape[2:])
    return torch.cat([z_c, m], dim=1)


@torch.no_grad()
def inpainting_example(ae: torch.nn.Module, x: Tensor, missing: Tensor, latent_scale: float,
                       residual_scale: float, method: str = ANCHOR) -> InpaintingExample:
    """Build the diffusion target and conditioning for pixel slabs ``x (B, 1, D, H, W)``.

    ``missing`` is ``(B, D)`` bool. The target is zero on acquired slices.
    """
    x_c = fill_missing_batch(x, missing, method)
    z, z_c = anchor_latents(ae, x, x_c, missing, latent_scale)
    target = (z - z_c) / residual_scale
    return InpaintingExample(target=target, cond=conditioning(z_c, missing), z_c=z_c)


@torch.no_grad()
def estimate_residual_scale(ae: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                            latent_scale: float, method: str = ANCHOR) -> float:
    """Standard deviation of ``z - z_c`` over missing slices, so the diffusion variable has unit scale."""
    total, total_sq, count = 0.0, 0.0, 0
    for x, missing in batches:
        ex = inpainting_example(ae, x, missing, latent_scale, 1.0, method)
        w = slice_weight(missing, ex.target).expand_as(ex.target)
        vals = ex.target[w > 0].double()
        total, total_sq = total + vals.sum().item(), total_sq + (vals**2).sum().item()
        count += vals.numel()
    if count == 0:
        return 1.0
    mean = total / count
    return float(max((total_sq / count - mean**2) ** 0.5, 1e-6))
