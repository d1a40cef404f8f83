"""The variance-preserving SDE (Song et al. 2021): math only, no loops, no networks.

Forward process on ``t in [0, 1]``::

    dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW
    x_t = alpha(t) x_0 + sigma(t) eps,   alpha = exp(-1/2 int_0^t beta),   sigma^2 = 1 - alpha^2

Every method takes a Python float or a tensor of times of any shape and broadcasts; Python floats
are promoted to float64 tensors, and tensors keep their floating dtype, so pass float64 times for
float64 coefficients. Methods that also take ``x`` expect ``t`` of shape ``(B,)`` or a scalar and
return tensors in ``x``'s dtype (at least float32), on ``x``'s device.

Schedules:

* ``linear``: ``beta(t) = beta_min + t (beta_max - beta_min)`` (0.1 and 20 as in score_sde, the
  continuous limit of DDPM's ``linspace(1e-4, 0.02, 1000)``); terminal log-SNR -10.05.
* ``cosine``: Nichol & Dhariwal's ``alpha_bar(t) = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s))``,
  whose ``beta(t) = -d log(alpha_bar)/dt = pi/(1+s) tan(pi/2 (t+s)/(1+s))`` diverges at t = 1. Here
  ``beta`` is clipped at ``beta_max`` (default 200: only t > 0.99 is affected and the terminal
  log-SNR is -10.3, close to the linear schedule's) and ``int_beta``, ``alpha``, ``sigma`` integrate
  the *clipped* beta, so the SDE and its marginals stay exactly consistent and finite on all of
  ``[0, 1]``. ``beta_min`` is unused.

All inverses (``t_from_log_snr``) are closed form for both schedules.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ldm_med.errors import InputError
from ldm_med.utils import append_dims, precise_dtype, randn

DEFAULT_BETA_MAX = {"linear": 20.0, "cosine": 200.0}
# Smallest alpha or sigma used as a divisor (eps or score from x0 at t = 0, where sigma = 0): sigma
# is this small only for t < 1e-22 (both default schedules), so usable times are unaffected, and
# x / DIVISOR_FLOOR**2 stays finite in float32 for |x| < 3e14.
DIVISOR_FLOOR = 1e-12


def _as_time(t: float | Tensor) -> Tensor:
    """Times as a floating tensor; Python numbers and integer tensors become float64."""
    if not isinstance(t, Tensor):
        return torch.tensor(t, dtype=torch.float64)
    return t if t.is_floating_point() else t.to(torch.float64)


class VPSDE:
    """Variance-preserving SDE with a linear or (clipped) cosine beta schedule.

    Args:
        schedule: ``"linear"`` or ``"cosine"``.
        beta_min: linear schedule's ``beta(0)``; unused by cosine.
        beta_max: linear schedule's ``beta(1)``; for cosine, the clip on ``beta(t)``.
            ``None``: 20 for linear, 200 for cosine.
        s: cosine schedule's offset (0.008 in Nichol & Dhariwal).
    """

    def __init__(
        self,
        schedule: str = "linear",
        beta_min: float = 0.1,
        beta_max: float | None = None,
        s: float = 0.008,
    ) -> None:
        if schedule not in DEFAULT_BETA_MAX:
            raise InputError(f"unknown schedule {schedule!r}; valid: {', '.join(DEFAULT_BETA_MAX)}")
        self.schedule = schedule
        self.beta_min = float(beta_min)
        self.beta_max = float(DEFAULT_BETA_MAX[schedule] if beta_max is None else beta_max)
        self.s = float(s)
        if schedule == "linear":
            if not 0.0 < self.beta_min <= self.beta_max:
                raise InputError(
                    f"linear VP-SDE needs 0 < beta_min <= beta_max, got "
                    f"beta_min={self.beta_min}, beta_max={self.beta_max}"
                )
            return
        if self.s <= 0.0:
            raise InputError(f"cosine VP-SDE needs s > 0, got s={self.s}")
        self._c = math.pi / (2.0 * (1.0 + self.s))  # d f / dt with f(t) = c (t + s)
        self._cos_f0, self._sin_f0 = math.cos(self._c * self.s), math.sin(self._c * self.s)
        self._tan_f0 = math.tan(self._c * self.s)
        self._log_cos_f0 = math.log(self._cos_f0)
        if self.beta_max <= 2.0 * self._c * math.tan(self._c * self.s):
            raise InputError(
                f"cosine VP-SDE: beta_max={self.beta_max} (the clip) must exceed beta(0)"
            )
        f_clip = math.atan(self.beta_max / (2.0 * self._c))
        # beta reaches beta_max at t_clip (0.99 for the default clip; >= 1 means no clipping)
        self._t_clip = f_clip / self._c - self.s
        self._int_clip = -2.0 * (math.log(math.cos(f_clip)) - self._log_cos_f0)

    # -- schedule ----------------------------------------------------------------------------------
    def beta(self, t: float | Tensor) -> Tensor:
        """``beta(t)``."""
        t = _as_time(t)
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        smooth = 2.0 * self._c * torch.tan(self._c * (t.clamp(max=self._t_clip) + self.s))
        return torch.where(t < self._t_clip, smooth, torch.full_like(smooth, self.beta_max))

    def int_beta(self, t: float | Tensor) -> Tensor:
        """``int_0^t beta(u) du`` (closed form)."""
        t = _as_time(t)
        if self.schedule == "linear":
            ib = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
        else:
            # -2 log(cos(c (t + s)) / cos(c s)) with the ratio written as
            # 1 - 2 sin^2(c t / 2) - tan(c s) sin(c t): no cancellation against cos(c s), so it is
            # exactly 0 at t = 0 in every dtype (the direct form is ~1e-20 off in float64, of
            # either sign, and 3e-8 off in float32) and accurate for small t.
            tc = t.clamp(max=self._t_clip)
            u = self._c * tc
            ratio_m1 = -2.0 * torch.sin(0.5 * u) ** 2 - self._tan_f0 * torch.sin(u)
            ib = -2.0 * torch.log1p(ratio_m1) + self.beta_max * (t - tc)
        return ib.clamp(min=0.0)  # >= 0 in exact arithmetic; keeps sigma and log_snr real

    def alpha(self, t: float | Tensor) -> Tensor:
        """Signal scale ``exp(-1/2 int_beta)``; ``alpha(0) = 1``."""
        return torch.exp(-0.5 * self.int_beta(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        """Noise scale ``sqrt(1 - alpha^2)``, accurate for small t; ``sigma(0) = 0``."""
        return torch.sqrt((-torch.expm1(-self.int_beta(t))).clamp(min=0.0))

    def log_snr(self, t: float | Tensor) -> Tensor:
        """``log(alpha^2 / sigma^2) = -int_beta - log(1 - exp(-int_beta))``; ``+inf`` at t = 0.

        Written with ``log(alpha^2) = -int_beta`` so it stays finite for a large ``int_beta``
        (``expm1(int_beta)`` overflows float32 beyond 88).
        """
        ib = self.int_beta(t)
        return -ib - torch.log((-torch.expm1(-ib)).clamp(min=0.0))

    def t_from_log_snr(self, log_snr: float | Tensor) -> Tensor:
        """Exact inverse of ``log_snr``."""
        b = torch.nn.functional.softplus(-_as_time(log_snr))  # int_beta = log1p(exp(-log_snr))
        if self.schedule == "linear":
            d = (
                self.beta_max - self.beta_min
            )  # root of d/2 t^2 + beta_min t - b = 0, cancellation-free
            t = 2.0 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * d * b))
            return torch.where(torch.isinf(b), b, t)  # log_snr = -inf: t = inf, not inf / inf
        smooth = b.clamp(max=self._int_clip)
        # c t = acos(p) - acos(q) for q = cos(c s), p = q exp(-smooth / 2), as one atan2 whose sine
        # part is a multiple of 1 - exp(-smooth): exactly 0 at log_snr = +inf, and no acos near 1.
        e = torch.exp(-0.5 * smooth)
        sin_p = torch.sqrt((-torch.expm1(2.0 * self._log_cos_f0 - smooth)).clamp(min=0.0))
        num = self._cos_f0 * -torch.expm1(-smooth) / (sin_p + e * self._sin_f0)
        den = self._cos_f0**2 * e + sin_p * self._sin_f0
        return torch.atan2(num, den) / self._c + (b - smooth) / self.beta_max

    # -- process -----------------------------------------------------------------------------------
    def _coef(self, fn, t: float | Tensor, x: Tensor) -> Tensor:
        """``fn(t)`` computed in float64 (float32 on MPS), shaped to broadcast against ``x``."""
        t = _as_time(t).to(device=x.device, dtype=precise_dtype(x.device))
        return append_dims(fn(t), x.ndim).to(_work_dtype(x))

    def marginal(self, x0: Tensor, t: float | Tensor, noise: Tensor) -> Tensor:
        """``x_t = alpha(t) x0 + sigma(t) noise`` for ``x0, noise (B, C, *spatial)``, ``t (B,)``."""
        x0 = x0.to(_work_dtype(x0))
        return self._coef(self.alpha, t, x0) * x0 + self._coef(self.sigma, t, x0) * noise.to(
            x0.dtype
        )

    def sde(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """Forward SDE coefficients: drift ``-1/2 beta x`` (like ``x``) and diffusion ``sqrt(beta)``
        (shape of ``t``, i.e. ``(B,)``; broadcast it with ``append_dims``)."""
        x = x.to(_work_dtype(x))
        beta = self.beta(_as_time(t).to(device=x.device, dtype=precise_dtype(x.device)))
        return -0.5 * append_dims(beta, x.ndim).to(x.dtype) * x, beta.sqrt().to(x.dtype)

    def reverse_drift(
        self, x: Tensor, t: float | Tensor, score: Tensor, probability_flow: bool = False
    ) -> Tensor:
        """Drift of the reverse-time SDE ``f - g^2 score`` (run with ``dt < 0``), or of the
        probability-flow ODE ``f - 1/2 g^2 score``."""
        drift, g = self.sde(x, t)
        weight = 0.5 if probability_flow else 1.0
        return drift - weight * append_dims(g * g, x.ndim) * score.to(drift.dtype)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``N(0, I)`` float32 noise: the prior at t = 1 (exact up to ``alpha(1)``, ~0.007 by
        default)."""
        return randn(shape, generator=generator, device=device)

    # -- discrete DDPM view ------------------------------------------------------------------------
    def discrete_betas(self, n: int) -> Tensor:
        """float64 DDPM betas ``beta_i = beta(t_i) / n`` at ``t_i = i / (n - 1)``, i = 0 .. n-1.

        This is score_sde's discretisation: for the default linear schedule and ``n = 1000`` it is
        exactly DDPM's ``linspace(1e-4, 0.02, 1000)``; ``cumprod(1 - beta_i)`` matches
        ``alpha(t_i)^2`` to O(1/n).
        """
        if n < 2:
            raise ValueError(f"discrete_betas needs n >= 2, got {n}")
        return self.beta(torch.linspace(0.0, 1.0, n, dtype=torch.float64)) / n

    @staticmethod
    def t_to_discrete(t: float | Tensor, n: int) -> Tensor:
        """Continuous time -> fractional DDPM index ``t (n - 1)`` (round it for a timestep)."""
        return _as_time(t) * (n - 1)

    @staticmethod
    def discrete_to_t(i: int | Tensor, n: int) -> Tensor:
        """DDPM index ``i`` in ``0 .. n-1`` -> continuous time ``i / (n - 1)``."""
        return _as_time(i) / (n - 1)

    # -- config ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Config for ``from_dict`` / ``build_sde``, e.g. saved inside checkpoints."""
        return {
            "name": f"vp-{self.schedule}",
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "s": self.s,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VPSDE:
        """Inverse of ``to_dict``; also accepts ``{"schedule": "linear", ...}`` without a name."""
        config = dict(config)
        name = config.pop("name", None)
        if name is None:
            return cls(**_known_kwargs(config))
        return build_sde(name, **config)

    def __repr__(self) -> str:
        return (
            f"VPSDE(schedule={self.schedule!r}, beta_min={self.beta_min}, "
            f"beta_max={self.beta_max}, s={self.s})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VPSDE) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))


def _work_dtype(x: Tensor) -> torch.dtype:
    """At least float32: integration never happens in half precision."""
    return torch.promote_types(x.dtype, torch.float32)


_SDE_KWARGS = ("schedule", "beta_min", "beta_max", "s")


def _known_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_SDE_KWARGS))
    if unknown:
        raise InputError(
            f"unknown SDE option(s) {', '.join(unknown)}; valid: {', '.join(_SDE_KWARGS)}"
        )
    return kwargs


SDES = {"vp-linear": partial(VPSDE, "linear"), "vp-cosine": partial(VPSDE, "cosine")}


def build_sde(name: str, **kwargs: Any) -> VPSDE:
    """An SDE from the registry: ``build_sde("vp-cosine", beta_max=200)``."""
    if name not in SDES:
        raise InputError(f"unknown SDE {name!r}; valid: {', '.join(SDES)}")
    kwargs = _known_kwargs(dict(kwargs))
    schedule = kwargs.pop("schedule", name[3:])
    if schedule != name[3:]:
        raise InputError(f"SDE {name!r} conflicts with schedule={schedule!r}")
    return SDES[name](**kwargs)
