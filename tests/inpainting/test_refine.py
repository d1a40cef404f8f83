"""The slice-gap refiner: plane geometry, gap masks, its guarantees, and that fitting learns."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from volumes import smooth_volume

from ldm_med.inpainting import refine
from ldm_med.inpainting.adapt import adapt_and_refine
from ldm_med.inpainting.interpolate import fill_missing
from ldm_med.masks import keep_every
from ldm_med.nets.refiner import SliceGapRefiner


def test_through_planes_put_the_slice_axis_last():
    x = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(4, 5, 6)
    by_h, by_w = refine.through_planes(x)
    assert by_h.shape == (5, 6, 4) and by_w.shape == (6, 5, 4)
    torch.testing.assert_close(by_h[2], x[:, 2, :].T)
    torch.testing.assert_close(by_w[3], x[:, :, 3].T)


@pytest.mark.parametrize("spacing, stacks", [((1.0, 1.0, 1.0), 2), ((2.5, 1.0, 1.0), 4)])
def test_inplane_planes_resample_rows_to_the_slice_spacing(spacing, stacks):
    x = smooth_volume((8, 10, 12))
    acquired = np.zeros(8, bool)
    acquired[::2] = True
    planes = refine.inplane_planes(x, acquired, spacing)
    assert len(planes) == stacks
    assert planes[0].shape == (4, 12, 10)  # rows along H, A = W
    torch.testing.assert_close(planes[0][1], torch.from_numpy(x[2].T))  # only acquired slices are used
    if stacks == 4:
        assert planes[1].shape == (4, 12, 4) and planes[3].shape == (4, 10, 5)  # 10 and 12 mm at 2.5 mm


def test_cyclic_pattern_windows_follow_the_scan_and_keep_two_rows():
    draw = refine.cyclic_pattern(keep_every(24, 4))
    rng = np.random.default_rng(0)
    for length in (5, 16, 48):
        for _ in range(20):
            window = draw(length, rng)
            assert window.shape == (length,) and (~window).sum() >= 2
            if length >= 8:  # a shifted x4 pattern: one acquired row in every 4
                assert all(np.flatnonzero(~window) % 4 == np.flatnonzero(~window)[0] % 4)


def test_untrained_refiner_is_linear_interpolation_and_acquired_slices_pass():
    x = smooth_volume()
    missing = keep_every(x.shape[0], 3)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    out = refine.refine(SliceGapRefiner(8, 3), x_c, missing)
    np.testing.assert_array_equal(out, x_c)


def test_fitting_on_inplane_gaps_lowers_the_error_on_missing_slices():
    x = smooth_volume((24, 32, 32))
    missing = keep_every(24, 4)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    torch.manual_seed(0)
    net = SliceGapRefiner(16, 4)
    opts = refine.AdaptOptions(steps=150, batch_size=8, crop=(24, 24), lr=2e-3, blend=False)
    out = adapt_and_refine(net, x_c, missing, (1.0, 1.0, 1.0), opts).volume
    np.testing.assert_array_equal(out[~missing], x[~missing])
    err_linear = np.mean((x_c[missing] - x[missing]) ** 2)
    err_refined = np.mean((out[missing] - x[missing]) ** 2)
    assert err_refined < 0.8 * err_linear


def test_adaptation_is_reproducible_per_seed():
    x = smooth_volume((16, 20, 20))
    missing = keep_every(16, 2)
    x_c = fill_missing(x, missing, axis=0, method="linear")
    net = SliceGapRefiner(8, 3)
    opts = refine.AdaptOptions(steps=10, batch_size=4, crop=(16, 16))
    a = adapt_and_refine(copy.deepcopy(net), x_c, missing, (2.0, 1.0, 1.0), opts)
    b = adapt_and_refine(copy.deepcopy(net), x_c, missing, (2.0, 1.0, 1.0), opts)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert a.check == b.check
