"""Samplers against the closed-form denoiser of Gaussian data.

For ``x0 ~ N(mu, s^2)`` (per channel) the exact denoiser is
``E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu)``, and the
probability-flow ODE maps ``x_T`` to ``x_t = alpha_t mu + std_t / std_T (x_T - alpha_T mu)`` with
``std_t^2 = alpha_t^2 s^2 + sigma_t^2``: every sampler can be checked with no network at all.
"""

from __future__ import annotations

import math

import pytest
import torch

from ldm_med.diffusion.grids import check_grid, time_grid
from ldm_med.diffusion.samplers import SAMPLERS, StepInfo, get_sampler, sample, sampler_options
from ldm_med.diffusion.sde import VPSDE
from ldm_med.errors import Cancelled, InputError

MU = (1.0, -0.5)
STD = (0.5, 1.5)
SHAPES = {"2d": (16, 2, 32, 32), "3d": (8, 2, 8, 16, 16)}
# (sampler, options, steps): first-order samplers get 50 steps, second-order ones 20.
CASES = [
    ("euler-maruyama", {}, 50),
    ("pc", {}, 50),
    ("ddim", {}, 50),
    ("ddim", {"eta": 1.0}, 100),
    ("heun", {}, 20),
    ("dpm++2m", {}, 20),
    ("dpm++2m-sde", {}, 20),
]
STOCHASTIC = [("euler-maruyama", {}), ("pc", {}), ("ddim", {"eta": 1.0}), ("dpm++2m-sde", {})]
DETERMINISTIC = [("ddim", {}), ("heun", {}), ("dpm++2m", {})]


def channel_view(values, ndim: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, -1, *[1] * (ndim - 2))


def gaussian_denoiser(sde: VPSDE, ndim: int, calls: list | None = None):
    """Exact ``E[x0 | x_t]`` for per-channel Gaussian data, as a ``denoise(x_t, t)`` function."""
    mu, s = channel_view(MU, ndim), channel_view(STD, ndim)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],)
        if calls is not None:
            calls.append(float(t[0]))
        a = sde.alpha(t).view(-1, *[1] * (ndim - 1))
        sg = sde.sigma(t).view(-1, *[1] * (ndim - 1))
        return (mu + a * s**2 / (a**2 * s**2 + sg**2) * (x - a * mu)).to(x.dtype)

    return denoise


def exact_pf_ode(sde: VPSDE, x_start: torch.Tensor, t_start: float, t_end: float) -> torch.Tensor:
    """Closed-form PF-ODE solution for Gaussian data, then the exact denoiser at ``t_end``."""
    ndim = x_start.ndim
    mu, s = channel_view(MU, ndim), channel_view(STD, ndim)
    a0, s0, a1, s1 = (float(f(v)) for v in (t_start, t_end) for f in (sde.alpha, sde.sigma))
    x = a1 * mu + torch.sqrt(a1**2 * s**2 + s1**2) / torch.sqrt(a0**2 * s**2 + s0**2) * (
        x_start - a0 * mu
    )
    return gaussian_denoiser(sde, ndim)(x, torch.full((x.shape[0],), t_end, dtype=torch.float64))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return per_channel.mean(1), per_channel.std(1)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("dims", list(SHAPES))
@pytest.mark.parametrize("name, options, steps", CASES)
def test_reproduces_gaussian_moments(name, options, steps, dims, schedule):
    sde = VPSDE(schedule)
    shape = SHAPES[dims]
    out = sample(
        name,
        gaussian_denoiser(sde, len(shape)),
        shape,
        sde,
        steps,
        generator=torch.Generator().manual_seed(0),
        device="cpu",
        **options,
    )
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    mean, std = moments(out)
    mu, s = torch.tensor(MU, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64)
    assert ((mean - mu).abs() / s).max() < 0.05, (mean, mu)
    assert (std / s - 1).abs().max() < 0.07, (std, s)


