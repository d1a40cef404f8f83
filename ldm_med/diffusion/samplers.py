"""Samplers: short pure functions sharing one signature, registered by name.

``sample_<name>(denoise, x, ts, sde, *, generator=None, callback=None, project=None, **options)``

* ``denoise(x_t, t (B,)) -> x0_hat``: the closure holds cond/labels/guidance.
* ``x``: the state at ``ts[0]``: prior noise for ``ts[0] = 1``, a partially noised input for SDEdit.
* ``ts``: strictly descending times from ``time_grid`` (0 is appended when missing). The model is
  evaluated at each nonzero time; the step onto ``t = 0`` returns the denoised estimate (the
  "final denoise").
* ``project(x0_hat, t (B,)) -> x0_hat`` enforces known data (DDNM-style paste) on every ``x0_hat`` a
  sampler uses and on the result.
* ``callback(StepInfo)`` once per grid step (``step`` = 0 .. total-1), with ``x`` and ``x0_hat`` at
  the step's time ``t``, before the state moves on; it may raise ``Cancelled`` to stop.
* Stochastic samplers draw noise only from ``generator``; same seed -> same output.
* The state is kept in ``x``'s dtype promoted to at least float32; coefficients are float64 Python
  floats.

Notation: ``a = alpha(t)``, ``s = sigma(t)``, half log-SNR ``lam = log(a / s)`` (Lu et al.).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_med.diffusion.grids import GRID_KINDS, check_grid, time_grid
from ldm_med.diffusion.sde import DIVISOR_FLOOR, VPSDE
from ldm_med.errors import InputError
from ldm_med.utils import append_dims, precise_dtype, randn

Denoise = Callable[[Tensor, Tensor], Tensor]
Project = Callable[[Tensor, Tensor], Tensor]


@dataclass
class StepInfo:
    """What a progress callback sees after each step's model evaluation."""

    step: int  # 0-based; step + 1 of total are done once the callback returns
    total: int
    t: float
    x: Tensor  # state at time t
    x0_hat: Tensor  # denoised estimate at time t (after ``project``)


Callback = Callable[[StepInfo], None]


# -- shared pieces ---------------------------------------------------------------------------------
class _Run:
    """Per-call plumbing shared by every sampler: model calls, projection, callback, noise."""

    def __init__(self, denoise: Denoise, x: Tensor, ts, sde: VPSDE, generator, callback, project):
        self.denoise, self.sde, self.generator = denoise, sde, generator
        self.callback, self.project = callback, project
        self.ts = check_grid(ts)
        self.total = len(self.ts) - 1
        self.x = x.to(torch.promote_types(x.dtype, torch.float32))

    def steps(self):
        """``(i, t, t_next)`` over the grid."""
        for i in range(self.total):
            yield i, self.ts[i], self.ts[i + 1]

    def model(self, x: Tensor, t: float) -> Tensor:
        """Projected ``x0_hat`` at time ``t``, in the state's dtype."""
        tb = torch.full((x.shape[0],), t, device=x.device, dtype=precise_dtype(x.device))
        x0 = self.denoise(x, tb)
        if self.project is not None:
            x0 = self.project(x0, tb)
        return x0.to(x.dtype)

    def report(self, i: int, t: float, x: Tensor, x0: Tensor) -> None:
        if self.callback is not None:
            self.callback(StepInfo(i, self.total, t, x, x0))

    def noise(self, x: Tensor) -> Tensor:
        return randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)

    def coefs(self, t: float) -> tuple[float, float]:
        """``(alpha(t), sigma(t))`` as float64 Python numbers, each at least ``DIVISOR_FLOOR``.

        The samplers divide by both at every nonzero grid time; the floor only matters for times
        below ~1e-22 (or an alpha that underflows), where ``x / sigma^2`` would overflow float32.
        """
        a, s = float(self.sde.alpha(t)), float(self.sde.sigma(t))
        return max(a, DIVISOR_FLOOR), max(s, DIVISOR_FLOOR)

    def half_log_snr(self, t: float) -> float:
        return 0.5 * float(self.sde.log_snr(t))

    def finish(self, x0: Tensor) -> Tensor:
        if self.project is not None:
            t0 = torch.zeros(x0.shape[0], device=x0.device, dtype=precise_dtype(x0.device))
            x0 = self.project(x0, t0).to(x0.dtype)
        return x0


