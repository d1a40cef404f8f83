"""Numerical edges: t = 0 and t = 1, float32 and float64, round-off of either sign, extreme inputs.

Quantities that are non-negative in exact arithmetic (``int_beta``, ``sigma^2``, ``1 - alpha^2``)
must never come out a hair negative, and every division by ``sigma`` or ``alpha`` must stay finite
where they vanish or underflow.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ldm_med.diffusion.grids import GRID_KINDS, time_grid
from ldm_med.diffusion.losses import snr_weight
from ldm_med.diffusion.precond import PREDICTIONS, Denoiser
from ldm_med.diffusion.samplers import SAMPLERS, get_sampler
from ldm_med.diffusion.sde import VPSDE

SCHEDULES = ["linear", "cosine"]
DTYPES = [torch.float32, torch.float64]
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}
T = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_coefficients_at_the_ends(schedule, dtype):
    sde = VPSDE(schedule)
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    ib, a, s, lam = sde.int_beta(t), sde.alpha(t), sde.sigma(t), sde.log_snr(t)
    for v in (ib, a, s):
        assert v.dtype == dtype and torch.isfinite(v).all(), v
    assert float(ib[0]) == 0.0 and float(a[0]) == 1.0 and float(s[0]) == 0.0
    assert bool((ib >= 0).all()) and 0.0 < float(a[1]) < 0.01 and float(s[1]) <= 1.0
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t), rtol=0, atol=ATOL[dtype])
    assert float(lam[0]) == math.inf and -11.0 < float(lam[1]) < -10.0
    back = sde.t_from_log_snr(lam)
    assert float(back[0]) == 0.0
    assert float(back[1]) == pytest.approx(1.0, abs=10 * ATOL[dtype])
    assert float(sde.sigma(0.0)) == 0.0 and float(sde.alpha(0.0)) == 1.0  # Python floats


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_marginal_at_the_ends(schedule, dtype):
    sde = VPSDE(schedule)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 2, 3, 4, 5, generator=gen, dtype=dtype)
    noise = torch.randn(2, 2, 3, 4, 5, generator=gen, dtype=dtype)
    xt = sde.marginal(x0, torch.tensor([0.0, 1.0], dtype=dtype), noise)
    assert xt.dtype == dtype and torch.isfinite(xt).all()
    assert torch.equal(xt[0], x0[0])  # alpha(0) = 1 and sigma(0) = 0 exactly
    a, s = float(sde.alpha(1.0)), float(sde.sigma(1.0))
    torch.testing.assert_close(xt[1], a * x0[1] + s * noise[1])


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_small_times_are_accurate_in_float32_and_invert_exactly(schedule):
    """The cosine closed form once subtracted log(cos(c s)) from log(cos(c (t + s))): in float32
    int_beta(0) was 3e-8 (sigma(0) = 1.8e-4) and sigma(1e-8) was 8x off; in float64 the inverse
    lost 0.2% at t = 1e-12."""
    sde = VPSDE(schedule)
    t64 = torch.logspace(-12, -1, 23, dtype=torch.float64)
    t32 = torch.logspace(-8, -1, 15, dtype=torch.float32)
    torch.testing.assert_close(sde.sigma(t32).double(), sde.sigma(t32.double()), rtol=1e-5, atol=0)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t64)), t64, rtol=1e-9, atol=0)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t32)), t32, rtol=1e-5, atol=0)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_cosine_constant_one_ulp_off_gives_exact_zero_at_t0(monkeypatch, direction):
    """The reported failure, made deterministic: the schedule's constant ``cos(c s)`` comes from
    ``math.cos`` while the tensor side used ``torch.cos``, and the two may differ in the last bit
    (machine-dependent). One ulp down made ``int_beta(0)`` about -2e-16 and ``sigma(0)`` NaN; one
    ulp up made ``sigma(0)`` 1.5e-8 instead of 0."""
    exact_cos = math.cos
    target = 0.0 if direction == "down" else 2.0
    monkeypatch.setattr(math, "cos", lambda x: math.nextafter(exact_cos(x), target))
    sde = VPSDE("cosine")
    monkeypatch.undo()
    for dtype in DTYPES:
        t = torch.tensor([0.0, 1.0], dtype=dtype)
        assert float(sde.int_beta(t)[0]) == 0.0 and float(sde.sigma(t)[0]) == 0.0
        assert torch.isfinite(sde.sigma(t)).all() and float(sde.log_snr(t)[0]) == math.inf
        x0 = torch.randn(2, 3, 4, dtype=dtype)
        assert torch.equal(sde.marginal(x0, t, torch.randn(2, 3, 4, dtype=dtype))[0], x0[0])
    torch.testing.assert_close(sde.alpha(T) ** 2 + sde.sigma(T) ** 2, torch.ones_like(T))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_times_a_hair_below_zero_clamp_to_t0(schedule, dtype):
    """Round-off such as ``1 - u`` can give t = -1e-16: the linear closed form is then
    int_beta = -1e-17, and sqrt(-expm1(-int_beta)) was NaN."""
    sde = VPSDE(schedule)
    t = torch.tensor([-1e-16, -torch.finfo(dtype).eps], dtype=dtype)
    assert torch.equal(sde.int_beta(t), torch.zeros_like(t))
    assert torch.equal(sde.sigma(t), torch.zeros_like(t))
    assert torch.equal(sde.alpha(t), torch.ones_like(t))
    assert bool((sde.log_snr(t) == math.inf).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_log_snr_finite_where_alpha_is_tiny(dtype):
    """int_beta(1) = 200 (alpha(1) = 4e-44): expm1(int_beta) overflows float32, so
    -log(expm1(int_beta)) was -inf and its inverse inf / inf = NaN. (The clipped cosine schedule
    grows only like log(beta_max) and never gets there.)"""
    sde = VPSDE("linear", beta_max=400.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
    ib, lam = sde.int_beta(t), sde.log_snr(t)
    assert float(ib[-1]) > 150.0 and torch.isfinite(lam[1:]).all()
    torch.testing.assert_close(lam[1:], -ib[1:], rtol=1e-6, atol=1e-6)  # sigma ~ 1 there
    torch.testing.assert_close(sde.t_from_log_snr(lam), t, rtol=1e-5, atol=1e-6)
    assert float(sde.t_from_log_snr(-math.inf)) == math.inf


class ConstantNet(nn.Module):
    """Returns a preset output, whatever its input."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond=None, labels=None):
        return self.output.to(x.dtype) * self.scale.to(x.dtype)


