"""Guided latent sampling of one generation model: noise -> latent -> decoded sample in physical units."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ldm_med.generation.conditioning import attribute_channels
from ldm_med.generation.model import GenerationModel


def guided_denoiser(model: GenerationModel, label: int, attrs: torch.Tensor, guidance: float,
                    latent: tuple[int, ...]) -> Callable:
    """``x0(x_t, t)`` with classifier-free guidance: ``x0_u + guidance * (x0_c - x0_u)``, where the
    conditional branch has the class ``label`` and the attributes ``attrs`` (``(1, K)`` normalised, NaN =
    not requested) and the unconditional one neither. ``guidance`` 1 is the plain conditional model, 0
    the unconditional one; both branches run as one doubled batch."""
    k = len(model.attributes)
    dev = attrs.device
    cond_c = attribute_channels(attrs, latent, k)
    cond_u = attribute_channels(torch.full_like(attrs, float("nan")), latent, k)
    labels_c = torch.tensor([label], device=dev) if model.label_names else None
    labels_u = torch.tensor([model.null_label], device=dev) if model.label_names else None
    den = model.denoiser

    def cat(a, b):
        return None if a is None else torch.cat([a, b])

    def fn(x: torch.Tensor, t) -> torch.Tensor:
        if guidance == 1.0:
            return den(x, t, cond=cond_c, labels=labels_c)
        if guidance == 0.0:
            return den(x, t, cond=cond_u, labels=labels_u)
        tt = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        both = den(torch.cat([x, x]), torch.cat([tt, tt]), cond=cat(cond_c, cond_u),
                   labels=cat(labels_c, labels_u))
        x0_c, x0_u = both.chunk(2)
        return x0_u + guidance * (x0_c - x0_u)

    return fn


@torch.no_grad()
def sample_one(model: GenerationModel, *, label: int, attrs: torch.Tensor, guidance: float, sampler: str,
               steps: int, size: tuple[int, ...], seed: int, device: torch.device,
               callback: Callable | None = None) -> np.ndarray:
    """One sample of ``size`` ((H, W) or (D, H, W)), in the model's range (about [-1, 1]). The noise comes
    from a CPU generator seeded with ``seed`` alone, so a seed gives the same sample in any batch."""
    from ldm_med.diffusion.samplers import sample

    f = model.ae.downsample
    latent = (*size[:-2], size[-2] // f, size[-1] // f)
    fn = guided_denoiser(model, label, attrs.to(device), guidance, latent)
    gen = torch.Generator().manual_seed(int(seed))
    z = sample(sampler, fn, (1, model.latent_channels, *latent), model.sde, steps, generator=gen,
               device=device, callback=callback)
    z = z / model.latent_scale
    x = model.ae.decode(z) if len(size) == 2 else model.ae.decode_volume(z)
    return x.float().cpu().numpy()[0, 0]