def _em_step(run: _Run, x: Tensor, x0: Tensor, t: float, t_next: float) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE.

    ``dx = [-1/2 beta x - beta score] dt + sqrt(beta) dW`` integrated from ``t`` down to ``t_next``.
    """
    a, s = run.coefs(t)
    beta, dt = float(run.sde.beta(t)), t - t_next
    score = (a * x0 - x) / (s * s)
    return x + (0.5 * beta * x + beta * score) * dt + math.sqrt(beta * dt) * run.noise(x)


def _langevin_step(score: Tensor, z: Tensor, snr: float) -> tuple[Tensor, Tensor]:
    """Per-sample corrector step ``eps = 2 (snr |z| / |score|)^2`` and noise scale ``sqrt(2 eps)``,
    shaped to broadcast against ``z`` (score_sde's ``2 alpha_i (...)^2`` with ``alpha_i ~ 1``).

    A zero score, e.g. ``x0_hat = x_t / alpha`` exactly (which a float32 identity-like denoiser
    gives at small t), has no direction to follow: its step is 0, not ``inf * 0``. Steps are capped
    so that ``sqrt(2 eps)`` stays finite in the state dtype.
    """
    s_norm = score.flatten(1).norm(dim=1)
    step = 2.0 * (snr * z.flatten(1).norm(dim=1) / s_norm) ** 2
    step = torch.where(s_norm > 0, step, torch.zeros_like(step))
    step = step.clamp(max=0.25 * torch.finfo(step.dtype).max)
    return append_dims(step, z.ndim), append_dims((2.0 * step).sqrt(), z.ndim)


# -- samplers --------------------------------------------------------------------------------------
def sample_euler_maruyama(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
) -> Tensor:
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021); one model call per step."""
    run = _Run(denoise, x, ts, sde, generator, callback, project)
    x = run.x
    for i, t, t_next in run.steps():
        x0 = run.model(x, t)
        run.report(i, t, x, x0)
        x = x0 if t_next == 0.0 else _em_step(run, x, x0, t, t_next)
    return run.finish(x)


def sample_pc(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
    snr: float = 0.16,
    n_corrector: int = 1,
) -> Tensor:
    """Predictor-corrector (Song et al. 2021).

    At each time, ``n_corrector`` Langevin steps with step size set by the target signal-to-noise
    ratio ``snr``, then an Euler-Maruyama predictor step;
    ``1 + n_corrector`` model calls per step. The step size uses per-sample norms, so it assumes
    many elements per sample (images/volumes; with a few dozen it inflates the variance).
    """
    run = _Run(denoise, x, ts, sde, generator, callback, project)
    x = run.x
    for i, t, t_next in run.steps():
        a, s = run.coefs(t)
        for _ in range(n_corrector):
            score = (a * run.model(x, t) - x) / (s * s)
            z = run.noise(x)
            step, scale = _langevin_step(score, z, snr)
            x = x + step * score + scale * z
        x0 = run.model(x, t)
        run.report(i, t, x, x0)
        x = x0 if t_next == 0.0 else _em_step(run, x, x0, t, t_next)
    return run.finish(x)


def sample_ddim(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021) with the continuous SDE's ``alpha``/``sigma`` at the grid times.

    ``eta = 0``: deterministic, a first-order solver of the probability-flow ODE (Euler in the
    variables of ``sample_heun``); ``eta = 1``: ancestral (DDPM-like) sampling.
    """
    run = _Run(denoise, x, ts, sde, generator, callback, project)
    x = run.x
    for i, t, t_next in run.steps():
        x0 = run.model(x, t)
        run.report(i, t, x, x0)
        if t_next == 0.0:
            x = x0
            continue
        (a, s), (a_n, s_n) = run.coefs(t), run.coefs(t_next)
        eps = (x - a * x0) / s
        c = eta * (s_n / s) * math.sqrt(max(1.0 - (a / a_n) ** 2, 0.0))
        x = a_n * x0 + math.sqrt(max(s_n * s_n - c * c, 0.0)) * eps
        if c > 0.0:
            x = x + c * run.noise(x)
    return run.finish(x)


def sample_heun(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
) -> Tensor:
    """Heun's 2nd-order method on the probability-flow ODE, last step Euler (Karras et al. 2022).

    Integrated in the scaled variables ``y = x / alpha``, ``k = sigma / alpha``, where the PF-ODE
    reads ``dy/dk = (y - x0_hat) / k`` (nearly linear, hence accurate). Two model calls per step but
    the last.
    """
    run = _Run(denoise, x, ts, sde, generator, callback, project)
    x = run.x
    for i, t, t_next in run.steps():
        x0 = run.model(x, t)
        run.report(i, t, x, x0)
        if t_next == 0.0:
            x = x0
            continue
        (a, s), (a_n, s_n) = run.coefs(t), run.coefs(t_next)
        k, k_n = s / a, s_n / a_n
        y = x / a
        d = (y - x0) / k
        y_n = y + (k_n - k) * d
        d_n = (y_n - run.model(a_n * y_n, t_next)) / k_n
        x = a_n * (y + (k_n - k) * 0.5 * (d + d_n))
    return run.finish(x)


def _dpmpp_2m(run: _Run, eta: float) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in the data prediction, stepping in half log-SNR ``lam``;
    with ``eta > 0`` the SDE variant (multistep midpoint form, as k-diffusion's
    ``dpmpp_2m_sde``)."""
    x, x0_prev, h_prev = run.x, None, None
    for i, t, t_next in run.steps():
        x0 = run.model(x, t)
        run.report(i, t, x, x0)
        if t_next == 0.0:
            x = x0
            continue
        s, (a_n, s_n) = run.coefs(t)[1], run.coefs(t_next)
        h = run.half_log_snr(t_next) - run.half_log_snr(t)
        # h >= 0, but two grid times a few ulps apart can share a float64 log-SNR: h = 0, and a
        # zero previous step gives no slope (first order instead of a division by zero)
        multistep = x0_prev is not None and h_prev > 0.0
        d = x0 + (x0 - x0_prev) * (h / (2.0 * h_prev)) if multistep else x0
        x = (s_n / s) * math.exp(-eta * h) * x + a_n * -math.expm1(-(1.0 + eta) * h) * d
        if eta > 0.0:
            x = x + s_n * math.sqrt(max(-math.expm1(-2.0 * eta * h), 0.0)) * run.noise(x)
        x0_prev, h_prev = x0, h
    return run.finish(x)


def sample_dpmpp_2m(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
) -> Tensor:
    """DPM-Solver++(2M): 2nd-order multistep ODE solver, one model call per step (10-20 suffice)."""
    return _dpmpp_2m(_Run(denoise, x, ts, sde, generator, callback, project), eta=0.0)


def sample_dpmpp_2m_sde(
    denoise: Denoise,
    x: Tensor,
    ts: Tensor,
    sde: VPSDE,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    project: Project | None = None,
    eta: float = 1.0,
) -> Tensor:
    """SDE-DPM-Solver++(2M): stochastic counterpart of ``dpm++2m`` (``eta = 0`` reduces to it)."""
    return _dpmpp_2m(_Run(denoise, x, ts, sde, generator, callback, project), eta=float(eta))


# -- registry --------------------------------------------------------------------------------------
SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler-maruyama": sample_euler_maruyama,
    "pc": sample_pc,
    "ddim": sample_ddim,
    "heun": sample_heun,
    "dpm++2m": sample_dpmpp_2m,
    "dpm++2m-sde": sample_dpmpp_2m_sde,
}
_COMMON = {"denoise", "x", "ts", "sde", "generator", "callback", "project"}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler function registered under ``name``."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise InputError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}") from None


