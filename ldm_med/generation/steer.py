"""Attribute steering: the requested attribute's own measure, made differentiable, pulls the sampler's
denoised estimate toward the request on the last steps.

Classifier-free guidance tells the 3D molecular model which particle size was asked for, but it follows
only loosely (radius Spearman 0.44 on the benchmark's sweep, ``docs/generation.md``): the size is decided
late in sampling and depends on the solver's path. Where the class's attribute has a differentiable
measure, each late step edits the estimate ``x0_hat`` (the latent) by the smallest step that moves the
measured attribute of its decoded volume a share ``strength`` of the way to the request (a Gauss-Newton
step on the measure through the decoder: ``x0 += strength * (target - a) * g / |g|^2``, ``g = da/dx0``),
and the sampler carries on from there, so the denoiser's later steps see the edited estimate. This is
the forward step of universal guidance (Bansal et al. 2023) applied in ``x0`` space, with the class's
own measure in place of a classifier: the measure the benchmark and ``--candidates`` use, on the same
decoded, bias-corrected, physical-unit volume.

Only ``radius_of_gyration`` has a differentiable measure (the particle's region is chosen as the numpy
measure chooses it, the weights differentiate); counts and thresholded areas do not. An edit costs a
decoder pass and its gradient, hence the window of late steps; on CUDA each edit waits for the host,
which chooses the region (scipy). Measured in ``docs/generation.md``, "Attribute steering".
"""
from __future__ import annotations

from collections.abc import Callable

import torch

T_MAX = 0.2  # steer on sampler times t <= T_MAX (the particle's size is settled late)
T_MIN = 0.01  # ... and >= T_MIN: the last steps hardly move it
MAX_STEP = 0.5  # an edit's norm at most this share of the estimate's


def steerable(name: str) -> bool:
    """Whether attribute ``name`` has a differentiable measure."""
    return name in _MEASURES


def attribute_steer(decode: Callable[[torch.Tensor], torch.Tensor], info: dict, name: str, target: float,
                    strength: float, log: list | None = None) -> Callable:
    """``project(x0, t) -> x0``: the sampler hook (``ldm_med.diffusion.samplers``) that edits the latent
    estimate of one sample toward ``target`` (physical units) on times in ``[T_MIN, T_MAX]``.

    Args:
        decode: latent ``(1, C, ...)`` -> decoded ``(1, 1, ...)`` in the model's range (differentiable).
        info: the class's model entry (``stretch``, ``spacing``, ``decoder_bias``).
        log: when given, ``(t, measured before the edit)`` is appended per edit.
    """
    from ldm_med.data.presets import Stretch
    from ldm_med.generation.grain import debias_tensor

    measure = _MEASURES[name]
    stretch = Stretch.from_dict(info["stretch"])
    spacing = _decoded_spacing(info["spacing"])

    def physical(z: torch.Tensor) -> torch.Tensor:
        x = decode(z)[0, 0].float()
        if info.get("decoder_bias"):
            x = debias_tensor(x, info["decoder_bias"])
        return stretch.inverse_tensor(x)

    def project(x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = float(t.reshape(-1)[0])
        if not T_MIN <= tt <= T_MAX:
            return x0
        with torch.enable_grad(), _no_autocast(x0.device):
            z = x0.detach().float().requires_grad_(True)
            value = measure(physical(z), spacing)
            (grad,) = torch.autograd.grad(value, z)
        value = float(value.detach())
        if log is not None:
            log.append((round(tt, 4), round(value, 3)))
        step = strength * (target - value) * grad / grad.pow(2).sum().clamp_min(1e-12)
        limit = MAX_STEP * float(x0.norm())
        norm = float(step.norm())
        if norm > limit:
            step = step * (limit / norm)
        return (x0 + step.to(x0.dtype)).detach()

    return project


def soft_radius_of_gyration(data: torch.Tensor, spacing: tuple[float, ...]) -> torch.Tensor:
    """``ldm_med.data.presets.radius_of_gyration`` in torch: the same particle region (chosen on the
    detached values), the density above the background differentiable."""
    from ldm_med.data.presets import particle_region

    region, background = particle_region(data.detach().double().cpu().numpy())
    w = torch.relu(data - background) * torch.from_numpy(region).to(data.device, data.dtype)
    total = w.sum().clamp_min(1e-12)
    grids = torch.meshgrid(*[torch.arange(n, device=data.device, dtype=data.dtype) * s
                             for n, s in zip(data.shape, spacing)], indexing="ij")
    centres = [(g * w).sum() / total for g in grids]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centres))
    return torch.sqrt(((r2 * w).sum() / total).clamp_min(1e-12))


_MEASURES = {"radius_of_gyration": soft_radius_of_gyration}


def _decoded_spacing(spacing) -> tuple[float, ...]:
    """The class's voxel size (volume axes: ``(X, Y)`` in 2D, ``(X, Y, Z)`` in 3D) on the decoded array's
    axes, ``(H, W)`` or ``(D, H, W)`` (a volume's slices run along ``Z``)."""
    s = [float(v) for v in spacing]
    return (s[0], s[1]) if len(s) == 2 else (s[2], s[0], s[1])


def _no_autocast(device: torch.device):
    """The edit in float32 (the gradient of a ratio of sums is not for bf16)."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()