SDE_CASES = {
    "linear": {"schedule": "linear"},
    "cosine": {"schedule": "cosine"},
    "alpha-underflows": {"schedule": "linear", "beta_max": 2000.0},  # alpha(1) = exp(-500)
}


@pytest.mark.parametrize("magnitude", [1e6, 1e-12])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("case", list(SDE_CASES))
def test_denoiser_at_the_ends_and_extreme_magnitudes(case, prediction, magnitude):
    sde = VPSDE(**SDE_CASES[case])
    gen = torch.Generator().manual_seed(0)
    shape = (5, 2, 3, 4)
    x_t = magnitude * torch.randn(shape, generator=gen)
    out = magnitude * torch.randn(shape, generator=gen)
    den = Denoiser(ConstantNet(out), sde, prediction=prediction)
    t = torch.tensor([0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0], dtype=torch.float64)
    x0 = den(x_t, t)
    assert x0.dtype == torch.float32 and torch.isfinite(x0).all()
    if prediction != "x0":
        assert torch.equal(x0[0], x_t[0])  # sigma(0) = 0, alpha(0) = 1
    for implied in (den.eps_from_x0(x_t, t, x0), den.score(x_t, t, x0)):
        assert torch.isfinite(implied).all()
    assert torch.equal(den.eps_from_x0(x_t, 0.0, x_t), torch.zeros_like(x_t))  # 0 / 0 before
    assert torch.equal(den.score(x_t, 0.0, x_t), torch.zeros_like(x_t))
    assert torch.isfinite(den.training_target(x0, out, t)).all()


def identity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x


