"""The check's second view: in-plane rows brought to the through-plane structure, scored at the real gap
geometry (``matched.py``), and its use in the check, the fine-tuning and the pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_med import ReconstructOptions, Volume, reconstruct
from ldm_med.inpainting import blend, matched
from ldm_med.inpainting.adapt import adapt_and_refine
from ldm_med.inpainting.interpolate import METHODS, fill_missing
from ldm_med.inpainting.refine import AdaptOptions
from ldm_med.masks import keep_every
from ldm_med.nets.refiner import SliceGapRefiner


def waves(n_slices: int = 41, size: int = 32) -> np.ndarray:
    """Slices-first volume with 8-voxel periods along every axis: at x2 gaps (4 samples a period) a
    spline is far better than linear; at the check's doubled gaps (2 a period, Nyquist) linear is the
    least wrong. In-plane rows have the through-plane structure already."""
    z, h, w = np.meshgrid(np.arange(n_slices), np.arange(size), np.arange(size), indexing="ij")
    return (np.sin(2 * np.pi * z / 8 + 0.3) + np.cos(2 * np.pi * h / 8 + 1.0)
            + np.cos(2 * np.pi * w / 8)).astype(np.float32)


def test_noise_sigma_recovers_white_noise_on_a_smooth_image():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :64] / 64.0
    smooth = np.sin(3 * x + 2 * y)[None].repeat(4, 0)
    for sigma in (0.01, 0.1):
        noisy = smooth + rng.normal(0, sigma, smooth.shape)
        assert matched.noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)


@pytest.mark.parametrize("factor", [0.3, 2.5])  # slices smoother, then rougher, than the rows
def test_matched_rows_reach_the_through_plane_structure(factor):
    rng = np.random.default_rng(1)
    rows = np.cumsum(rng.normal(size=(4, 16, 96)), axis=2).astype(np.float32)  # a random walk per row
    target = factor * matched.structure(rows, 2)
    out = matched.matched_rows(rows, 2, target, noise=0.0, rng=rng)
    assert matched.structure(out, 2) == pytest.approx(target, rel=0.05)
    assert (out.shape[2] < rows.shape[2]) == (factor > 1)  # rougher slices: a coarser pixel


def test_through_structure_uses_the_closest_acquired_slices():
    x = np.arange(12, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    missing = keep_every(12, 3)
    assert matched.through_structure(x, missing) == (3, pytest.approx(9.0))
    assert matched.through_structure(x, ~np.eye(1, 12, 0, dtype=bool)[0]) is None  # one acquired slice


def test_the_second_view_picks_the_interpolation_that_wins_at_the_real_gaps():
    x = waves()
    missing = keep_every(x.shape[0], 2)
    real = {m: float(np.sqrt(np.square(fill_missing(x, missing, 0, m) - x)[missing].mean())) for m in METHODS}
    hidden = blend.check(x, missing, {}, stride=2)
    both = blend.check(x, missing, {}, stride=2, inplane=True)
    assert hidden.anchor == "linear" and not hidden.score  # doubled gaps: linear looks best
    assert both.anchor != "linear" and real[both.anchor] < 0.5 * real["linear"]
    assert set(both.inplane_rmse) == set(METHODS) and both.score[both.anchor] == min(both.score.values())
    for name in METHODS:  # the hidden-slice errors are reported as before
        assert both.rmse[name] == pytest.approx(hidden.rmse[name])


def test_fine_tuning_with_the_second_view_keeps_acquired_slices_and_reports_both_views():
    x = waves(24, 24)
    missing = keep_every(24, 3)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    torch.manual_seed(0)
    out = adapt_and_refine(SliceGapRefiner(8, 3), x_c, missing, (1.0, 1.0, 1.0),
                           AdaptOptions(steps=10, batch_size=4, crop=(16, 16), inplane_view=True))
    np.testing.assert_array_equal(out.volume[~missing], x_c[~missing])
    assert "pretrained" in out.check.inplane_rmse and out.check.score["blend"] <= min(
        out.check.score[m] for m in METHODS) + 1e-9


@pytest.mark.parametrize("modality, second", [("ASTRO", True), ("MR", False)])
def test_the_pipeline_uses_the_second_view_for_spectral_cubes_only(modality, second):
    data = np.moveaxis(waves(16, 24), 0, 2) * 100 + 500  # (H, W, channels), slice axis 2
    vol = Volume(data, np.eye(4), slice_axis=2, metadata={"modality": modality})
    missing = keep_every(16, 2)
    out = reconstruct(vol, missing, ReconstructOptions(adapt_steps=0, device="cpu"))
    info = out.volume.metadata["reconstruction"]
    assert ("check_score" in info) == second and ("inplane_rmse" in info) == second
    np.testing.assert_array_equal(out.volume.data[..., ~missing], data[..., ~missing])
