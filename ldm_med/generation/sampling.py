"""Guided latent sampling of one generation model: noise -> latent -> decoded sample in physical units."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ldm_med.generation.conditioning import attribute_channels
from ldm_med.generation.model import GenerationModel


def guided_denoiser(model: GenerationModel, label: int, attrs: torch.Tensor, guidance: float,
                    latent: tuple[int, ...], attr_guidance: float | None = None,
                    drawn: torch.Tensor | None = None) -> Callable:
    """``x0(x_t, t)`` with classifier-free guidance: ``x0_u + guidance * (x0_c - x0_u)``, where the
    conditional branch has the class ``label`` and the attributes ``attrs`` (``(1, K)`` normalised, NaN =
    none) and the unconditional one neither. ``guidance`` 1 is the plain conditional model, 0 the
    unconditional one; the branches run as one batch.

    ``attr_guidance`` (with an attribute requested) guides the requested attributes apart from the
    class, against the class-only branch (training drops the attributes alone too, so the network is that
    model as well): ``x0_u + guidance * (x0_k - x0_u) + attr_guidance * (x0_c - x0_k)``, a third branch
    (none extra at ``guidance`` 1, where ``x0_u`` cancels). Equal scales give the formula above; ``None``
    means equal. ``drawn`` (``(1, K)``, NaN where not drawn) marks the attributes of ``attrs`` drawn from
    the training distribution rather than requested: they belong to the class-only branch, guided with
    the class, so ``attr_guidance`` pushes only what the user asked for."""
    k = len(model.attributes)
    dev = attrs.device
    none = torch.full_like(attrs, float("nan"))
    drawn = none if drawn is None else drawn.to(dev)
    cond_c = attribute_channels(attrs, latent, k)
    cond_u = attribute_channels(none, latent, k)
    cond_k = cond_u if drawn is none else attribute_channels(drawn, latent, k)
    labels_c = torch.tensor([label], device=dev) if model.label_names else None
    labels_u = torch.tensor([model.null_label], device=dev) if model.label_names else None
    den = model.denoiser
    requested = bool((torch.isfinite(attrs) & ~torch.isfinite(drawn)).any())
    separate = attr_guidance is not None and attr_guidance != guidance and requested
    parts = [(cond_c, labels_c)]  # the branches: conditional,
    if separate:
        parts.append((cond_k, labels_c))  # class only (with the drawn attributes),
    if not separate or guidance != 1.0:
        parts.append((cond_u, labels_u))  # unconditional (the class at guidance 1 needs none)
    cond = torch.cat([c for c, _ in parts])
    labels = None if labels_c is None else torch.cat([lab for _, lab in parts])

    def fn(x: torch.Tensor, t) -> torch.Tensor:
        if not separate and guidance == 1.0:
            return den(x, t, cond=cond_c, labels=labels_c)
        if not separate and guidance == 0.0:
            return den(x, t, cond=cond_u, labels=labels_u)
        n = len(parts)
        tt = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        out = den(torch.cat([x] * n), torch.cat([tt] * n), cond=cond, labels=labels).chunk(n)
        if not separate:
            x0_c, x0_u = out
            return x0_u + guidance * (x0_c - x0_u)
        x0_c, x0_k = out[:2]
        x0 = x0_k if n == 2 else out[2] + guidance * (x0_k - out[2])  # the class, guided
        return x0 + attr_guidance * (x0_c - x0_k)

    return fn


@torch.no_grad()
def sample_one(model: GenerationModel, *, label: int, attrs: torch.Tensor, guidance: float, sampler: str,
               steps: int, size: tuple[int, ...], seed: int, device: torch.device,
               callback: Callable | None = None, attr_guidance: float | None = None,
               drawn: torch.Tensor | None = None, project: Callable | None = None) -> np.ndarray:
    """One sample of ``size`` ((H, W) or (D, H, W)), in the model's range (about [-1, 1]); the guidance
    as ``guided_denoiser`` says, ``project(x0_hat, t)`` (``ldm_med.generation.steer``) applied to every
    estimate the sampler uses. The noise comes from a CPU generator seeded with ``seed`` alone, so a
    seed gives the same sample in any batch."""
    from ldm_med.diffusion.samplers import sample

    f = model.ae.downsample
    latent = (*size[:-2], size[-2] // f, size[-1] // f)
    fn = guided_denoiser(model, label, attrs.to(device), guidance, latent, attr_guidance, drawn)
    gen = torch.Generator().manual_seed(int(seed))
    z = sample(sampler, fn, (1, model.latent_channels, *latent), model.sde, steps, generator=gen,
               device=device, callback=callback, project=project)
    return model.decode(z).float().cpu().numpy()[0, 0]