def zero(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def large(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(x, 1e6)


def halve(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * x


def zero_score(sde: VPSDE):
    """``x0_hat = x_t / alpha``: the implied score ``(alpha x0_hat - x_t) / sigma^2`` is 0 (alpha
    floored like the samplers', so an underflowing alpha gives a finite input)."""

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = sde.alpha(t).clamp(min=1e-12)
        return x / a.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)

    return denoise


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("case", list(SDE_CASES))
def test_samplers_finite_at_the_ends_with_extreme_inputs(case, name):
    """Grids reaching t = 1e-12, 1e-30 (sigma ~ 1e-16: the old cosine int_beta was negative there)
    and 1e-45 (sigma^2 below float32's range), an alpha(1) that underflows (Heun's x / alpha),
    states of magnitude 1e6, 1e-12 and 0, and denoisers returning x_t, 0, 1e6 or a zero score
    (which an identity-like float32 denoiser gives at small t; the predictor-corrector's step was
    inf * 0 there)."""
    sde = VPSDE(**SDE_CASES[case])
    grids = [
        time_grid(3, sde, t_min=1e-12),
        torch.tensor([1.0, 0.5, 1e-30, 1e-45, 0.0], dtype=torch.float64),
    ]
    for ts in grids:
        for denoise in (identity, zero, large, zero_score(sde)):
            for magnitude in (1e6, 1e-12, 0.0):
                for dtype in DTYPES:
                    gen = torch.Generator().manual_seed(0)
                    x = magnitude * torch.randn(2, 2, 4, 4, generator=gen, dtype=dtype)
                    out = get_sampler(name)(denoise, x, ts, sde, generator=gen)
                    assert torch.isfinite(out).all(), (ts.tolist(), denoise, magnitude, dtype)


def test_pc_corrector_does_not_move_on_a_zero_score():
    """A zero score gives the corrector no direction: the state stays put (it was inf * 0)."""
    sde = VPSDE()
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    pc = get_sampler("pc")
    # float32 alpha(1e-12) rounds to 1, so an identity denoiser has score (x - x) / sigma^2 = 0
    ts = torch.tensor([1e-12, 0.0], dtype=torch.float64)
    assert torch.equal(pc(identity, x, ts, sde, generator=torch.Generator()), x)
    ts = torch.tensor([0.3, 0.0], dtype=torch.float64)
    zeros = torch.zeros_like(x)
    assert torch.equal(pc(zero, zeros, ts, sde, generator=torch.Generator()), zeros)


@pytest.mark.parametrize("rounding", ["equal", "one-ulp-reversed"])
def test_grid_times_sharing_a_log_snr(monkeypatch, rounding):
    """Two grid times one ulp apart often have the same float64 log-SNR: h = 0, and the 2nd-order
    multistep update divided by it (ZeroDivisionError). A libm rounding the other way can even make
    h = -1 ulp (emulated here): sqrt(-expm1(-2 eta h)) was then a math domain error."""
    sde = VPSDE()
    t = torch.linspace(0.01, 0.02, 1001, dtype=torch.float64)
    t_next = torch.nextafter(t, torch.zeros_like(t))
    same = (sde.log_snr(t_next) == sde.log_snr(t)).nonzero()
    assert len(same) > 0
    t0 = float(t[int(same[0])])
    t1 = math.nextafter(t0, 0.0)
    if rounding == "one-ulp-reversed":
        exact = sde.log_snr
        lam0 = float(exact(t0))

        def log_snr(t: float | torch.Tensor) -> torch.Tensor:
            out = exact(t)
            return torch.full_like(out, math.nextafter(lam0, -math.inf)) if t == t1 else out

        monkeypatch.setattr(sde, "log_snr", log_snr)
        assert float(sde.log_snr(t1)) < float(sde.log_snr(t0))
    ts = torch.tensor([1.0, 0.5, t0, t1, 0.005, 0.0], dtype=torch.float64)
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    for name in SAMPLERS:
        out = get_sampler(name)(halve, x, ts, sde, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out).all(), name


@pytest.mark.parametrize("kind", GRID_KINDS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_time_grids_down_to_tiny_t_min(schedule, kind):
    sde = VPSDE(schedule)
    for t_min in (1e-6, 1e-12):
        ts = time_grid(20, sde, kind=kind, t_min=t_min)
        assert torch.isfinite(ts).all() and bool((ts[1:] < ts[:-1]).all())
        assert ts[0] == 1.0 and ts[-2] == t_min and ts[-1] == 0.0


def test_snr_weights_at_zero_and_infinite_snr():
    """snr = 0 (log-SNR below -745) gave the eps weight 0 / 0; snr = inf is t = 0."""
    snr = torch.tensor([0.0, 1e-300, 1.0, 5.0, 1e300, math.inf], dtype=torch.float64)
    g = 5.0
    expected = {
        "eps": [1.0, 1.0, 1.0, 1.0, 5e-300, 0.0],
        "v": [0.0, 1e-300, 0.5, 5 / 6, 5e-300, 0.0],
        "x0": [0.0, 1e-300, 1.0, 5.0, 5.0, 5.0],
    }
    for prediction, values in expected.items():
        weights = snr_weight(snr, prediction, gamma=g)
        torch.testing.assert_close(weights, torch.tensor(values, dtype=torch.float64))
