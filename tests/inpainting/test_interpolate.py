from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from ldm_med.errors import InputError
from ldm_med.inpainting.interpolate import fill_missing, fill_missing_batch, interpolation_weights


@pytest.fixture
def volume_and_mask():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(6, 5, 24)).astype(np.float32)
    missing = np.zeros(24, bool)
    missing[[1, 2, 3, 5, 6, 7, 13, 22, 23]] = True
    return vol, missing


def test_cubic_matches_scipy_inside_and_repeats_nearest_outside(volume_and_mask):
    vol, missing = volume_and_mask
    out = fill_missing(vol, missing, axis=2, method="cubic")
    known = np.flatnonzero(~missing)
    inside = [q for q in np.flatnonzero(missing) if q < known[-1]]
    ref = CubicSpline(known, vol[..., known], axis=2)(inside)
    np.testing.assert_allclose(out[..., inside], ref, atol=1e-5)
    np.testing.assert_array_equal(out[..., 22], vol[..., known[-1]])
    np.testing.assert_array_equal(out[..., 23], vol[..., known[-1]])


def test_acquired_slices_are_bit_exact_and_missing_values_unused(volume_and_mask):
    vol, missing = volume_and_mask
    poisoned = vol.copy()
    poisoned[..., missing] = np.nan
    for method in ("linear", "cubic"):
        out = fill_missing(poisoned, missing, axis=2, method=method)
        np.testing.assert_array_equal(out[..., ~missing], vol[..., ~missing])
        assert np.isfinite(out).all()


def test_linear_is_exact_on_linear_ramps():
    z = np.arange(17, dtype=np.float32)
    vol = np.broadcast_to(3 * z - 2, (4, 4, 17)).copy()
    missing = ~np.isin(np.arange(17), [0, 4, 8, 12, 16])
    for method in ("linear", "cubic"):
        np.testing.assert_allclose(fill_missing(vol, missing, axis=2, method=method), vol, atol=1e-4)


def test_weights_rows_sum_to_one():
    w = interpolation_weights(np.array([0, 3, 5, 9, 10]), np.arange(11), "cubic")
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_batch_version_matches_numpy(volume_and_mask):
    vol, missing = volume_and_mask
    other = np.zeros(24, bool)
    other[::3] = True
    x = torch.from_numpy(np.moveaxis(vol, 2, 0).copy())[None, None].repeat(2, 1, 1, 1, 1)
    out = fill_missing_batch(x, torch.from_numpy(np.stack([missing, other])))
    for b, m in enumerate((missing, other)):
        ref = np.moveaxis(fill_missing(vol, m, axis=2), 2, 0)
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=1e-5)


def test_all_missing_is_an_input_error():
    with pytest.raises(InputError, match="every slice"):
        fill_missing(np.zeros((2, 2, 4)), np.ones(4, bool), axis=2)
