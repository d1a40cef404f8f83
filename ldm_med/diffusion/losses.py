"""The denoising training loss, with Min-SNR-gamma weighting (Hang et al. 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from ldm_med.diffusion.precond import Denoiser
from ldm_med.errors import InputError
from ldm_med.utils import precise_dtype, rand, randn

WEIGHTINGS = ("min-snr", "none")


def stratified_times(
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    t_eps: float = 1e-3,
) -> Tensor:
    """``n`` times in ``[t_eps, 1)``, low-discrepancy over the batch (Kingma et al. 2021, VDM).

    ``u_i = frac(u_0 + i / n)`` with one uniform ``u_0``: each is marginally uniform and together
    they cover ``[0, 1)`` evenly, which lowers the variance of the batch loss.
    """
    dtype = precise_dtype(device or "cpu")
    u0 = rand((1,), generator=generator, device=device, dtype=dtype)
    u = torch.remainder(u0 + torch.arange(n, device=u0.device, dtype=dtype) / n, 1.0)
    return t_eps + (1.0 - t_eps) * u


def snr_weight(
    snr: Tensor, prediction: str, weighting: str = "min-snr", gamma: float = 5.0
) -> Tensor:
    """Per-sample loss weight: every prediction type gets the x0-space weight ``min(snr, gamma)``.

    MSE in eps equals ``snr`` x (MSE in x0), in v ``snr + 1`` x: eps weight ``min(snr, g) / snr``,
    v weight ``min(snr, g) / (snr + 1)``, x0 weight ``min(snr, g)``. ``"none"``: all ones.
    """
    if weighting == "none":
        return torch.ones_like(snr)
    if weighting != "min-snr":
        raise InputError(f"unknown loss weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return (gamma / snr).clamp(max=1.0)  # = min(snr, gamma) / snr, but 1 (not 0/0) at snr 0
    if prediction == "v":
        return clipped / (snr + 1.0)
    return clipped


def diffusion_loss(
    denoiser: Denoiser,
    x0: Tensor,
    *,
    cond: Tensor | None = None,
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    weighting: str = "min-snr",
    gamma: float = 5.0,
    t_eps: float = 1e-3,
    mask: Tensor | None = None,
) -> Tensor:
    """Weighted denoising MSE of a batch, a float32 scalar with gradients.

    Args:
        denoiser: the preconditioned network.
        x0: ``(B, C, *spatial)`` clean data.
        cond, labels: passed to the network.
        generator: source of the times and noise (reproducible training).
        weighting: ``"min-snr"`` (with ``gamma``) or ``"none"``.
        t_eps: smallest training time.
        mask: optional, broadcastable to ``x0``; **True (or 1) marks elements EXCLUDED from
            the loss** (e.g. acquired slices). Each sample's MSE is the mean over its unmasked
            elements; samples with nothing unmasked are left out of the batch mean.
    """
    x0 = x0.float()
    t = stratified_times(x0.shape[0], generator, x0.device, t_eps)
    snr = torch.exp(denoiser.sde.log_snr(t))
    w = snr_weight(snr, denoiser.prediction, weighting, gamma).float()
    noise = randn(x0.shape, generator=generator, device=x0.device)
    x_t = denoiser.sde.marginal(x0, t, noise)
    out = denoiser.net_output(x_t, t, cond=cond, labels=labels)
    err = (out - denoiser.training_target(x0, noise, t)).square()
    if mask is None:
        return (w * err.flatten(1).mean(1)).mean()
    keep = 1.0 - mask.to(device=x0.device, dtype=err.dtype).expand_as(err)
    count = keep.flatten(1).sum(1)
    per_sample = (err * keep).flatten(1).sum(1) / count.clamp(min=1.0)
    n_valid = (
        (count > 0).sum().clamp(min=1)
    )  # no host sync; an all-masked batch gives 0 with a graph
    return (w * per_sample).sum() / n_valid
