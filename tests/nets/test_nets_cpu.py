from __future__ import annotations

import pytest
import torch
from torch import nn

from ldm_med.nets.cpu import OneDNNConv2d, OneDNNConv3d, restore_stock_convs, use_onednn_convs


@pytest.mark.parametrize(
    "conv, shape",
    [
        (nn.Conv2d(5, 7, 3, padding=1), (1, 5, 9, 11)),
        (nn.Conv3d(5, 7, 3, padding=1, stride=(1, 2, 2)), (1, 5, 4, 9, 11)),
        (nn.Conv3d(4, 8, (1, 2, 2), stride=(1, 2, 2), groups=2), (2, 4, 3, 6, 6)),
    ],
)
def test_onednn_convs_match_stock(conv, shape):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    torch.manual_seed(0)
    model = nn.Sequential(conv)
    keys = list(model.state_dict())
    x = torch.randn(shape, requires_grad=True)
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, conv.weight, conv.bias])
    use_onednn_convs(model)
    assert type(conv) in (OneDNNConv2d, OneDNNConv3d) and list(model.state_dict()) == keys
    out = model(x)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    restore_stock_convs(model)
    assert type(conv) in (nn.Conv2d, nn.Conv3d)


def test_non_float32_uses_the_stock_path():
    conv = use_onednn_convs(nn.Sequential(nn.Conv2d(2, 3, 3)))[0].double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    assert conv(x).dtype == torch.float64


def test_cpu_slice_batches_are_bounded_by_pixels_and_the_request():
    from ldm_med.nets.cpu import CPU_SLICE_PIXELS, slice_batch

    assert slice_batch(32, 128 * 128, "cpu") == CPU_SLICE_PIXELS // (128 * 128)
    assert slice_batch(4, 128 * 128, "cpu") == 4  # the request is a memory bound and wins
    assert slice_batch(32, 1024 * 1024, "cpu") == 1  # at least one slice
    assert slice_batch(32, 128 * 128, "cuda") == 32  # larger calls pay on a GPU


def test_the_cpu_slice_budget_changes_no_decoded_value(monkeypatch):
    import ldm_med.nets.cpu as cpu
    from ldm_med.nets import AutoencoderConfig, build_autoencoder

    torch.manual_seed(0)
    cfg = AutoencoderConfig(spatial_dims=2, in_channels=1, latent_channels=2, channels=(8, 8),
                            num_res_blocks=1, attention_levels=(False, False), norm_num_groups=4)
    ae = build_autoencoder(cfg).eval()
    z = torch.randn(1, 2, 12, 8, 8)
    with torch.no_grad():
        monkeypatch.setattr(cpu, "CPU_SLICE_PIXELS", 10**9)  # one call
        whole = ae.decode_volume(z)
        monkeypatch.setattr(cpu, "CPU_SLICE_PIXELS", 2 * 16 * 16)  # two slices per call
        assert torch.equal(ae.decode_volume(z), whole)
