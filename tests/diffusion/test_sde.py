"""VPSDE: closed forms against numerics, round trips, the forward SDE against its marginals."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from ldm_med.diffusion.sde import SDES, VPSDE, build_sde
from ldm_med.errors import InputError

SCHEDULES = ["linear", "cosine"]
T = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)


@pytest.fixture(params=SCHEDULES)
def sde(request) -> VPSDE:
    return VPSDE(request.param)


def test_variance_preserving_and_boundary(sde):
    a, s = sde.alpha(T), sde.sigma(T)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(T), rtol=0, atol=1e-12)
    assert float(sde.alpha(0.0)) == 1.0 and float(sde.sigma(0.0)) == 0.0
    assert torch.all(a[1:] < a[:-1]), "alpha must decrease"
    assert torch.isfinite(sde.log_snr(T[1:])).all() and torch.isfinite(sde.beta(T)).all()
    assert float(sde.log_snr(1.0)) < -10.0  # terminal log-SNR: near-pure noise for both defaults


def test_int_beta_matches_numerical_integral(sde):
    for t in [0.0, 1e-3, 0.1, 0.5, 0.9, 0.995, 1.0]:
        numeric, _ = quad(
            lambda u: float(sde.beta(u)), 0.0, t, limit=200, points=[0.99] if t > 0.99 else None
        )
        assert float(sde.int_beta(t)) == pytest.approx(numeric, rel=1e-9, abs=1e-12)


def test_beta_is_derivative_of_int_beta(sde):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    fd = (sde.int_beta(t + h) - sde.int_beta(t - h)) / (2 * h)
    torch.testing.assert_close(fd, sde.beta(t), rtol=1e-6, atol=1e-6)


def test_log_snr_round_trip(sde):
    t = torch.cat([torch.logspace(-5, -1, 20, dtype=torch.float64), T[1:]])
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-8, atol=1e-10)
    lam = torch.linspace(-9.0, 12.0, 30, dtype=torch.float64)
    torch.testing.assert_close(sde.log_snr(sde.t_from_log_snr(lam)), lam, rtol=1e-8, atol=1e-8)
    assert float(sde.t_from_log_snr(math.inf)) == 0.0


def test_linear_closed_forms():
    sde = VPSDE("linear", beta_min=0.1, beta_max=20.0)
    assert float(sde.int_beta(1.0)) == pytest.approx(0.1 + 0.5 * 19.9)
    assert float(sde.log_snr(1.0)) == pytest.approx(-math.log(math.expm1(10.05)))


def test_cosine_matches_nichol_dhariwal_before_the_clip():
    sde = VPSDE("cosine")
    s = 0.008
    t = torch.linspace(0.0, 0.98, 50, dtype=torch.float64)
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    torch.testing.assert_close(
        sde.alpha(t) ** 2, f(t) / f(torch.zeros(1, dtype=torch.float64)), rtol=1e-12, atol=1e-14
    )
    assert float(sde.beta(1.0)) == sde.beta_max == 200.0
    assert float(sde.beta(0.999)) == 200.0 and float(sde.beta(0.5)) < 200.0


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_sde_simulation_matches_marginal(schedule):
    """Euler-Maruyama on the forward SDE from a point gives mean alpha x0 and variance sigma^2."""
    sde = VPSDE(schedule)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([2.0, -1.0])
    x = x0.expand(8000, 2).clone()
    n = 2000  # beta dt <= 0.1 even in the cosine schedule's clipped end
    for i in range(n):
        drift, g = sde.sde(x, i / n)
        x = x + drift / n + float(g) * math.sqrt(1 / n) * torch.randn(x.shape, generator=gen)
        if (i + 1) in (600, 1400, 2000):
            te = (i + 1) / n
            a, s = float(sde.alpha(te)), float(sde.sigma(te))
            assert torch.allclose(x.mean(0), a * x0, atol=0.04), (te, x.mean(0), a * x0)
            assert torch.allclose(x.var(0), torch.full((2,), s * s), rtol=0.06), (
                te,
                x.var(0),
                s * s,
            )


def test_marginal_shapes_dtypes_and_values(sde):
    x0 = torch.randn(3, 2, 4, 5, 6, dtype=torch.float16)
    noise = torch.randn(3, 2, 4, 5, 6)
    t = torch.tensor([0.0, 0.5, 1.0])
    xt = sde.marginal(x0, t, noise)
    assert xt.shape == x0.shape and xt.dtype == torch.float32
    torch.testing.assert_close(xt[0], x0[0].float())
    a, s = float(sde.alpha(0.5)), float(sde.sigma(0.5))
    torch.testing.assert_close(xt[1], a * x0[1].float() + s * noise[1])


def test_reverse_drift(sde):
    x = torch.randn(4, 3, 8)
    score = torch.randn(4, 3, 8)
    t = torch.full((4,), 0.3)
    beta = float(sde.beta(0.3))
    torch.testing.assert_close(sde.reverse_drift(x, t, score), -0.5 * beta * x - beta * score)
    torch.testing.assert_close(
        sde.reverse_drift(x, t, score, probability_flow=True), -0.5 * beta * x - 0.5 * beta * score
    )


def test_broadcasting_and_input_types(sde):
    assert sde.alpha(0.5).dtype == torch.float64
    assert sde.alpha(torch.tensor(0.5)).dtype == torch.float32
    t = torch.rand(4, 3, dtype=torch.float64)
    assert sde.sigma(t).shape == (4, 3) and sde.t_from_log_snr(sde.log_snr(t)).shape == (4, 3)
    assert sde.prior_sample((2, 3, 4), torch.Generator().manual_seed(1)).shape == (2, 3, 4)


def test_discrete_ddpm_view():
    sde = VPSDE("linear")
    betas = sde.discrete_betas(1000)
    torch.testing.assert_close(betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    t = sde.discrete_to_t(torch.arange(1000), 1000)
    torch.testing.assert_close(alphas_cumprod[100:], sde.alpha(t[100:]) ** 2, rtol=0.02, atol=2e-4)
    torch.testing.assert_close(sde.t_to_discrete(t, 1000), torch.arange(1000, dtype=torch.float64))
    assert float(sde.discrete_to_t(999, 1000)) == 1.0


def test_config_round_trip_and_registry():
    for name in SDES:
        sde = build_sde(name, beta_max=30.0)
        again = VPSDE.from_dict(sde.to_dict())
        assert again == sde and again.to_dict() == sde.to_dict()
        torch.testing.assert_close(again.alpha(T), sde.alpha(T))
    assert VPSDE.from_dict({"schedule": "cosine"}) == build_sde("vp-cosine")
    with pytest.raises(InputError, match="vp-linear, vp-cosine"):
        build_sde("ve")
    with pytest.raises(InputError, match="unknown SDE option"):
        build_sde("vp-linear", beta=3)
    with pytest.raises(InputError, match="schedule"):
        VPSDE("sigmoid")
    with pytest.raises(InputError):
        VPSDE("linear", beta_min=5.0, beta_max=1.0)
