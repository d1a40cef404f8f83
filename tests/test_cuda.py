"""The CUDA path, end to end: reconstruction, uncertainty, generation and a training step on a GPU.

Skipped without CUDA (CI has none); ``bench/gpu_check.sh`` runs them on a lent GPU machine. Setting
``LDM_MED_TEST_DEVICE=cpu`` runs the same checks on the CPU, which is how their logic is tested where no
GPU is at hand (the reference runs are always on the CPU).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ldm_med import GenerateOptions, ReconstructOptions, generate, metrics, reconstruct
from ldm_med.data.phantoms import ct_body
from ldm_med.masks import GAP_PATTERNS

DEVICE = os.environ.get("LDM_MED_TEST_DEVICE", "cuda")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs CUDA (LDM_MED_TEST_DEVICE=cpu runs these checks on the CPU)")]


@pytest.fixture(scope="module")
def phantom():
    volume = ct_body(shape=(64, 64, 24), spacing=(1.0, 1.0, 2.5), seed=700123)
    return volume, GAP_PATTERNS["x4"](volume.n_slices, np.random.default_rng(0))


def _psnr(volume, result, missing) -> float:
    return metrics.psnr(volume.data, result.volume.data, missing, axis=volume.slice_axis)


def test_pretrained_refiner_on_the_device_matches_the_cpu(phantom):
    """The refiner runs in fp32 on every device (convolutions may use TF32 on recent GPUs): the same
    estimate up to that rounding, acquired slices bit-exact."""
    volume, missing = phantom
    on = {d: reconstruct(volume, missing, ReconstructOptions(refine="pretrained", device=d))
          for d in ("cpu", DEVICE)}
    out = on[DEVICE].volume.data
    np.testing.assert_array_equal(out[..., ~missing], volume.data[..., ~missing])
    assert abs(_psnr(volume, on[DEVICE], missing) - _psnr(volume, on["cpu"], missing)) < 0.05
    scale = float(np.ptp(volume.data))
    assert np.abs(out - on["cpu"].volume.data).max() < 1e-2 * scale


def test_default_pipeline_with_samples_on_the_device(phantom):
    """Fine-tuning, the check's blend and calibrated uncertainty from 4 posterior samples (latent
    sampling under autocast on CUDA): better than linear, acquired slices exact in every sample, a
    finite map that is zero on acquired slices and calibrated."""
    volume, missing = phantom
    result = reconstruct(volume, missing, ReconstructOptions(samples=4, device=DEVICE))
    linear = reconstruct(volume, missing, ReconstructOptions(method="linear"))
    assert _psnr(volume, result, missing) > _psnr(volume, linear, missing)
    assert result.samples.shape == (4, *volume.shape)
    for sample in result.samples:
        np.testing.assert_array_equal(sample[..., ~missing], volume.data[..., ~missing])
    std = result.uncertainty
    assert np.isfinite(std).all() and (std[..., ~missing] == 0).all() and (std[..., missing] > 0).mean() > 0.9
    assert result.volume.metadata["reconstruction"]["uncertainty"]["calibrated"] is True


@pytest.mark.parametrize("dims, preset, size", [(2, "astronomical", None), (3, "molecular", [16, 32, 32])])
def test_generation_on_the_device_is_reproducible_and_sane(dims, preset, size):
    """The shipped models on the device: same seed, same sample; another seed, another; values in
    the class's physical range, marked synthetic."""
    opts = dict(preset=preset, dims=dims, n=1, steps=6, device=DEVICE, candidates=1,
                **({"size": size} if size else {}))
    a = generate(GenerateOptions(seed=5, **opts)).volumes[0]
    b = generate(GenerateOptions(seed=5, **opts)).volumes[0]
    c = generate(GenerateOptions(seed=6, **opts)).volumes[0]
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert np.isfinite(a.data).all() and a.data.std() > 0
    assert a.metadata["synthetic"] is True
    if dims == 3:
        assert a.data.shape == (32, 32, 16)


def test_a_training_step_on_the_device(tmp_path):
    """A tiny autoencoder trains a few steps on the device (autocast where the config asks for it) and
    writes a loadable model file."""
    from pathlib import Path

    from ldm_med.checkpoint import load_model
    from ldm_med.config import load_config
    from ldm_med.train import train

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny_autoencoder.yaml",
                      "autoencoder")
    train(cfg, tmp_path, device=DEVICE, progress=False)
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.kind == "autoencoder"
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
