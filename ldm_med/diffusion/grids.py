"""Time grids for the samplers: where along ``t in [0, 1]`` the model is evaluated."""

from __future__ import annotations

import torch
from torch import Tensor

from ldm_med.diffusion.sde import VPSDE
from ldm_med.errors import InputError

GRID_KINDS = ("logsnr", "uniform", "quadratic", "karras")


def time_grid(
    n_steps: int,
    sde: VPSDE,
    kind: str = "logsnr",
    t_min: float = 1e-3,
    t_max: float = 1.0,
    rho: float = 7.0,
) -> Tensor:
    """``n_steps + 1`` strictly descending float64 times: ``n_steps`` from ``t_max`` to ``t_min``,
    then 0.

    A first-order sampler evaluates the model once at each of the ``n_steps`` nonzero times; the
    final step onto ``t = 0`` returns the denoised estimate at ``t_min``. ``t_max < 1`` starts
    mid-way (SDEdit).

    Kinds: ``"logsnr"`` uniform in log-SNR (the natural grid of DPM-Solver; good for all samplers),
    ``"uniform"`` in t, ``"quadratic"`` in t (denser near t_min, as DDIM's), ``"karras"`` (EDM's
    ``rho``-spaced noise levels ``sigma/alpha``).
    """
    if n_steps < 1:
        raise InputError(f"the number of sampling steps must be at least 1, got {n_steps}")
    if not 0.0 < t_min < t_max <= 1.0:
        raise InputError(
            f"time grid needs 0 < t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}"
        )
    u = torch.linspace(0.0, 1.0, n_steps, dtype=torch.float64)  # 0 -> t_max, 1 -> t_min
    if kind == "uniform":
        t = t_max + u * (t_min - t_max)
    elif kind == "quadratic":
        t = t_min + (t_max - t_min) * (1.0 - u) ** 2
    elif kind == "logsnr":
        lo, hi = sde.log_snr(t_max), sde.log_snr(t_min)
        t = sde.t_from_log_snr(lo + u * (hi - lo))
    elif kind == "karras":
        # sigma/alpha = exp(-log_snr / 2), spaced uniformly in its 1/rho-th power.
        s_max, s_min = (torch.exp(-0.5 * sde.log_snr(v)) ** (1.0 / rho) for v in (t_max, t_min))
        t = sde.t_from_log_snr(-2.0 * rho * torch.log(s_max + u * (s_min - s_max)))
    else:
        raise InputError(f"unknown time grid {kind!r}; valid: {', '.join(GRID_KINDS)}")
    t[0] = t_max
    if n_steps > 1:
        t[-1] = t_min  # exact end points despite round-off in the inverse schedule
    return torch.cat([t, t.new_zeros(1)])


def check_grid(ts: Tensor | list[float]) -> list[float]:
    """A sampler's time grid as Python floats (float64), ending at 0 (appended when missing).

    Raises ``InputError`` unless the times are strictly descending within ``[0, 1]``.
    """
    times = [float(v) for v in torch.as_tensor(ts, dtype=torch.float64).reshape(-1)]
    if (
        not times
        or times[0] > 1.0
        or times[-1] < 0.0
        or any(b >= a for a, b in zip(times, times[1:], strict=False))
    ):
        raise InputError(
            f"time grid must be non-empty and strictly descending within [0, 1], got "
            f"{times[:4]}{' ...' if len(times) > 4 else ''}"
        )
    if times[-1] != 0.0:
        times.append(0.0)
    return times
