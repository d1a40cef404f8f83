"""Geometry and mask helpers of the plugin (no viewer)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_plugin._job import estimate_seconds, format_seconds
from napari_plugin._layers import (
    axis_order,
    format_slices,
    layer_geometry,
    slice_mask_labels,
    slices_in_labels,
)


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")  # napari, for the oblique scan
@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, 1, -1]), _rotation(0.3),
                                       np.eye(3)[[2, 0, 1]]])  # axial, flipped, oblique, sagittal
def test_layer_geometry_maps_voxels_to_reversed_lps(direction):
    from napari.layers import Image

    spacing, origin = np.array([0.8, 0.9, 3.0]), np.array([10.0, -20.0, 30.0])
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = origin
    order = axis_order(affine)
    layer = Image(np.zeros((5, 6, 7)), **layer_geometry(affine, order))
    np.testing.assert_allclose(layer.scale, spacing[list(order)])
    for ijk in ([0, 0, 0], [6, 5, 4], [1, 2, 3]):
        ras = affine[:3, :3] @ ijk + origin
        lps = ras * [-1, -1, 1]
        index = np.asarray(ijk)[list(order)]
        np.testing.assert_allclose(layer.data_to_world(index), lps[::-1], atol=1e-9)
    if not np.allclose(direction, _rotation(0.3)):  # aligned with the patient axes: no resampling
        assert np.count_nonzero(layer.affine.affine_matrix[:3, :3]) == 3


def test_axis_order():
    axial = np.diag([-1.0, -1.0, 2.5, 1.0])
    assert axis_order(axial) == (2, 1, 0)
    sagittal = np.eye(4)
    sagittal[:3, :3] = np.eye(3)[:, [1, 2, 0]]  # i -> A, j -> S, k -> R (slices along R-L)
    assert axis_order(sagittal) == (1, 0, 2)


def test_slice_masks_round_trip():
    missing = np.zeros(6, bool)
    missing[[1, 4]] = True
    for axis in range(3):
        shape = [3, 4, 5]
        shape[axis] = 6
        labels = slice_mask_labels(tuple(shape), axis, missing)
        assert labels.dtype == np.uint8 and labels.sum() == 2 * np.prod(shape) // 6
        np.testing.assert_array_equal(slices_in_labels(labels, axis), missing)


def test_format_slices():
    assert format_slices([9, 3, 4, 5, 12, 13]) == "3-5, 9, 12-13"
    assert format_slices([]) == ""


def test_estimate_grows_with_the_work():
    import ldm_med

    quick = ldm_med.ReconstructOptions(refine="pretrained")
    default = ldm_med.ReconstructOptions()
    sampled = ldm_med.ReconstructOptions(samples=8, steps=4)
    shape = (128, 256, 256)
    cpu = [estimate_seconds(shape, o, on_gpu=False) for o in (quick, default, sampled)]
    assert cpu == sorted(cpu) and 30 < cpu[1] < 120  # measured: 29 s without fine-tuning (CT), at x4
    small = (64, 128, 128)  # measured: 7.1 s whole process, and 27.9 s with 8 samples of 2 steps
    extra = (estimate_seconds(small, ldm_med.ReconstructOptions(samples=8), on_gpu=False)
             - estimate_seconds(small, default, on_gpu=False))
    assert 14 < extra < 30
    assert estimate_seconds(shape, default, on_gpu=True) < cpu[1]
    assert format_seconds(42.4) == "42 s" and format_seconds(600) == "10 min"
