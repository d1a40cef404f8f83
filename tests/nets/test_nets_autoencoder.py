from __future__ import annotations

import pytest
import torch

from ldm_med.errors import InputError
from ldm_med.nets import AutoencoderConfig, build_autoencoder, pad_to_multiple


def tiny_ae(spatial_dims: int):
    torch.manual_seed(0)
    cfg = AutoencoderConfig(
        spatial_dims=spatial_dims,
        latent_channels=3,
        channels=(8, 16),
        attention_levels=(False, False),
        norm_num_groups=8,
    )
    return build_autoencoder(cfg).eval()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes(spatial_dims):
    ae = tiny_ae(spatial_dims)
    assert ae.downsample == 2
    x = torch.randn(2, 1, 6, 16, 12)
    with torch.no_grad():
        z = ae.encode_volume(x)
        expect = (2, 3, 6, 8, 6) if spatial_dims == 2 else (2, 3, 3, 8, 6)
        assert z.shape == expect and z.is_contiguous()
        y = ae.decode_volume(z)
        assert y.shape == x.shape and y.is_contiguous()
        item = x[:, :, 0] if spatial_dims == 2 else x  # one training sample: a slice or a volume
        mu, logvar = ae.encode(item)
        assert mu.shape == logvar.shape == (2, 3, *(s // 2 for s in item.shape[2:]))
        recon, mu2, _ = ae(item)
        assert recon.shape == item.shape and torch.equal(mu, mu2)


def test_slice_alignment_is_exact():
    ae = tiny_ae(2)
    x = torch.randn(1, 1, 7, 16, 16)
    x2 = x.clone()
    x2[:, :, 3] = torch.randn(16, 16)
    with torch.no_grad():
        z, z2 = ae.encode_volume(x, batch_slices=4), ae.encode_volume(x2, batch_slices=4)
    changed = [(z[:, :, k] != z2[:, :, k]).any().item() for k in range(7)]
    assert changed == [k == 3 for k in range(7)]


@pytest.mark.parametrize("sample", [False, True])
def test_chunking_matches_unchunked(sample):
    ae = tiny_ae(2)
    x = torch.randn(2, 1, 9, 16, 16)
    with torch.no_grad():
        a = ae.encode_volume(x, sample, torch.Generator().manual_seed(1), batch_slices=4)
        b = ae.encode_volume(x, sample, torch.Generator().manual_seed(1), batch_slices=64)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            ae.decode_volume(a, batch_slices=5), ae.decode_volume(a), rtol=1e-5, atol=1e-5
        )
    if not sample:  # the slices of a chunked encode are the per-slice encodes
        with torch.no_grad():
            torch.testing.assert_close(a[:, :, 4], ae.encode(x[:, :, 4])[0], rtol=1e-5, atol=1e-5)


def test_sampling_uses_the_generator():
    ae = tiny_ae(2)
    x = torch.randn(1, 1, 2, 16, 16)
    with torch.no_grad():
        mu = ae.encode_volume(x)
        s1 = ae.encode_volume(x, sample=True, generator=torch.Generator().manual_seed(0))
        s2 = ae.encode_volume(x, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and not torch.equal(s1, mu)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_non_multiple_sizes_raise_and_padding_fixes_them(spatial_dims):
    ae = tiny_ae(spatial_dims)
    x = torch.randn(1, 1, 5 if spatial_dims == 2 else 6, 15, 13)
    with pytest.raises(InputError, match="pad_to_multiple"):
        ae.encode_volume(x)
    xp, crop = pad_to_multiple(x, ae.volume_multiple)
    assert xp.shape[2:] == ((5 if spatial_dims == 2 else 6), 16, 14)
    with torch.no_grad():
        y = crop(ae.decode_volume(ae.encode_volume(xp)))
    assert y.shape == x.shape


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_pad_to_multiple(mode):
    x = torch.randn(2, 3, 4, 5, 7)
    xp, crop = pad_to_multiple(x, (4, 4), mode=mode)
    assert xp.shape == (2, 3, 4, 8, 8)
    assert torch.equal(crop(xp), x)
    if mode == "replicate":
        assert torch.equal(xp[..., 5:, :7], x[..., 4:5, :].expand(2, 3, 4, 3, 7))
    xp, crop = pad_to_multiple(x, 2)
    assert xp.shape == (2, 3, 4, 6, 8) and torch.equal(crop(xp), x)
    same, crop = pad_to_multiple(x, 1)
    assert same is x
