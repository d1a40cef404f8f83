"""Slice-grid rules on bare positions (no files)."""
from __future__ import annotations

import numpy as np
import pytest

from ldm_med.io.dicom_geometry import affine_lps, fit_slice_grid, orthogonal, slice_normal

AXIAL = np.array([1, 0, 0, 0, 1, 0], dtype=float)


def stack(zs, iop=AXIAL, origin=(10.0, -5.0, 0.0)):
    n = slice_normal(iop)
    return np.asarray(origin) + np.asarray(zs, dtype=float)[:, None] * n


def test_uniform_stack_in_any_file_order():
    zs = [2.5 * k for k in range(6)]
    perm = [3, 0, 5, 1, 4, 2]
    grid = fit_slice_grid(stack(zs)[perm], AXIAL)
    assert grid.error is None and not grid.warnings
    assert grid.n_slots == 6 and grid.acquired.all()
    assert grid.spacing == pytest.approx(2.5)
    assert [int(grid.slot[perm.index(k)]) for k in range(6)] == list(range(6))
    np.testing.assert_allclose(grid.origin, (10, -5, 0), atol=1e-9)
    np.testing.assert_allclose(grid.step, (0, 0, 2.5), atol=1e-9)


def test_integer_multiple_steps_are_missing_slots():
    zs = [0, 1.25, 5.0, 6.25, 7.5, 10.0]  # gaps of 3x and 2x
    grid = fit_slice_grid(stack(zs), AXIAL)
    assert grid.error is None
    assert grid.n_slots == 9
    assert np.flatnonzero(~grid.acquired).tolist() == [2, 3, 7]


def test_median_step_that_is_itself_a_gap_falls_back_to_smallest_step():
    grid = fit_slice_grid(stack([0, 2.5, 7.5, 12.5, 17.5]), AXIAL)
    assert grid.error is None and grid.spacing == pytest.approx(2.5)
    assert np.flatnonzero(~grid.acquired).tolist() == [2, 4, 6]


def test_spacing_between_slices_used_when_consistent_and_ignored_otherwise():
    zs = [0, 3, 6, 12]
    assert fit_slice_grid(stack(zs), AXIAL, spacing_between=3.0).n_slots == 5
    grid = fit_slice_grid(stack(zs), AXIAL, spacing_between=2.2)
    assert grid.n_slots == 5 and any("SpacingBetweenSlices" in w for w in grid.warnings)
    # a SpacingBetweenSlices that would make every step a gap is not believed
    assert fit_slice_grid(stack([0, 3, 6, 9]), AXIAL, spacing_between=1.5).n_slots == 4


def test_few_duplicates_keep_first_and_warn():
    zs = [0, 2, 2, 4, 6]
    grid = fit_slice_grid(stack(zs), AXIAL)
    assert grid.error is None
    assert grid.duplicates == [(2, 1)]
    assert grid.slot.tolist() == [0, 1, -1, 2, 3]
    assert any("duplicate" in w for w in grid.warnings)


def test_many_duplicates_are_4d_like_and_an_error():
    zs = [0, 0, 2, 2, 4, 4]
    grid = fit_slice_grid(stack(zs), AXIAL)
    assert grid.error and "repeated acquisitions" in grid.error


def test_non_uniform_spacing_is_an_error_but_tiny_jitter_is_snapped():
    grid = fit_slice_grid(stack([0, 2, 4, 7, 9]), AXIAL)  # a 3 mm step among 2 mm ones
    assert grid.error and "non-uniform" in grid.error
    jitter = fit_slice_grid(stack([0, 2.001, 3.999, 6.0005, 8]), AXIAL)
    assert jitter.error is None and jitter.n_slots == 5
    wobbly = fit_slice_grid(stack([0, 2.06, 3.95, 6.05, 8]), AXIAL)
    assert wobbly.error is None and any("snapped" in w for w in wobbly.warnings)


def test_gantry_tilt_warns_and_keeps_positions_exact():
    pos = stack([0, 1, 2, 3]) + np.outer(np.arange(4), [0, 0.2, 0])  # y shifts each slice
    grid = fit_slice_grid(pos, AXIAL)
    assert grid.error is None and any("gantry tilt" in w for w in grid.warnings)
    np.testing.assert_allclose(grid.origin + 3 * grid.step, pos[3], atol=1e-9)


def test_instance_number_cross_check():
    pos = stack([0, 1, 2, 3])
    assert not fit_slice_grid(pos, AXIAL, instance_numbers=[4, 3, 2, 1]).warnings
    grid = fit_slice_grid(pos, AXIAL, instance_numbers=[1, 3, 2, 4])
    assert any("InstanceNumber" in w for w in grid.warnings)


def test_single_slice_uses_fallback_spacing():
    grid = fit_slice_grid(stack([5.0]), AXIAL, fallback_spacing=3.0)
    assert grid.n_slots == 1 and grid.spacing == 3.0
    np.testing.assert_allclose(grid.step, (0, 0, 3.0))


def test_affine_maps_columns_along_row_cosines():
    iop = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])  # sagittal
    aff = affine_lps(iop, (0.5, 0.25), np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 0.0]))
    ijk = np.array([4, 6, 2, 1.0])
    expected = np.array([1, 2, 3]) + 4 * 0.25 * iop[:3] + 6 * 0.5 * iop[3:] + 2 * np.array(
        [2.0, 0, 0])
    np.testing.assert_allclose((aff @ ijk)[:3], expected)


def test_orthogonal_planes():
    assert orthogonal(AXIAL, np.array([1, 0, 0, 0, 0, -1.0]))
    assert not orthogonal(AXIAL, np.array([1, 0, 0, 0, 0.9, 0.1]) / [1, 1, 1, 1, 1, 1])
