from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm_med import ReconstructOptions, reconstruct
from ldm_med.data.phantoms import ct_body
from ldm_med.diffusion.precond import Denoiser
from ldm_med.diffusion.sde import VPSDE
from ldm_med.errors import InputError
from ldm_med.inpainting.models import InpaintingModel
from ldm_med.inpainting.sampling import sample_corrections
from ldm_med.nets import build_autoencoder
from ldm_med.nets.config import AutoencoderConfig


@pytest.fixture(scope="module")
def phantom():
    return ct_body(shape=(40, 36, 20), spacing=(1.0, 1.0, 2.0), seed=7)


def test_baselines_keep_acquired_slices_and_geometry(phantom):
    missing = np.zeros(phantom.n_slices, bool)
    missing[[3, 4, 5, 9, 14]] = True
    poisoned = phantom.with_data(phantom.data.copy())
    poisoned.data[..., missing] = 1e9  # values in missing slices are never used
    for method in ("linear", "cubic"):
        result = reconstruct(poisoned, missing, ReconstructOptions(method=method))
        out = result.volume
        assert out.shape == phantom.shape
        np.testing.assert_array_equal(out.affine, phantom.affine)
        np.testing.assert_array_equal(out.data[..., ~missing], phantom.data[..., ~missing])
        assert np.abs(out.data[..., missing]).max() < 5000
        assert out.metadata["synthesised_slices"] == [3, 4, 5, 9, 14]


@pytest.mark.parametrize("case", ["all-missing", "one-acquired", "nan", "2d", "wrong-length"])
def test_bad_requests_are_input_errors(phantom, case):
    missing = np.zeros(phantom.n_slices, bool)
    volume = phantom
    if case == "all-missing":
        missing[:] = True
    elif case == "one-acquired":
        missing[1:] = True
    elif case == "nan":
        volume = phantom.with_data(phantom.data.copy())
        volume.data[2, 2, 6] = np.nan
        missing[3] = True
    elif case == "2d":
        volume = phantom.with_data(phantom.data[:1].copy())
        missing[3] = True
    else:
        missing = missing[:-1]
    with pytest.raises(InputError):
        reconstruct(volume, missing, ReconstructOptions(method="cubic"))


class PointwiseNet(torch.nn.Module):
    """A 1x1x1 'denoiser': no spatial context, so window-by-window evaluation must equal one pass."""

    def __init__(self, latent: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv3d(2 * latent + 1, latent, 1)
        torch.nn.init.normal_(self.conv.weight, std=0.3)

    def forward(self, x, t, cond=None, labels=None):
        return self.conv(torch.cat([x, cond], 1)) * (1 + t.reshape(-1, 1, 1, 1, 1) / 1000)


def _tiny_model() -> InpaintingModel:
    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderConfig(latent_channels=4, channels=(8, 8),
                                             attention_levels=(False, False), norm_num_groups=4)).eval()
    sde = VPSDE()
    return InpaintingModel(ae=ae, denoiser=Denoiser(PointwiseNet(), sde, prediction="v").eval(), sde=sde,
                           latent_scale=1.0, residual_scale=0.5, path=Path("tiny"))


@pytest.mark.parametrize("sampler", ["dpm++2m", "euler-maruyama"])
def test_windowed_sampling_equals_one_window(sampler):
    model = _tiny_model()
    rng = np.random.default_rng(0)
    x_c = rng.normal(size=(24, 30, 34)).astype(np.float32)  # (Z, A, B); odd sizes exercise padding
    missing = np.zeros(24, bool)
    missing[1::3] = True
    opts = ReconstructOptions(sampler=sampler, steps=4, samples=2, seed=3, slice_batch=5)
    whole = sample_corrections(model, x_c, missing, replace(opts, roi=(24, 16, 18)), torch.device("cpu"))
    tiled = sample_corrections(model, x_c, missing, replace(opts, roi=(8, 6, 6), overlap=0.5, window_batch=3),
                               torch.device("cpu"))
    assert whole.shape == (2, int(missing.sum()), 30, 34)
    assert np.abs(whole).max() > 1e-3  # the model does change the missing slices
    np.testing.assert_allclose(tiled, whole, atol=2e-5, rtol=1e-4)
    again = sample_corrections(model, x_c, missing, replace(opts, roi=(24, 16, 18)), torch.device("cpu"))
    np.testing.assert_array_equal(again, whole)  # reproducible per seed


def test_samples_spread_is_the_same_without_decoding_the_base():
    model = _tiny_model()
    x_c = np.random.default_rng(1).normal(size=(12, 16, 16)).astype(np.float32)
    missing = np.zeros(12, bool)
    missing[1::2] = True
    opts = ReconstructOptions(steps=2, samples=3, seed=0)
    full = sample_corrections(model, x_c, missing, opts, torch.device("cpu"))
    spread = sample_corrections(model, x_c, missing, opts, torch.device("cpu"), spread_only=True)
    assert full.std(axis=0).max() > 1e-3
    np.testing.assert_allclose(spread - spread.mean(0), full - full.mean(0), atol=1e-5)


def test_the_spread_is_decoded_by_the_distilled_decoder_where_the_model_has_one():
    class Doubled(torch.nn.Module):  # a stand-in for the distilled decoder: twice the autoencoder's output
        def __init__(self, ae):
            super().__init__()
            self.ae = ae

        def decode(self, z):
            return 2 * self.ae.decode(z)

    model = _tiny_model()
    with_distilled = replace(model, spread_decoder=Doubled(model.ae))
    x_c = np.random.default_rng(2).normal(size=(12, 16, 16)).astype(np.float32)
    missing = np.zeros(12, bool)
    missing[1::2] = True
    opts = ReconstructOptions(steps=2, samples=3, seed=0, spread_decoder=True)
    cpu = torch.device("cpu")
    own = sample_corrections(model, x_c, missing, opts, cpu, spread_only=True)
    distilled = sample_corrections(with_distilled, x_c, missing, opts, cpu, spread_only=True)
    assert own.std(axis=0).max() > 1e-3
    np.testing.assert_allclose(distilled, 2 * own, rtol=1e-5, atol=1e-6)
    # switched off (the default), or where the mean is wanted too, the autoencoder's own decoder decodes
    np.testing.assert_array_equal(
        sample_corrections(with_distilled, x_c, missing, replace(opts, spread_decoder=False), cpu,
                           spread_only=True), own)
    np.testing.assert_array_equal(sample_corrections(with_distilled, x_c, missing, opts, cpu),
                                  sample_corrections(model, x_c, missing, opts, cpu))