def sampler_options(name: str) -> dict[str, object]:
    """The extra options a sampler accepts, with their defaults (e.g. ``{"eta": 0.0}`` for ddim)."""
    params = inspect.signature(get_sampler(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _COMMON}


def sample(
    name: str,
    denoise: Denoise,
    shape: tuple[int, ...],
    sde: VPSDE,
    n_steps: int,
    *,
    generator: torch.Generator | None,
    device: torch.device | str,
    callback: Callback | None = None,
    project: Project | None = None,
    grid: str | Tensor | None = None,
    x_init: Tensor | None = None,
    **options,
) -> Tensor:
    """Draw samples ``(B, C, *spatial)``: prior noise from ``generator``, a time grid, a sampler.

    Args:
        name: a key of ``SAMPLERS``.
        grid: a ``time_grid`` kind (default ``"logsnr"``, with ``n_steps``) or explicit times.
        x_init: the state at ``grid[0]`` instead of prior noise (SDEdit: a grid from
            ``time_grid(n, sde, t_max=t_start)`` and ``x_init = sde.marginal(x, t_start, noise)``).
        options: sampler-specific (``sampler_options(name)``), e.g. ``eta`` or ``snr``.
    """
    fn = get_sampler(name)
    unknown = sorted(set(options) - set(sampler_options(name)))
    if unknown:
        raise InputError(
            f"sampler {name!r} has no option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sampler_options(name)) or 'none'}"
        )
    if grid is None or isinstance(grid, str):
        ts = time_grid(n_steps, sde, kind=grid or "logsnr")
    else:
        ts = torch.as_tensor(grid, dtype=torch.float64)
    if x_init is None:
        x = sde.prior_sample(tuple(shape), generator=generator, device=device)
    else:
        x = x_init.to(device)
    return fn(
        denoise, x, ts, sde, generator=generator, callback=callback, project=project, **options
    )


__all__ = [
    "GRID_KINDS",
    "SAMPLERS",
    "StepInfo",
    "get_sampler",
    "sample",
    "sampler_options",
    "time_grid",
    *(f.__name__ for f in SAMPLERS.values()),
]
