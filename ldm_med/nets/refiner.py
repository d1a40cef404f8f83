"""A small 2D network that corrects interpolated rows of a through-plane image.

It sees planes ``(A, L)``: ``A`` an in-plane axis, ``L`` the slice axis, with missing rows (``L``
positions) filled by linear interpolation. Input channels are the interpolated plane and the
missing-row mask; the output is the plane plus a correction on missing rows only, so acquired rows pass
through exactly. The last layer starts at zero: an untrained refiner *is* linear interpolation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class SliceGapRefiner(nn.Module):
    """Residual CNN ``(x_lin, missing) -> x_lin + missing * f([x_lin, missing])``.

    Args:
        channels: feature channels of the hidden layers.
        depth: number of 3x3 convolutions (receptive field ``2 * depth + 1`` pixels).
    """

    def __init__(self, channels: int = 32, depth: int = 6):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(2, channels, 3, padding=1), nn.LeakyReLU(0.1)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.1)]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)
        self.channels, self.depth = channels, depth

    def forward(self, x_lin: Tensor, missing: Tensor) -> Tensor:
        """``x_lin (B, 1, A, L)``, ``missing (B, 1, 1 or A, L)`` float 0/1 -> ``(B, 1, A, L)``."""
        m = missing.to(x_lin.dtype).expand_as(x_lin)
        return x_lin + self.body(torch.cat([x_lin, m], dim=1)) * m