@pytest.mark.parametrize("name, options, steps", CASES)
def test_sdedit_from_a_partially_noised_input(name, options, steps):
    """A grid starting at t = 0.5 and data noised to that level give back the data distribution."""
    sde = VPSDE()
    shape = SHAPES["2d"]
    gen = torch.Generator().manual_seed(3)
    x0 = channel_view(MU, 4).float() + channel_view(STD, 4).float() * torch.randn(
        shape, generator=gen
    )
    t_start = 0.5
    x = sde.marginal(x0, torch.full((shape[0],), t_start), torch.randn(shape, generator=gen))
    ts = time_grid(steps, sde, t_max=t_start)
    assert ts[0] == t_start
    out = get_sampler(name)(gaussian_denoiser(sde, 4), x, ts, sde, generator=gen, **options)
    mean, std = moments(out)
    assert ((mean - torch.tensor(MU)).abs() / torch.tensor(STD)).max() < 0.05
    assert (std / torch.tensor(STD, dtype=torch.float64) - 1).abs().max() < 0.07
    if name in ("heun", "dpm++2m"):
        ref = exact_pf_ode(sde, x.double(), t_start, float(ts[-2]))
        assert (out - ref).pow(2).mean().sqrt() < 0.02


@pytest.mark.parametrize("name, order", [("ddim", 1.0), ("heun", 2.0), ("dpm++2m", 2.0)])
def test_ode_samplers_converge_to_the_exact_flow_at_their_order(name, order):
    sde = VPSDE()
    x = torch.randn(SHAPES["2d"], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errors = []
    for n in (50, 200):
        ts = time_grid(n, sde)
        out = get_sampler(name)(gaussian_denoiser(sde, 4), x, ts, sde)
        errors.append(float((out - exact_pf_ode(sde, x, 1.0, float(ts[-2]))).pow(2).mean().sqrt()))
    measured = math.log(errors[0] / errors[1]) / math.log(4.0)
    assert order - 0.25 < measured < order + 0.5, (errors, measured)


def test_dpmpp_2m_beats_ddim_at_10_steps():
    sde = VPSDE()
    x = torch.randn(SHAPES["3d"], generator=torch.Generator().manual_seed(2))
    denoise = gaussian_denoiser(sde, 5)
    ts = time_grid(10, sde)
    reference = get_sampler("heun")(
        denoise, x.double(), time_grid(1000, sde, t_min=float(ts[-2])), sde
    )
    exact = exact_pf_ode(sde, x.double(), 1.0, float(ts[-2]))
    assert (reference - exact).abs().max() < 1e-3  # the many-step Heun reference is the exact flow

    def error(name: str) -> float:
        return float((get_sampler(name)(denoise, x, ts, sde) - reference).pow(2).mean().sqrt())

    assert error("dpm++2m") < 0.5 * error("ddim")


@pytest.mark.parametrize("name, options", STOCHASTIC + DETERMINISTIC)
def test_deterministic_per_seed(name, options):
    sde = VPSDE("cosine")
    shape = (2, 2, 4, 4, 4)
    denoise = gaussian_denoiser(sde, 5)

    def run(seed: int) -> torch.Tensor:
        return sample(
            name,
            denoise,
            shape,
            sde,
            8,
            generator=torch.Generator().manual_seed(seed),
            device="cpu",
            **options,
        )

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    ts = time_grid(8, sde)
    a = get_sampler(name)(
        denoise, x, ts, sde, generator=torch.Generator().manual_seed(0), **options
    )
    b = get_sampler(name)(
        denoise, x, ts, sde, generator=torch.Generator().manual_seed(1), **options
    )
    assert torch.equal(a, b) == ((name, options) in DETERMINISTIC)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_project_is_honoured(name):
    sde = VPSDE()
    shape = (4, 2, 6, 8)
    known = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 10.0
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, :, :3] = True  # e.g. acquired slices
    seen: list[torch.Tensor] = []
    evaluations: list[float] = []

    def project(x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (shape[0],)
        seen.append(t)
        return torch.where(mask, known, x0)

    out = sample(
        name,
        gaussian_denoiser(sde, 4, evaluations),
        shape,
        sde,
        6,
        generator=torch.Generator().manual_seed(1),
        device="cpu",
        project=project,
    )
    assert torch.equal(out[mask], known[mask])
    assert not torch.equal(out[~mask], known[~mask])
    assert len(seen) == len(evaluations) + 1  # every x0_hat, and the result


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_once_per_step_and_cancel(name):
    sde = VPSDE()
    ts = time_grid(7, sde)
    infos: list[StepInfo] = []
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    denoise = gaussian_denoiser(sde, 4)
    get_sampler(name)(
        denoise, x, ts, sde, generator=torch.Generator().manual_seed(0), callback=infos.append
    )
    assert [i.step for i in infos] == list(range(7)) and all(i.total == 7 for i in infos)
    assert [i.t for i in infos] == ts[:-1].tolist()
    assert all(i.x.shape == x.shape and i.x0_hat.shape == x.shape for i in infos)

    def cancel(info: StepInfo) -> None:
        if info.step == 2:
            raise Cancelled("stop")

    evaluations: list[float] = []
    with pytest.raises(Cancelled):
        get_sampler(name)(
            gaussian_denoiser(sde, 4, evaluations),
            x,
            ts,
            sde,
            generator=torch.Generator().manual_seed(0),
            callback=cancel,
        )
    assert min(evaluations) >= float(ts[2])  # stopped at the third step


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_state_dtype_never_lowered(name):
    sde = VPSDE()
    ts = time_grid(4, sde)
    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    denoise = gaussian_denoiser(sde, 4)
    assert get_sampler(name)(denoise, x64, ts, sde, generator=gen).dtype == torch.float64
    assert get_sampler(name)(denoise, x64.half(), ts, sde, generator=gen).dtype == torch.float32


def test_time_grids():
    sde = VPSDE()
    for kind in ("logsnr", "uniform", "quadratic", "karras"):
        ts = time_grid(12, sde, kind=kind, t_min=2e-3, t_max=0.9)
        assert ts.dtype == torch.float64 and ts.shape == (13,)
        assert ts[0] == 0.9 and ts[-2] == 2e-3 and ts[-1] == 0.0
        assert torch.all(ts[1:] < ts[:-1])
    lam = sde.log_snr(time_grid(12, sde)[:-1])
    torch.testing.assert_close(
        lam.diff(), torch.full((11,), float(lam.diff().mean()), dtype=torch.float64)
    )
    torch.testing.assert_close(time_grid(1, sde), torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(InputError, match="logsnr, uniform"):
        time_grid(10, sde, kind="cubic")
    with pytest.raises(InputError):
        time_grid(0, sde)
    assert check_grid([0.5, 0.1]) == [0.5, 0.1, 0.0]
    with pytest.raises(InputError, match="descending"):
        check_grid(torch.tensor([0.1, 0.5]))


def test_registry_and_options():
    with pytest.raises(InputError, match="euler-maruyama, pc, ddim, heun, dpm\\+\\+2m"):
        get_sampler("lms")
    assert sampler_options("ddim") == {"eta": 0.0}
    assert sampler_options("pc") == {"snr": 0.16, "n_corrector": 1}
    sde = VPSDE()
    with pytest.raises(InputError, match="no option"):
        sample(
            "heun",
            gaussian_denoiser(sde, 4),
            (1, 2, 2, 2),
            sde,
            3,
            generator=None,
            device="cpu",
            eta=1.0,
        )
    out = sample(
        "ddim",
        gaussian_denoiser(sde, 4),
        (1, 2, 2, 2),
        sde,
        3,
        generator=None,
        device="cpu",
        grid="uniform",
    )
    assert out.shape == (1, 2, 2, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_cuda_matches_cpu_with_a_cpu_generator(name):
    sde = VPSDE()
    shape = (4, 2, 8, 8)
    cpu = sample(
        name,
        gaussian_denoiser(sde, 4),
        shape,
        sde,
        10,
        generator=torch.Generator().manual_seed(0),
        device="cpu",
    )

    mu, s = channel_view(MU, 4).cuda(), channel_view(STD, 4).cuda()

    def denoise(x, t):
        a, sg = sde.alpha(t).view(-1, 1, 1, 1), sde.sigma(t).view(-1, 1, 1, 1)
        return (mu + a * s**2 / (a**2 * s**2 + sg**2) * (x - a * mu)).float()

    gpu = sample(
        name, denoise, shape, sde, 10, generator=torch.Generator().manual_seed(0), device="cuda"
    )
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
