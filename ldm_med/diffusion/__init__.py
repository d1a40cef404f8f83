"""Diffusion mathematics, independent of any network.

* ``sde``: the VP-SDE (linear and cosine schedules), math only.
* ``precond``: ``Denoiser`` turns an eps/v/x0-predicting network into ``x0_hat = D(x_t, t)``;
  ``guided`` adds classifier-free guidance.
* ``losses``: the training loss with Min-SNR weighting.
* ``grids`` / ``samplers``: time grids and sampler functions sharing one signature.
"""

from __future__ import annotations

from ldm_med.diffusion.grids import GRID_KINDS, time_grid
from ldm_med.diffusion.losses import diffusion_loss
from ldm_med.diffusion.precond import PREDICTIONS, Denoiser, guided
from ldm_med.diffusion.samplers import SAMPLERS, StepInfo, get_sampler, sample, sampler_options
from ldm_med.diffusion.sde import SDES, VPSDE, build_sde

__all__ = [
    "GRID_KINDS",
    "PREDICTIONS",
    "SAMPLERS",
    "SDES",
    "VPSDE",
    "Denoiser",
    "StepInfo",
    "build_sde",
    "diffusion_loss",
    "get_sampler",
    "guided",
    "sample",
    "sampler_options",
    "time_grid",
]
