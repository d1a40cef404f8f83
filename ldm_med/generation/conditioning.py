"""Attribute conditioning: ``K`` continuous attributes become ``2K`` constant input channels.

For each attribute the denoiser sees its normalised value (``low -> -1``, ``high -> 1``) and a *present*
flag, broadcast over the latent grid and concatenated to the noisy latent like any other conditioning
channel; an absent attribute is ``(0, 0)``. This works unchanged for the U-Net and the transformer.
Dropping labels and attributes during training (``labels.dropout``) teaches the same network the
unconditional model that classifier-free guidance needs.
"""
from __future__ import annotations

import torch
from torch import Tensor


def attribute_channels(attrs: Tensor | None, spatial: tuple[int, ...], k: int) -> Tensor | None:
    """``(B, K)`` normalised attributes (NaN = absent) -> ``(B, 2K, *spatial)``; None when ``k == 0``."""
    if k == 0:
        return None
    if attrs is None or attrs.shape[1] != k:
        got = None if attrs is None else tuple(attrs.shape)
        raise ValueError(f"expected attributes of shape (B, {k}), got {got}")
    present = ~torch.isnan(attrs)
    values = torch.where(present, attrs, torch.zeros_like(attrs))
    flat = torch.stack([values, present.to(attrs.dtype)], dim=2).reshape(attrs.shape[0], 2 * k)
    return flat.reshape(*flat.shape, *([1] * len(spatial))).expand(*flat.shape, *spatial).contiguous()


def drop_conditioning(labels: Tensor, attrs: Tensor | None, null_label: int, p_all: float, p_attrs: float,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Classifier-free-guidance dropout: with probability ``p_all`` a sample loses its label and its
    attributes; with ``p_attrs`` (of the rest) only its attributes."""
    from ldm_med.utils import rand

    b = labels.shape[0]
    u = rand((b,), generator=generator, device=labels.device)
    drop_all = u < p_all
    labels = torch.where(drop_all, torch.full_like(labels, null_label), labels)
    if attrs is not None:
        drop_attrs = drop_all | (rand((b,), generator=generator, device=labels.device) < p_attrs)
        attrs = torch.where(drop_attrs[:, None], torch.full_like(attrs, float("nan")), attrs)
    return labels, attrs
