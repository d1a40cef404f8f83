from __future__ import annotations

import pytest
import torch

from ldm_med.errors import InputError
from ldm_med.nets import (
    DEFAULT_DIT_3D,
    DEFAULT_UNET_3D,
    DenoiserConfig,
    DiTDenoiser,
    UNetDenoiser,
    build_denoiser,
    expand_input_channels,
    parameter_count,
    required_multiple,
)

TINY = {
    "unet": {
        "channels": (8, 16),
        "attention_levels": (False, True),
        "num_head_channels": 8,
        "norm_num_groups": 8,
    },
    "dit": {"hidden_size": 32, "depth": 2, "num_heads": 2},
}


def tiny(arch: str, spatial_dims: int, **kw) -> DenoiserConfig:
    return DenoiserConfig(
        arch=arch, spatial_dims=spatial_dims, **{"in_channels": 3, **TINY[arch], **kw}
    )


def spatial(dims: int) -> tuple[int, ...]:
    return (4, 8, 12) if dims == 3 else (8, 12)


def randomise_zero_params(model: torch.nn.Module) -> None:
    """Give zero-initialised layers (output convs, adaLN-Zero) values, so every path is live."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05)


CASES = [(a, d) for a in ("unet", "dit") for d in (2, 3)]


@pytest.mark.parametrize("arch, dims", CASES)
@pytest.mark.parametrize("cond_channels, num_classes", [(0, 0), (2, 0), (2, 4)])
def test_output_shape_matches_input(arch, dims, cond_channels, num_classes):
    torch.manual_seed(0)
    model = build_denoiser(tiny(arch, dims, cond_channels=cond_channels, num_classes=num_classes))
    x = torch.randn(2, 3, *spatial(dims))
    cond = torch.randn(2, cond_channels, *spatial(dims)) if cond_channels else None
    labels = torch.tensor([0, 3]) if num_classes else None
    out = model(x, torch.tensor([1.0, 500.0]), cond, labels)
    assert out.shape == x.shape and out.is_contiguous()
    if num_classes:  # labels=None means the null label
        randomise_zero_params(model)
        null = torch.full((2,), num_classes)
        torch.testing.assert_close(model(x, 10.0, cond, None), model(x, 10.0, cond, null))


@pytest.mark.parametrize("arch, dims", CASES)
def test_gradients_flow(arch, dims):
    torch.manual_seed(0)
    model = build_denoiser(tiny(arch, dims, cond_channels=1, num_classes=2))
    randomise_zero_params(model)
    x = torch.randn(2, 3, *spatial(dims), requires_grad=True)
    out = model(x, torch.rand(2) * 1000, torch.randn(2, 1, *spatial(dims)), torch.tensor([0, 1]))
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing


@pytest.mark.parametrize("dims, patch", [(2, (1, 2)), (3, (1, 2, 2)), (3, (2, 1, 4))])
@pytest.mark.parametrize("attention", ["full", "slice"])
def test_dit_per_axis_patch_and_zero_init(dims, patch, attention):
    model = build_denoiser(tiny("dit", dims, patch_size=patch, attention=attention))
    assert required_multiple(model.cfg) == patch
    x = torch.randn(2, 3, *spatial(dims))
    out = model(x, torch.rand(2))
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(out))  # final layer zero-init


def test_dit_unpatchify_inverts_patch_layout():
    model = build_denoiser(tiny("dit", 3, patch_size=(1, 2, 4), in_channels=2))
    x = torch.randn(2, 2, 4, 8, 12)
    grid = (4, 4, 3)
    # (B, C, G0 p0, G1 p1, G2 p2) -> (B, N, p0 p1 p2 C), the layout the final layer produces
    tokens = x.reshape(2, 2, 4, 1, 4, 2, 3, 4).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(2, 48, -1)
    assert torch.equal(model.unpatchify(tokens, grid), x)


def test_dit_slice_attention_keeps_slices_apart_in_inplane_blocks():
    torch.manual_seed(0)
    model = build_denoiser(tiny("dit", 3, patch_size=(1, 2, 2), attention="slice", depth=1))
    randomise_zero_params(model)
    x = torch.randn(1, 3, 4, 8, 8)
    x2 = x.clone()
    x2[:, :, 1] += 1.0
    diff = (model(x, 1.0) - model(x2, 1.0)).abs().flatten(3).sum(-1)[0].sum(0)  # (D,)
    assert diff[1] > 0 and torch.equal(diff[[0, 2, 3]], torch.zeros(3))


def test_dit_learned_pos_embed():
    torch.manual_seed(0)
    model = build_denoiser(tiny("dit", 2, pos_embed="learned", max_grid=8))
    randomise_zero_params(model)
    model(torch.randn(1, 3, 8, 16), 1.0).sum().backward()
    assert all(t.grad is not None for t in model.pos_tables)
    with pytest.raises(InputError, match="max_grid"):
        model(torch.randn(1, 3, 8, 18), 1.0)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_input_errors(arch):
    model = build_denoiser(tiny(arch, 3, cond_channels=2, patch_size=(1, 2, 2)))
    with pytest.raises(InputError, match=r"not a multiple of \((1, 2, 2|2, 2, 2)\)"):
        model(torch.randn(1, 3, 4, 8, 7), 1.0, torch.randn(1, 2, 4, 8, 7))
    with pytest.raises(InputError, match="expects cond"):
        model(torch.randn(1, 3, 4, 8, 8), 1.0)
    with pytest.raises(InputError, match="num_classes=0"):
        model(torch.randn(1, 3, 4, 8, 8), 1.0, torch.randn(1, 2, 4, 8, 8), torch.tensor([0]))
    with pytest.raises(InputError, match="expects x"):
        model(torch.randn(1, 4, 4, 8, 8), 1.0)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_expand_input_channels_preserves_function(arch):
    torch.manual_seed(0)
    model = build_denoiser(tiny(arch, 2, cond_channels=1, patch_size=(2, 2)))
    randomise_zero_params(model)
    x, cond, t = torch.randn(2, 3, 8, 12), torch.randn(2, 1, 8, 12), torch.tensor([3.0, 700.0])
    before = model(x, t, cond)
    expand_input_channels(model, 2)
    assert model.cfg.cond_channels == 3
    after = model(x, t, torch.cat([cond, torch.randn(2, 2, 8, 12)], 1))
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize(
    "cfg, cls", [(DEFAULT_UNET_3D, UNetDenoiser), (DEFAULT_DIT_3D, DiTDenoiser)]
)
def test_defaults_build_and_run(cfg, cls):
    model = build_denoiser(DenoiserConfig.from_dict(cfg))
    assert isinstance(model, cls) and 1e6 < parameter_count(model) < 1e7
    with torch.inference_mode():
        out = model(
            torch.randn(1, 4, 8, 16, 16), torch.tensor([999.0]), torch.randn(1, 5, 8, 16, 16)
        )
    assert out.shape == (1, 4, 8, 16, 16)
